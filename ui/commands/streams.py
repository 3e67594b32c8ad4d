"""``attune streams``: list the LSL streams visible now, and whose heart / skin they are.

Examples
--------
``attune streams``                       streams on this computer (2 s look)
``attune streams --lsl-scope link``      also streams on other computers of the local network
``attune streams --roster roster.toml``  with your roster's assignment
``attune streams --save-roster r.toml``  write the automatic assignment as a roster to edit
``attune streams --json``                machine-readable

Streams are told apart by name, type, source_id and host: two that claim all four at once are marked
DUPLICATE and left out of the assignment (the monitor uses neither), with a line saying how to fix it.
A stream the monitor refuses — a heart or EDA stream of text, a header claiming an implausible rate
(:func:`attune_monitor.acquisition.convention.unusable_reason`) — is marked REFUSED, with the reason.

The output may be cut short by its reader (``attune streams | head``): that ends the command quietly
(exit 141, as for every command).
"""

from __future__ import annotations

import json
import logging
import sys

from ..errors import UsageError
from .options import SCOPES, check_positive

__all__ = ["register", "run"]


def register(subparsers) -> None:
    """Add the ``streams`` parser."""
    p = subparsers.add_parser(
        "streams",
        help="list visible LSL streams with their participant and modality",
        description="List the LSL streams visible now: name, type, source_id, host, rate, channels, and the "
                    "participant and modality (heart or EDA) Attune assigns each to.",
    )
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to look for streams (and, again at most, to read their headers), a positive number; "
                        "default %(default)g")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--lsl-scope", choices=SCOPES, default=None,
                   help="where to look: machine (this computer, the default), link (local network), site")
    p.add_argument("--roster", metavar="TOML", help="roster file naming who wears which stream")
    p.add_argument("--match", metavar="GLOB", help="only streams whose name, source_id, host or type match")
    p.add_argument("--save-roster", metavar="TOML", help="write the resulting assignment as a roster file")
    p.set_defaults(func=run)


def _rate(srate: float) -> str:
    return "irregular" if not srate else f"{srate:g} Hz"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [header] + rows)


def run(args) -> int:
    """Run ``attune streams``; return the exit code."""
    code = _run(args)
    # Written now, not when Python exits: a reader gone meanwhile (`attune streams | head`) is then a
    # BrokenPipeError the CLI ends quietly on (exit 141), not an "Exception ignored" at interpreter exit.
    sys.stdout.flush()
    return code


