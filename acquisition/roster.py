"""Who wears which stream: the roster, and the assignment of streams to participants.

Attune needs, per participant, one heart stream (RR, ECG, PPG or HR: the
``hr`` modality) and/or one skin-conductance stream (``eda``). Each stream is
assigned, in this order of precedence:

1. a **roster file** rule the user wrote (it overrides everything automatic,
   including a ``participant`` element in the stream's desc: the file is the
   user's explicit word; the disagreement is reported as a warning);
2. the ``participant`` element of the stream's desc (Attune's convention,
   :mod:`attune_monitor.acquisition.convention`);
3. otherwise one participant per **source device**: the computer's hostname
   plus a device id parsed from the name (``"Polar H10 85530429"`` ->
   ``85530429@labpc``), with a warning that a roster would be better.

When one participant ends up with two streams of the same kind (two RR
streams for P1), Attune says so, lists the candidates and picks one
deterministically (a roster rule with ``primary = true`` first, then by name
and source_id); the others stay listed as alternates. Different kinds of the
same modality (a Polar H10's RR, HR and ECG) are not a conflict: RR is
preferred, then ECG, the device's own HR, then PPG (:data:`KIND_PREFERENCE`): wrist PPG
beats are unreliable with movement (on the real E4 dyad, BVP-derived HR jumps between 50 and
200 bpm while the E4's own HR.csv is smooth).

Roster file format (TOML)
-------------------------
::

    # attune roster: who wears what.  Rules are globs (*, ?, [..]), matched
    # case-insensitively; every field given in a rule must match.  The first
    # matching rule in the file wins.
    version = 1

    [[participant]]
    id = "P1"                        # pseudonym used in the UI and in files
    label = "Client"                 # optional display name

      [[participant.streams]]
      name = "Polar H10 85530429*"   # match on the LSL stream name ...
      kind = "rr"                    # optional: rr | hr | eda | ecg | ppg (overrides detection)

      [[participant.streams]]
      source_id = "shimmer-A1B2*"    # ... or on the source_id ...
      unit = "nS"                    # optional: overrides the declared or guessed unit
      primary = true                 # optional: preferred when several streams compete

    [[participant]]
    id = "P2"

      [[participant.streams]]
      hostname = "lab-pc-2"          # ... or on the computer that publishes it ...
      type = "EDA"                   # ... and/or the LSL type

    [[ignore]]                       # streams Attune should leave alone
    name = "*Accelerometer*"

Match fields: ``name``, ``source_id``, ``hostname``, ``type`` (at least one per
rule). :meth:`Roster.load` checks the file and says what to fix;
:meth:`Roster.save` writes the same format (the GUI saves the roster it shows
with :meth:`Roster.from_assignment`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from attune_monitor.errors import AttuneError

from .convention import KIND_MODALITY, KIND_TYPES, TYPE_ALIASES, StreamDescriptor, is_marker_stream, unit_scale

__all__ = [
    "KIND_PREFERENCE", "MATCH_FIELDS", "RECORDED_ROSTER_NAME", "RECORDED_ROSTER_TYPE", "RosterError", "StreamRule",
    "Participant", "AssignedStream", "Ambiguity", "Assignment", "natural_key", "device_id", "device_participant",
    "Roster", "glob_escape", "recorded_roster", "apply_rule", "assign"
]

logger = logging.getLogger(__name__)

#: Which kind wins when one participant has several streams of one modality.
KIND_PREFERENCE = {"rr": 0, "ecg": 1, "hr": 2, "ppg": 3, "eda": 0}

MATCH_FIELDS = ("name", "source_id", "hostname", "type")
_RULE_KEYS = MATCH_FIELDS + ("kind", "unit", "primary")
_PARTICIPANT_KEYS = ("id", "label", "streams")
_TOP_KEYS = ("version", "participant", "ignore")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@ -]{0,63}$")


#: Name and type of the string stream in which a recording keeps its roster (see :func:`recorded_roster`).
RECORDED_ROSTER_NAME = "Attune roster"
RECORDED_ROSTER_TYPE = "AttuneRoster"


class RosterError(ValueError, AttuneError):
    """A roster file or roster value that cannot be used; the message says how to fix it."""


@dataclass
class StreamRule:
    """One roster rule: glob patterns on stream fields, plus optional overrides."""

    name: str | None = None
    source_id: str | None = None
    hostname: str | None = None
    type: str | None = None
    kind: str | None = None
    unit: str | None = None
    primary: bool = False

    def matches(self, d: StreamDescriptor) -> bool:
        """True if every pattern given in the rule matches ``d`` (case-insensitive globs)."""
        given = [(f, getattr(self, f)) for f in MATCH_FIELDS if getattr(self, f) is not None]
        return bool(given) and all(fnmatchcase((getattr(d, f) or "").lower(), p.lower()) for f, p in given)

    def to_toml(self) -> dict:
        """The rule as a roster TOML table: only the fields that are set."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, False)}


