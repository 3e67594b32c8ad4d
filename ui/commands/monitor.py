"""``attune monitor``: live acquisition -> synchrony -> possible ruptures, in the GUI or the terminal.

Examples::

    attune monitor                                   # every heart/EDA stream on this computer, GUI
    attune monitor --headless --record               # terminal view, record to recordings/session-...xdf
    attune monitor --roster couple.toml --record recordings/ --label couple-07 --lsl-scope link
    attune monitor --headless --duration 600 --record s.xdf

A flagged drop in synchrony is a prompt to check in, never a diagnosis.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from ..errors import UsageError

SCOPES = ("machine", "link", "site")


def register(subparsers) -> None:
    """Add the ``monitor`` parser."""
    p = subparsers.add_parser(
        "monitor",
        help="monitor live LSL heart/EDA streams: synchrony per pair, possible ruptures and repair",
        description=(
            "Find the heart (RR/HR/ECG/PPG) and EDA streams on LSL, assign them to people (roster, or each "
            "stream's participant / device), and show synchrony per pair and possible ruptures live, in the GUI "
            "or (--headless, or with no display) in the terminal. --record writes the session to XDF as "
            "LabRecorder does, plus synchrony, detector events and your markers. Ctrl-C ends the session and "
            "closes the recording cleanly. A flag is a prompt to check in, never a diagnosis."
        ),
    )
    p.add_argument("--roster", metavar="R.toml", help="who wears which stream (see `attune streams --save-roster`)")
    p.add_argument("--record", nargs="?", const="recordings", metavar="FILE.xdf|FOLDER",
                   help="record the session (default folder recordings/, name session-YYYYmmdd-HHMMSS[-LABEL].xdf)")
    p.add_argument("--label", metavar="CODE", help="pseudonymous session label for the file name (e.g. couple-07; "
                                                    "never a real name)")
    p.add_argument("--headless", action="store_true", help="terminal view instead of the GUI")
    p.add_argument("--lsl-scope", choices=SCOPES, default=None,
                   help="where to look for streams: machine (this computer, default), link (local network), site")
    p.add_argument("--match", metavar="GLOB", help="only streams whose name, source_id, host or type match")
    p.add_argument("--preset", default="balanced", metavar="NAME",
                   help="detector sensitivity: conservative, balanced (default), sensitive")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--wait", type=float, default=15.0, metavar="S",
                   help="seconds to wait for streams of at least 2 people (default 15)")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a screenshot after --quit-after seconds, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="GUI: quit after S seconds")
    p.set_defaults(func=run)


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not (math.isfinite(value) and value > 0):
        raise UsageError(f"Invalid value for '{name}': expected a positive number of seconds, but got {value}.")


def resolve_record_path(record: str | None, label: str | None) -> Path | None:
    """The file ``--record`` asks for: a folder gets a timestamped name; an existing file is refused.

    Raises
    ------
    UsageError
        For an unusable path or label (nothing was started yet).
    """
    from acquisition.recorder import check_label, default_recording_path

    try:
        check_label(label)
    except ValueError as exc:
        raise UsageError(str(exc).replace("'label'", "'--label'")) from None
    if record is None:
        if label:
            raise UsageError("--label names a recording: add --record (e.g. --record --label couple-07).")
        return None
    p = Path(record)
    if p.is_dir() or record.endswith(("/", "\\")) or (p.suffix.lower() != ".xdf" and not p.exists()):
        try:
            return default_recording_path(p, label)
        except OSError as exc:
            raise UsageError(f"Invalid value for '--record': cannot use folder '{p}' ({exc.strerror or exc}); "
                             "choose a folder you can write to.") from None
    if p.exists():
        raise UsageError(f"Invalid value for '--record': '{p}' already exists; choose another name (recordings are "
                         "never overwritten) or give a folder for a timestamped name.")
    if not p.parent.is_dir():
        raise UsageError(f"Invalid value for '--record': folder '{p.parent}' does not exist; create it or choose "
                         "another path.")
    if label:
        p = p.with_name(f"{p.stem}-{label}{p.suffix}")
    return p


def check_preset(preset: str) -> None:
    from dsp.detector import PRESETS

    if preset not in PRESETS:
        raise UsageError(f"Invalid value for '--preset': expected one of {', '.join(PRESETS)}, but got {preset!r}.")


def open_view(runner, args, title: str) -> int:
    """GUI unless --headless or no display (then say so and use the terminal view)."""
    from ..headless import has_display, run_headless

    if not args.headless:
        if has_display():
            try:
                from ..gui.app import run_gui
            except Exception as exc:  # noqa: BLE001 - Qt missing/broken: the terminal view still works
                print(f"attune: the GUI cannot start ({exc}); showing the terminal view instead.", file=sys.stderr)
            else:
                quit_after = args.quit_after if args.quit_after is not None else getattr(args, "duration", None)
                return run_gui(runner, screenshot=args.screenshot, quit_after=quit_after, title=title)
        else:
            print("attune: no display available (no $DISPLAY / $WAYLAND_DISPLAY); showing the terminal view "
                  "instead (use --headless to skip this check).", file=sys.stderr)
    duration = getattr(args, "duration", None)
    if duration is None and args.quit_after is not None:
        duration = args.quit_after
    return run_headless(runner, duration=duration, out=sys.stdout)


def run(args) -> int:
    """Run ``attune monitor``; return the exit code."""
    _positive("--duration", args.duration)
    _positive("--wait", args.wait, allow_none=False)
    _positive("--quit-after", args.quit_after)
    check_preset(args.preset)
    path = resolve_record_path(args.record, args.label)

    from acquisition.lslconfig import configure

    try:  # before anything imports pylsl
        configure(args.lsl_scope)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    from acquisition.files import RecordingError
    from acquisition.live import LiveSession
    from acquisition.recorder import record_session
    from acquisition.roster import Roster, RosterError
    from acquisition.sources import LiveSource
    from acquisition.xdf_writer import XdfWriteError
    from dsp.pipeline import PipelineConfig

    from ..runner import Runner

    roster = None
    if args.roster:
        try:
            roster = Roster.load(args.roster)
        except (RosterError, OSError) as exc:
            raise UsageError(str(exc)) from None
    session = LiveSession(roster=roster, match=args.match).start()
    recorder = None
    try:
        source = _wait_for_source(session, args.wait, LiveSource, RecordingError)
        runner = Runner(source, PipelineConfig(preset=args.preset))
        for w in session.status().warnings:
            runner.model.message(w)
        if path is not None:
            try:
                recorder = record_session(path, runner, session, label=args.label)
            except XdfWriteError as exc:
                raise UsageError(str(exc)) from None
            print(f"recording to {path}", file=sys.stderr)
        people = ", ".join(session.participants)
        print(f"monitoring {people} ({len(source.inputs)} streams); Ctrl-C stops", file=sys.stderr)
        return open_view(runner, args, title="Attune - live")
    finally:
        if recorder is not None:
            recorder.close()
            st = recorder.status()
            if st["error"]:
                print(f"attune monitor: the recording stopped early: {st['error']}", file=sys.stderr)
            print(f"recording written: {st['path']} ({st['bytes'] / 1e6:.2f} MB)", file=sys.stderr)
        session.close()


def _wait_for_source(session, wait_s: float, LiveSource, RecordingError):
    """A LiveSource once streams of 2 people are visible, within ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    last = None
    while True:
        if len(session.participants) >= 2:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))  # let the other streams of a device in
            try:
                return LiveSource(session)
            except RecordingError as exc:
                last = exc
        if time.monotonic() >= deadline:
            why = str(last) if last else (
                f"found streams of {len(session.participants)} participant(s) "
                f"({', '.join(session.participants) or 'none'}); synchrony needs at least 2")
            raise UsageError(f"no session to monitor after {wait_s:g} s: {why}. Start the wearables or "
                             "`attune simulate`, check `attune streams`, or wait longer with --wait.")
        time.sleep(0.2)