def _run(args) -> int:
    check_positive("--timeout", args.timeout, example=5)
    from attune_monitor.acquisition.lslconfig import configure

    try:
        cfg = configure(args.lsl_scope)
    except RuntimeError as exc:
        raise UsageError(str(exc)) from None
    # pylsl is imported only now, with the chosen configuration in force.
    from attune_monitor.acquisition.convention import unusable_reason
    from attune_monitor.acquisition.discovery import discover, duplicate_message, duplicates
    from attune_monitor.acquisition.roster import Roster

    roster = Roster.load(args.roster) if args.roster else Roster()  # a RosterError is said by the cli
    found = discover(args.timeout, match=args.match, peek=min(1.0, args.timeout / 2))
    # Streams that claim one identity (name, type, source_id, host) cannot be told apart: the monitor uses none
    # of them, so they are not assigned here either, and are marked.
    dups = duplicates(found)
    dup_msg = {k: duplicate_message(v[0].descriptor, len(v)) for k, v in dups.items()}
    # Streams the monitor refuses whatever the roster says (text typed as a heart signal, an implausible rate).
    refused = {s.descriptor.uid: why for s in found if (why := unusable_reason(s.descriptor)) is not None}
    descs = [s.descriptor for s in found if s.descriptor.key not in dups and s.descriptor.uid not in refused]
    roster_log = logging.getLogger("attune_monitor.acquisition.roster")
    level = roster_log.level
    if not args.json and getattr(args, "verbose", 0) == 0:
        roster_log.setLevel(logging.ERROR)  # its warnings are printed below the table; don't log them twice
    try:
        assignment = roster.assign(descs)
    finally:
        roster_log.setLevel(level)
    assigned = {(a.descriptor.uid, a.descriptor.source_id): a for a in assignment.streams}
    unassigned = {(d.uid, d.source_id): reason for d, reason in assignment.unassigned}

    if args.save_roster:
        path = Roster.from_assignment(assignment).save(args.save_roster)
        print(f"roster written to {path}", file=sys.stderr)

    scope = args.lsl_scope or "machine"
    if args.json:
        out = {"scope": scope, "config": str(cfg), "timeout": args.timeout, "streams": []}
        for s in found:
            d = s.descriptor
            a = assigned.get((d.uid, d.source_id))
            item = d.to_dict()
            item.update(uid=d.uid, full_header=s.full_header,
                        participant=a.participant if a else d.participant,
                        assigned_by=a.source if a else None, primary=a.primary if a else False,
                        kind=a.kind if a else d.kind, modality=a.modality if a else d.modality,
                        unit=a.descriptor.unit if a else d.unit,
                        unit_guessed=(a.descriptor if a else d).unit_guessed,
                        declared_unit=(a.descriptor if a else d).declared_unit,
                        duplicate=d.key in dups, refused=refused.get(d.uid),
                        note=dup_msg.get(d.key) or refused.get(d.uid) or unassigned.get((d.uid, d.source_id)))
            out["streams"].append(item)
        out["participants"] = {p: {m: a.descriptor.name for m, a in mods.items()}
                               for p, mods in assignment.by_participant().items()}
        out["warnings"] = list(assignment.warnings) + list(dup_msg.values()) + list(refused.values())
        print(json.dumps(out, indent=2))
        return 0

    if not found:
        print(f"No LSL streams visible within {args.timeout:g} s (scope {scope}). Is the device app or "
              "`attune simulate` running? Devices on another computer need --lsl-scope link.")
        return 0
    rows = []
    for s in found:
        d = s.descriptor
        a = assigned.get((d.uid, d.source_id))
        if a is not None:
            unit = ((a.descriptor.unit or "?") + (" (guessed)" if a.descriptor.unit_guessed else "")
                    + _declared(a.descriptor)
                    + (" (resistance, read as µS)" if a.descriptor.reciprocal else ""))
            who = a.participant + ("" if a.source == "desc" else f" ({a.source})")
            what = f"{a.modality}:{a.kind}" + ("" if a.primary else " (alt)")
        else:
            unit, who, what = (d.unit or "") + _declared(d), "-", "-"
        if d.key in dups:
            who, what = "DUPLICATE", "-"
        elif d.uid in refused:
            who, what = "REFUSED", "-"
        rows.append([d.name, d.type, d.source_id, d.hostname, _rate(d.srate), str(d.channel_count), who, what,
                     unit + ("" if s.full_header else " [no header]")])
    print(_table(rows, ["NAME", "TYPE", "SOURCE_ID", "HOST", "RATE", "CH", "PARTICIPANT", "MODALITY", "UNIT"]))
    parts = assignment.by_participant()
    if parts:
        print()
        print(f"{len(parts)} participant(s):")
        for p, mods in parts.items():
            desc = ", ".join(f"{m} <- {a.descriptor.name!r}" for m, a in sorted(mods.items()))
            print(f"  {p}: {desc}")
    if assignment.unassigned or dups or refused:
        print()
        print("Not used:")
        for d, reason in assignment.unassigned:
            print(f"  {d.name!r}: {reason}")
        for s in found:
            if s.descriptor.uid in refused:
                print(f"  {s.descriptor.name!r}: {refused[s.descriptor.uid]}")
        for streams in dups.values():
            print(f"  {streams[0].descriptor.name!r} ({len(streams)} streams, uids "
                  f"{', '.join(s.descriptor.uid for s in streams)}): duplicate identity")
    if assignment.warnings or dups:
        print()
        for w in list(assignment.warnings) + list(dup_msg.values()):
            print(f"warning: {w}")
    return 0


def _declared(d) -> str:
    """``" (declared '0')"`` when the header's unit text is not the unit it means (an mne-lsl unit code)."""
    if d.declared_unit is None or d.unit_guessed or d.declared_unit == d.unit:
        return ""
    return f" (declared {d.declared_unit!r})"