@dataclass
class Participant:
    """A roster participant: a pseudonym, an optional display label and stream rules."""

    id: str
    label: str | None = None
    streams: list[StreamRule] = field(default_factory=list)


@dataclass
class AssignedStream:
    """One stream given to a participant.

    Attributes
    ----------
    participant : str
    modality : str
        ``"hr"`` or ``"eda"``.
    kind : str
        ``"rr"``, ``"hr"``, ``"eda"``, ``"ecg"`` or ``"ppg"``.
    descriptor : StreamDescriptor
        With any roster overrides (kind, unit) applied.
    source : str
        How the participant was decided: ``"roster"``, ``"desc"`` or ``"device"``.
    primary : bool
        True for the one stream per (participant, modality) the pipeline uses.
    """

    participant: str
    modality: str
    kind: str
    descriptor: StreamDescriptor
    source: str
    primary: bool = False
    preferred: bool = False  # roster rule said primary = true

    def to_dict(self) -> dict:
        """The assigned stream as plain JSON types."""
        return {"participant": self.participant, "modality": self.modality, "kind": self.kind,
                "source": self.source, "primary": self.primary, "stream": self.descriptor.to_dict()}


@dataclass
class Ambiguity:
    """Several streams of one kind for one participant: which were candidates, which was chosen."""

    participant: str
    modality: str
    candidates: list[StreamDescriptor]
    chosen: StreamDescriptor

    def message(self) -> str:
        """The ambiguity in words: the candidates, the one used and how to choose another."""
        names = ", ".join(f"{c.name!r} (source_id {c.source_id!r}, host {c.hostname!r})" for c in self.candidates)
        return (f"participant {self.participant} has {len(self.candidates)} {self.modality} streams of the same "
                f"kind: {names}; using {self.chosen.name!r} ({self.chosen.source_id!r}). To choose another, add it "
                "to the roster with primary = true.")


@dataclass
class Assignment:
    """The result of :meth:`Roster.assign`.

    Attributes
    ----------
    streams : list of AssignedStream
        Every usable stream with its participant; ``primary`` marks the one used per (participant, modality).
    unassigned : list of (StreamDescriptor, str)
        Streams left out, with the reason.
    ambiguities : list of Ambiguity
    warnings : list of str
        Human-readable, for the log and the UI.
    """

    streams: list[AssignedStream] = field(default_factory=list)
    unassigned: list[tuple[StreamDescriptor, str]] = field(default_factory=list)
    ambiguities: list[Ambiguity] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def participants(self) -> list[str]:
        """Participant ids, naturally sorted (P2 before P10)."""
        return sorted({s.participant for s in self.streams}, key=natural_key)

    def primary(self, participant: str, modality: str) -> AssignedStream | None:
        """The stream used for ``participant``'s ``modality``, if any."""
        for s in self.streams:
            if s.primary and s.participant == participant and s.modality == modality:
                return s
        return None

    def by_participant(self) -> dict[str, dict[str, AssignedStream]]:
        """``{participant: {modality: primary stream}}``."""
        out: dict[str, dict[str, AssignedStream]] = {p: {} for p in self.participants}
        for s in self.streams:
            if s.primary:
                out[s.participant][s.modality] = s
        return out

    def for_stream(self, key: str) -> AssignedStream | None:
        """The assignment of the stream whose identity key (:attr:`StreamDescriptor.key`) or uid is ``key``."""
        for s in self.streams:
            if key in (s.descriptor.key, s.descriptor.uid):
                return s
        return None

    def to_dict(self) -> dict:
        """The assignment as plain JSON types (participants, streams, unassigned with reasons, warnings)."""
        return {
            "participants": self.participants,
            "streams": [s.to_dict() for s in self.streams],
            "unassigned": [{"stream": d.to_dict(), "reason": r} for d, r in self.unassigned],
            "warnings": list(self.warnings),
        }


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers numerically."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


