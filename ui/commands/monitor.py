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
import math
import os
import sys
import time
from pathlib import Path

from ..errors import UsageError, check_writable_folder, os_error_text

SCOPES = ("machine", "link", "site")
#: ``--signals`` choices -> modalities (None: every signal the streams have).
SIGNALS = {"both": None, "heart": ("hr",), "skin": ("eda",)}


def add_session_options(p) -> None:
    """``--preset``, ``--window``, ``--signals``: in GUI mode they override the stored Settings."""
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="detector sensitivity: conservative, balanced, sensitive (default: the GUI's setting, "
                        "else balanced)")
    p.add_argument("--window", type=float, default=None, metavar="S",
                   help="synchrony window in seconds, 5-120 (default: the GUI's setting, else 20)")
    p.add_argument("--signals", choices=tuple(SIGNALS), default=None,
                   help="signals used: both (heart + skin), heart or skin (default: the GUI's setting, else both)")


def will_use_gui(args) -> bool:
    """True when the session will open the GUI (not --headless, a display, Qt importable)."""
    from ..headless import has_display

    if getattr(args, "headless", False) or not has_display():
        return False
    try:
        import PySide6.QtWidgets  # noqa: F401
    except Exception:  # noqa: BLE001 - open_view says why and falls back
        return False
    return True


def session_settings(args, gui: bool):
    """Pipeline settings of a session: command-line flags, else (GUI mode) the stored Settings, else defaults.

    Returns
    -------
    config : dsp.pipeline.PipelineConfig
    modalities : tuple of str | None
        None: every signal the streams have.
    settings : ui.gui.settings.Settings | None
        GUI mode: the stored settings with the flags applied (handed to the window; not saved).
    """
    from dsp.pipeline import PipelineConfig

    if args.preset is not None:
        check_preset(args.preset)
    window = getattr(args, "window", None)
    if window is not None and not (math.isfinite(window) and 5 <= window <= 120):
        raise UsageError(f"Invalid value for '--window': expected seconds in 5..120, but got {window:g}.")
    signals = getattr(args, "signals", None)
    settings = None
    if gui:
        try:
            from ..gui.settings import MODALITY_CHOICES, Settings

            settings = Settings.load()
        except Exception:  # noqa: BLE001 - unreadable settings: defaults
            settings = None
    if settings is not None:
        if args.preset is not None:
            settings.preset = args.preset
        if window is not None:
            settings.window_s = float(window)
        if signals is not None:
            settings.modalities = {"both": "heart + skin", "heart": "heart only", "skin": "skin only"}[signals]
        config = settings.pipeline_config()
        mods = MODALITY_CHOICES[settings.modalities]
        modalities = None if set(mods) == {"hr", "eda"} else tuple(mods)
    else:
        config = PipelineConfig(preset=args.preset or "balanced", **({"window_s": float(window)} if window else {}))
        modalities = SIGNALS[signals] if signals else None
    return config, modalities, settings


def describe_settings(config, modalities) -> str:
    """One line for stderr: what the pipeline uses."""
    sig = {None: "heart + skin", ("hr",): "heart only", ("eda",): "skin only"}.get(modalities, "+".join(modalities or ()))
    return f"signals {sig}, window {config.window_s:g} s, sensitivity {config.preset}"


def make_runner(source, config, modalities):
    """A Runner, with a clear usage error when the chosen signals leave fewer than 2 people."""
    from ..runner import Runner

    try:
        return Runner(source, config, modalities=modalities)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


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
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    p.add_argument("--wait", type=float, default=15.0, metavar="S",
                   help="seconds to wait for streams of at least 2 people (default 15)")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a screenshot after --quit-after seconds, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="GUI: quit after S seconds")
    # hidden: the worker's tick durations, one JSON line every 5 s (ui.runner.TickLog; bench/bench_soak.py reads it)
    p.add_argument("--tick-log", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _positive(name: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if value is None or not (math.isfinite(value) and value > 0):
        raise UsageError(f"Invalid value for '{name}': expected a positive number of seconds, but got {value}.")


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


def check_preset(preset: str) -> None:
    from dsp.detector import PRESETS

    if preset not in PRESETS:
        raise UsageError(f"Invalid value for '--preset': expected one of {', '.join(PRESETS)}, but got {preset!r}.")


def open_view(runner, args, title: str, settings=None) -> int:
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
                return run_gui(runner, screenshot=args.screenshot, quit_after=quit_after, title=title, settings=settings)
        else:
            from ..gui.display import display_usable

            print(f"attune: no usable display ({display_usable()[1]}); showing the terminal view instead "
                  "(use --headless to skip this check).", file=sys.stderr)
    duration = getattr(args, "duration", None)
    if duration is None and args.quit_after is not None:
        duration = args.quit_after
    return run_headless(runner, duration=duration, out=sys.stdout)


def run(args) -> int:
    """Run ``attune monitor``; return the exit code."""
    _positive("--duration", args.duration)
    _positive("--wait", args.wait, allow_none=False)
    _positive("--quit-after", args.quit_after)
    if args.preset is not None:
        check_preset(args.preset)
    path = resolve_record_path(args.record, args.label)
    tick_log_path = getattr(args, "tick_log", None)
    if tick_log_path is not None and os.path.lexists(tick_log_path):
        raise UsageError(f"Invalid value for '--tick-log': '{tick_log_path}' already exists; choose a new file name.")
    gui = will_use_gui(args)
    config, modalities, settings = session_settings(args, gui)

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
    roster = None
    if args.roster:
        try:
            roster = Roster.load(args.roster)
        except (RosterError, OSError) as exc:
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
        source = _wait_for_source(session, args.wait, LiveSource, RecordingError)
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
        session.notices()  # said just now in the warnings; the runner shows only what comes later
        if path is not None:
            try:
                recorder = record_session(path, runner, session, label=args.label)
            except XdfWriteError as exc:
                raise UsageError(os_error_text(exc)) from None
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
