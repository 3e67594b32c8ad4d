"""``attune monitor``: live acquisition -> synchrony -> possible ruptures, in the GUI or the terminal.

Examples::

    attune monitor                                   # every heart/EDA stream on this computer, GUI
    attune monitor --headless --record               # terminal view, record to recordings/session-...xdf
    attune monitor --roster couple.toml --record recordings/ --label couple-07 --lsl-scope link
    attune monitor --headless --duration 600 --record s.xdf

A flagged drop in synchrony is a prompt to check in, never a diagnosis.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import UsageError, check_writable_folder, os_error_text
from .options import (
    SCOPES,
    add_session_options,
    check_positive,
    check_preset,
    describe_settings,
    make_runner,
    open_view,
    roster_missing,
    session_settings,
    wait_for_source,
    will_use_gui,
)

__all__ = ["register", "resolve_record_path", "run"]


def register(subparsers) -> None:
    """Add the ``monitor`` parser."""
    p = subparsers.add_parser(
        "monitor",
        help="monitor live LSL heart/EDA streams: synchrony per pair, possible ruptures and repair",
        description=(
            "Find the heart (RR/HR/ECG/PPG) and EDA streams on LSL, assign them to people (roster, or each "
            "stream's participant / device), and show synchrony per pair and possible ruptures live, in the GUI "
            "or (--headless, or with no display) in the terminal. --record writes the session to XDF as "
            "LabRecorder does (other apps' marker streams included), plus synchrony, detector events and your "
            "markers. Ctrl-C ends the session and "
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
    add_session_options(p)
    p.add_argument("--no-setup", action="store_true",
                   help="GUI: skip the session setup dialog (it opens when no --roster is given)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="stop after S seconds, a positive number (default: until Ctrl-C)")
    p.add_argument("--wait", type=float, default=15.0, metavar="S",
                   help="seconds to wait for streams of at least 2 people, a positive number (default %(default)g)")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a screenshot after --quit-after seconds, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="GUI: quit after S seconds, a positive number")
    # hidden: the worker's tick durations, one JSON line every 5 s (ui.runner.TickLog; bench/bench_soak.py reads it)
    p.add_argument("--tick-log", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def resolve_record_path(record: str | None, label: str | None) -> Path | None:
    """The file ``--record`` asks for: a folder gets a timestamped name; an existing file is refused.

    ``FILE.xdf`` is a file; a path ending in ``/``, an existing folder or a name without a suffix is a folder
    (created, mode 0700); any other suffix (``x.txt``) is refused with a hint. The folder is checked for
    writing here, before any stream is opened.

    Raises
    ------
    UsageError
        For an unusable path or label (nothing was started yet).
    """
    from attune_monitor.acquisition.recorder import check_label, default_recording_path

    try:
        check_label(label)
    except ValueError as exc:
        raise UsageError(str(exc).replace("'label'", "'--label'")) from None
    if record is None:
        if label:
            raise UsageError("--label names a recording: add --record (e.g. --record --label couple-07).")
        return None
    p = Path(record)
    as_folder = record.endswith(("/", "\\")) or p.is_dir() or not p.suffix
    if not as_folder and p.suffix.lower() != ".xdf":
        raise UsageError(f"Invalid value for '--record': {record!r} ends in {p.suffix!r}, but a recording is an "
                         f".xdf file; give FILE.xdf (e.g. {p.with_suffix('.xdf')}), or a folder (a name without a "
                         "suffix, or ending in /) for a timestamped name.")
    if as_folder:
        check_writable_folder(p, "--record", create=True)
        try:
            return default_recording_path(p, label)
        except OSError as exc:
            raise UsageError(f"Invalid value for '--record': cannot use folder '{p}' ({os_error_text(exc)}); "
                             "choose a folder you can write to.") from None
    if label:
        p = p.with_name(f"{p.stem}-{label}{p.suffix}")
    if os.path.lexists(p):  # a dangling symbolic link too: never written through
        raise UsageError(f"Invalid value for '--record': '{p}' already exists; choose another name (recordings are "
                         "never overwritten) or give a folder for a timestamped name.")
    check_writable_folder(p.parent, "--record")
    return p


def run(args) -> int:
    """Run ``attune monitor``; return the exit code."""
    check_positive("--duration", args.duration, example=600)
    check_positive("--wait", args.wait, example=15)
    check_positive("--quit-after", args.quit_after, example=60)
    if args.preset is not None:
        check_preset(args.preset)
    path = resolve_record_path(args.record, args.label)
    tick_log_path = getattr(args, "tick_log", None)
    if tick_log_path is not None and os.path.lexists(tick_log_path):
        raise UsageError(f"Invalid value for '--tick-log': '{tick_log_path}' already exists; choose a new file name.")
    gui = will_use_gui(args)
    config, modalities, settings = session_settings(args, gui)

    from attune_monitor.acquisition.lslconfig import configure

    try:  # before anything imports pylsl
        configure(args.lsl_scope)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    from attune_monitor.acquisition.live import LiveSession
    from attune_monitor.acquisition.recorder import record_session
    from attune_monitor.acquisition.roster import Roster
    roster = None
    if args.roster:
        try:
            roster = Roster.load(args.roster)
        except OSError as exc:  # a RosterError is said by attune_monitor.ui.cli
            raise UsageError(str(exc)) from None
    elif gui and not args.no_setup and args.screenshot is None and args.quit_after is None and args.duration is None:
        # GUI without a roster: the setup dialog first (who wears which stream; or a recording to replay)
        from ..gui.setup_dialog import run_setup

        choice, roster, rec_path = run_setup(match=args.match)
        if choice is None:
            print("attune monitor: setup closed; no session started.", file=sys.stderr)
            return 0
        if choice == "replay":
            from .replay import replay_from_setup

            return replay_from_setup(rec_path, args)
    session = LiveSession(roster=roster, match=args.match).start()
    recorder = tick_log = None
    try:
        source = wait_for_source(session, args.wait, roster=roster)
        runner = make_runner(source, config, modalities)
        if tick_log_path is not None:
            from ..runner import TickLog

            try:
                tick_log = TickLog(runner, tick_log_path).start()
            except OSError as exc:
                raise UsageError(f"Invalid value for '--tick-log': cannot create '{tick_log_path}' "
                                 f"({exc.strerror or exc}); choose a new file in a folder you can write to.") from None
        for w in session.status().warnings:
            runner.model.message(w)
        for what in roster_missing(roster, session.receivers):
            text = (f"The roster's stream {what} did not appear within {args.wait:g} s: monitoring without it "
                    "(a stream that comes later is announced, not added; restart, or raise --wait, to include it).")
            runner.model.message(text)
            print(f"attune monitor: {text}", file=sys.stderr)
        session.notices()  # said just now in the warnings; the runner shows only what comes later
        if path is not None:
            recorder = record_session(path, runner, session, label=args.label)  # XdfWriteError: said by the cli
            print(f"recording to {path}", file=sys.stderr)
        people = ", ".join(session.participants)
        print(f"monitoring {people} ({len(source.inputs)} streams; {describe_settings(config, modalities)}); "
              "Ctrl-C stops", file=sys.stderr)
        return open_view(runner, args, title="Attune - live", settings=settings)
    finally:
        if tick_log is not None:
            tick_log.close()
        if recorder is not None:
            recorder.close()
            st = recorder.status()
            if st["error"]:
                print(f"attune monitor: the recording stopped early: {st['error']}", file=sys.stderr)
            print(f"recording written: {st['path']} ({st['bytes'] / 1e6:.2f} MB)", file=sys.stderr)
        session.close()