_KIND_WORDS = {a for aliases in TYPE_ALIASES.values() for a in aliases} | {"stream", "data", "lsl"}


def device_id(d: StreamDescriptor) -> str:
    """A device identity from a stream's name (or source_id): its serial number when one is visible.

    ``"Polar H10 85530429"`` -> ``"Polar H10 85530429"``; ``"Polar H10 85530429 RR"`` -> the same;
    ``"E4_Bvp_A02F5C"`` -> ``"E4 A02F5C"``.  Kind words (RR, ECG, HR, EDA ...) are dropped so a
    device's streams of different kinds share one id.
    """
    for text in (d.name, d.source_id):
        words = [w for w in re.split(r"[^A-Za-z0-9]+", text or "") if w]
        kept = [w for w in words if w.lower() not in _KIND_WORDS]
        serial = [w for w in kept if len(w) >= 4 and any(c.isdigit() for c in w)]
        if serial and kept:
            return " ".join(kept)
    words = [w for w in re.split(r"[^A-Za-z0-9]+", d.name or "") if w and w.lower() not in _KIND_WORDS]
    return " ".join(words) or d.name or d.source_id or "unknown device"


def device_participant(d: StreamDescriptor) -> str:
    """The fallback participant id of a stream: ``"<device id>@<hostname>"``."""
    dev = device_id(d)
    return f"{dev}@{d.hostname}" if d.hostname else dev


def _check_str(value, where: str, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RosterError(f"Invalid value for '{key}' in {where}: expected a non-empty string, but got {value!r}.")
    return value.strip()


def _unknown(keys, allowed, where: str) -> None:
    bad = sorted(set(keys) - set(allowed))
    if bad:
        raise RosterError(f"Unknown key {bad[0]!r} in {where}: expected one of {', '.join(allowed)}. "
                          "Check the spelling (see the format in acquisition/roster.py).")


def _parse_rule(raw, where: str, allow_overrides: bool = True) -> StreamRule:
    if not isinstance(raw, dict):
        raise RosterError(f"Invalid {where}: expected a table like {{ name = \"Polar H10*\" }}, but got {raw!r}.")
    _unknown(raw, _RULE_KEYS if allow_overrides else MATCH_FIELDS, where)
    kw: dict[str, Any] = {k: _check_str(raw[k], where, k) for k in MATCH_FIELDS + ("unit",) if k in raw}
    if not any(k in kw for k in MATCH_FIELDS):
        raise RosterError(f"Invalid {where}: give at least one of {', '.join(MATCH_FIELDS)} to match streams by.")
    if "kind" in raw:
        kind = _check_str(raw["kind"], where, "kind").lower()
        if kind not in KIND_TYPES:
            raise RosterError(f"Invalid value for 'kind' in {where}: expected one of {', '.join(KIND_TYPES)}, "
                              f"but got {raw['kind']!r}.")
        kw["kind"] = kind
    if "unit" in kw and "kind" in kw and unit_scale(kw["kind"], kw["unit"]) is None:
        raise RosterError(f"Invalid value for 'unit' in {where}: {kw['unit']!r} is not a known unit for "
                          f"kind {kw['kind']!r}.")
    if "primary" in raw:
        if not isinstance(raw["primary"], bool):
            raise RosterError(f"Invalid value for 'primary' in {where}: expected true or false, "
                              f"but got {raw['primary']!r}.")
        kw["primary"] = raw["primary"]
    return StreamRule(**kw)


class Roster:
    """The user's word on who wears which stream (see the module docstring for the file format).

    Parameters
    ----------
    participants : list of Participant
    ignore : list of StreamRule
        Streams to leave out.
    """

    def __init__(self, participants: list[Participant] | None = None, ignore: list[StreamRule] | None = None):
        self.participants = list(participants or [])
        self.ignore = list(ignore or [])
        self.path: Path | None = None
        seen = set()
        for p in self.participants:
            if p.id in seen:
                raise RosterError(f"Duplicate participant id {p.id!r}: each participant needs a unique id.")
            seen.add(p.id)

    # ---------------------------------------------------------------- files
    @classmethod
    def from_dict(cls, data: dict, source: str = "roster") -> Roster:
        """Build and validate a roster from parsed TOML (``source`` names the file in messages)."""
        if not isinstance(data, dict):
            raise RosterError(f"Invalid {source}: expected a TOML document with [[participant]] tables.")
        _unknown(data, _TOP_KEYS, source)
        version = data.get("version", 1)
        if version != 1:
            raise RosterError(f"Invalid value for 'version' in {source}: expected 1, but got {version!r}.")
        raw_ps = data.get("participant", [])
        if not isinstance(raw_ps, list):
            raise RosterError(f"Invalid 'participant' in {source}: write each participant as a "
                              "[[participant]] table (double brackets).")
        participants = []
        for i, raw in enumerate(raw_ps, 1):
            where = f"participant {i} of {source}"
            if not isinstance(raw, dict):
                raise RosterError(f"Invalid {where}: expected a [[participant]] table.")
            _unknown(raw, _PARTICIPANT_KEYS, where)
            if "id" not in raw:
                raise RosterError(f"Missing 'id' in {where}: give each participant a pseudonym, e.g. id = \"P{i}\".")
            pid = _check_str(raw["id"], where, "id")
            if not _ID_RE.match(pid):
                raise RosterError(f"Invalid value for 'id' in {where}: expected letters, digits, space, '_', '-', "
                                  f"'.', '@' (at most 64), but got {pid!r}.")
            where = f"participant {pid!r} of {source}"
            label = _check_str(raw["label"], where, "label") if "label" in raw else None
            rules_raw = raw.get("streams", [])
            if not isinstance(rules_raw, list):
                raise RosterError(f"Invalid 'streams' in {where}: write each rule as a [[participant.streams]] "
                                  "table or as a list of inline tables.")
            rules = [_parse_rule(r, f"stream rule {j} of {where}") for j, r in enumerate(rules_raw, 1)]
            participants.append(Participant(pid, label, rules))
        ignore_raw = data.get("ignore", [])
        if not isinstance(ignore_raw, list):
            raise RosterError(f"Invalid 'ignore' in {source}: write each as an [[ignore]] table.")
        ignore = [_parse_rule(r, f"ignore rule {j} of {source}", allow_overrides=False)
                  for j, r in enumerate(ignore_raw, 1)]
        try:
            return cls(participants, ignore)
        except RosterError as exc:
            raise RosterError(f"{exc} (in {source})") from None

    @classmethod
    def load(cls, path: str | Path) -> Roster:
        """Read and validate a roster TOML file.

        Raises
        ------
        RosterError
            With the file, the place and what to change, for a missing file,
            a TOML syntax error or an invalid entry.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RosterError(f"Roster file {str(path)!r} does not exist; check the path "
                              "(or save one from the GUI / Roster.save).") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RosterError(f"Cannot read roster file {str(path)!r}: {exc}.") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RosterError(f"Roster file {str(path)!r} is not valid TOML: {exc}. "
                              "Strings need double quotes, participants are [[participant]] tables.") from None
        roster = cls.from_dict(data, source=repr(str(path)))
        roster.path = path
        return roster

    def to_toml(self) -> str:
        """The roster in the file format :meth:`load` reads."""
        lines = ["# attune roster: who wears what (format: see acquisition/roster.py)", "version = 1", ""]
        for p in self.participants:
            lines += ["[[participant]]", f"id = {json.dumps(p.id)}"]
            if p.label:
                lines.append(f"label = {json.dumps(p.label)}")
            for r in p.streams:
                lines += ["", "  [[participant.streams]]"]
                lines += [f"  {k} = {_toml_value(v)}" for k, v in r.to_toml().items()]
            lines.append("")
        for r in self.ignore:
            lines += ["[[ignore]]"] + [f"{k} = {_toml_value(v)}" for k, v in r.to_toml().items()] + [""]
        return "\n".join(lines)

    def save(self, path: str | Path) -> Path:
        """Write the roster to ``path`` (TOML); returns the path."""
        path = Path(path)
        path.write_text(self.to_toml(), encoding="utf-8")
        self.path = path
        return path

    @classmethod
    def from_assignment(cls, assignment: Assignment) -> Roster:
        """Freeze an assignment into a roster (one exact rule per stream, primaries marked).

        A rule matches its stream by name, source_id and hostname together (whichever it has): several apps leave
        every stream at one default source_id (mne-lsl's players: "MNE-LSL"), so the source_id alone would match
        them all.
        """
        by_id: dict[str, Participant] = {}
        for s in assignment.streams:
            d = s.descriptor
            rule = _exact_rule(d)
            rule.kind = s.kind
            rule.primary = s.primary
            by_id.setdefault(s.participant, Participant(s.participant)).streams.append(rule)
        return cls([by_id[p] for p in sorted(by_id, key=natural_key)])

    @classmethod
    def from_toml(cls, text: str, source: str = "roster") -> Roster:
        """Parse and validate roster TOML text (``source`` names where it came from in messages).

        Raises
        ------
        RosterError
            For a TOML syntax error or an invalid entry.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RosterError(f"{source} is not valid TOML: {exc}.") from None
        return cls.from_dict(data, source=source)

    # ---------------------------------------------------------------- matching
    def match(self, d: StreamDescriptor) -> tuple[Participant, StreamRule] | None:
        """The first rule (in file order) that matches ``d``, with its participant."""
        for p in self.participants:
            for r in p.streams:
                if r.matches(d):
                    return p, r
        return None

    def ignored(self, d: StreamDescriptor) -> bool:
        """True if an ``[[ignore]]`` rule matches ``d``."""
        return any(r.matches(d) for r in self.ignore)

    def assign(self, descriptors) -> Assignment:
        """Assign streams to participants and modalities.

        Parameters
        ----------
        descriptors : iterable of StreamDescriptor
            The visible streams (with their desc; see :func:`attune_monitor.acquisition.discovery.discover`).

        Returns
        -------
        assignment : Assignment
        """
        return assign(descriptors, self)


def glob_escape(text: str) -> str:
    """``text`` as a roster glob that matches exactly it (``*``, ``?`` and ``[`` bracketed)."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _exact_rule(d: StreamDescriptor) -> StreamRule:
    """A rule matching exactly ``d``'s name, source_id and hostname (a field empty or padded with spaces: any)."""

    def exact(v: str | None) -> str | None:
        return glob_escape(v) if v and v.strip() == v else None

    return StreamRule(name=exact(d.name), source_id=exact(d.source_id), hostname=exact(d.hostname))


def recorded_roster(assignment: Assignment, roster: Roster | None = None) -> Roster:
    """The roster a recording keeps: who wore which stream in the live session, and the user's overrides.

    One rule per assigned stream, matching it exactly by name, source_id and hostname (whichever it has), with
    the kind the session used and the unit when the user's roster overrode it; the participants' labels and the
    ``[[ignore]]`` rules of the user's roster. Loaded with the recording
    (:func:`attune_monitor.acquisition.files.load_recording`), it gives every stream the participant, kind and unit it
    had live,
    also where the live session named people itself (a stream's ``participant`` element, or one person per device).

    Parameters
    ----------
    assignment : Assignment
        The live session's assignment (:attr:`attune_monitor.acquisition.live.LiveSession.assignment`).
    roster : Roster | None
        The roster the session ran with (its unit overrides, labels and ignore rules are kept).

    Returns
    -------
    roster : Roster
        Participants whose id a roster file cannot hold (see :meth:`Roster.from_dict`) are left out: such ids come
        from the streams' own headers, which give the same name offline.
    """
    roster = roster or Roster()
    labels = {p.id: p.label for p in roster.participants}
    by_id: dict[str, Participant] = {}
    for a in assignment.streams:
        d = a.descriptor
        if not _ID_RE.match(a.participant):
            continue
        rule = _exact_rule(d)
        if not any(getattr(rule, f) for f in MATCH_FIELDS):
            continue
        rule.kind = a.kind
        hit = roster.match(d) if a.source == "roster" else None
        if hit is not None and hit[1].unit is not None:
            rule.unit = hit[1].unit
        rule.primary = a.primary
        by_id.setdefault(a.participant, Participant(a.participant, labels.get(a.participant))).streams.append(rule)
    return Roster([by_id[p] for p in sorted(by_id, key=natural_key)], list(roster.ignore))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def apply_rule(d: StreamDescriptor, rule: StreamRule) -> StreamDescriptor:
    """``d`` with the rule's kind / unit overrides (a copy when the rule has any; ``d`` itself otherwise)."""
    if rule.kind is None and rule.unit is None:
        return d
    d = dataclasses.replace(d, channels=list(d.channels))
    if rule.kind is not None and rule.kind != d.kind:
        d.kind = rule.kind
        d.set_unit(d.unit)
    if rule.unit is not None and d.kind is not None:
        d.set_unit(rule.unit)
    return d


def assign(descriptors, roster: Roster | None = None, log: bool = True) -> Assignment:
    """Assign streams to participants (see :meth:`Roster.assign`; ``roster=None`` = automatic only).

    ``log=False``: the warnings are only returned (:attr:`Assignment.warnings`), not logged; a caller that
    assigns again and again (a live session rescans every few seconds) logs each warning once itself.
    """
    roster = roster or Roster()
    result = Assignment()
    descs = sorted(descriptors, key=lambda d: (d.name, d.source_id, d.hostname, d.uid))
    fallback_warned: set[str] = set()
    for d in descs:
        if roster.ignored(d):
            result.unassigned.append((d, "ignored by the roster"))
            continue
        hit = roster.match(d)
        preferred = False
        if hit is not None:
            p, rule = hit
            d = apply_rule(d, rule)
            participant, source, preferred = p.id, "roster", rule.primary
            if d.participant and d.participant != p.id:
                result.warnings.append(f"stream {d.name!r} says participant {d.participant!r} in its header, "
                                       f"the roster says {p.id!r}: using the roster.")
        elif d.kind is None:
            if is_marker_stream(d):
                result.unassigned.append((d, f"event / marker stream (type {d.type!r}): no one's physiology; "
                                             "a recording keeps it"))
            else:
                result.unassigned.append((d, f"not a heart or EDA stream (type {d.type!r}); "
                                             "name its kind in a roster rule if it is one"))
            continue
        elif d.participant:
            participant, source = d.participant, "desc"
        else:
            participant, source = device_participant(d), "device"
            if participant not in fallback_warned:
                fallback_warned.add(participant)
                result.warnings.append(f"stream {d.name!r} names no participant: assuming one participant per "
                                       f"device, {participant!r}. Write a roster to name participants.")
        if d.kind is None:
            result.unassigned.append((d, f"the roster assigns it to {participant!r} but its kind is unknown "
                                         f"(type {d.type!r}); add kind = \"rr\"|\"eda\"|... to the rule"))
            continue
        result.streams.append(AssignedStream(participant, KIND_MODALITY[d.kind], d.kind, d, source,
                                             preferred=preferred))
    # One primary per (participant, modality).
    groups: dict[tuple[str, str], list[AssignedStream]] = {}
    for s in result.streams:
        groups.setdefault((s.participant, s.modality), []).append(s)
    for (participant, modality), cands in groups.items():
        cands.sort(key=lambda s: (not s.preferred, KIND_PREFERENCE.get(s.kind, 9), s.descriptor.name,
                                  s.descriptor.source_id))
        chosen = cands[0]
        chosen.primary = True
        same = [s for s in cands if s.kind == chosen.kind and s.preferred == chosen.preferred]
        if len(same) > 1:
            amb = Ambiguity(participant, modality, [s.descriptor for s in same], chosen.descriptor)
            result.ambiguities.append(amb)
            result.warnings.append(amb.message())
    if log:
        for w in result.warnings:
            logger.warning("%s", w)
    return result
