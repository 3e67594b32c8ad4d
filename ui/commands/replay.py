"""``attune replay``: play a recording back through the live pipeline (and optionally over LSL).

Examples::

    attune replay recordings/sample-couple.xdf                     # GUI: play, pause, seek, 0.5x-64x
    attune replay recordings/sample-couple.xdf --headless --speed 16
    attune replay session.xdf --publish --speed 1                  # also re-publish its streams on LSL
    attune replay session.xdf --no-preroll                         # open at 0:00, the baseline still to learn

By default the replay *pre-rolls*: before the view opens, the pipeline runs at full speed over the recording's
first stretch (the synchrony window, the detector's arming span and a warm-up: about 3 min with the default
settings, longer while a pair is still learning its baseline, at most one arming span more and never past half
the recording), so the view opens on that stretch's signals, synchrony, pair states and episodes instead of minutes
of "learning baseline", and the replay goes on from there at the chosen speed.

Replaying a recording gives the same episodes as ``attune analyze`` on it: both
run the same causal pipeline.
"""

from __future__ import annotations

import math
import sys

from ..errors import UsageError, os_error_text
from .options import (
    SCOPES,
    add_session_options,
    check_at_least,
    check_positive,
    check_range,
    check_usable,
    describe_settings,
    make_assign,
    make_runner,
    open_view,
    session_settings,
    will_use_gui,
)

__all__ = ["MIN_SPEED", "MAX_SPEED", "PREROLL_WARMUP_S", "default_preroll", "register", "run", "replay_from_setup"]

#: Replay speeds the command accepts (the GUI offers 0.5x .. 64x).
MIN_SPEED, MAX_SPEED = 0.1, 1000.0
#: Seconds of warm-up the default pre-roll adds to the synchrony window and the arming span (the chance level
#: and the first windows settle).
PREROLL_WARMUP_S = 30.0


def default_preroll(runner, duration_s: float) -> tuple[float, float]:
    """The default pre-roll of a replay: ``(min_s, max_s)`` for :meth:`attune_monitor.ui.runner.Runner.preroll`.

    At least the synchrony window + the detector's arming span (its calibration span without arming) +
    :data:`PREROLL_WARMUP_S` (180 s with the default settings); on while a pair is still learning its baseline,
    up to one arming span more; never past half the recording (at least half of it is played).
    """
    cfg = runner.pipeline.detector.cfg
    span = float(cfg.arm_span_s if cfg.arming else cfg.calibration_s)
    lo = float(runner.config.window_s) + span + PREROLL_WARMUP_S
    cap = duration_s / 2.0
    return min(lo, cap), min(lo + span, cap)


def register(subparsers) -> None:
    """Add the ``replay`` parser."""
    p = subparsers.add_parser(
        "replay",
        help="play a recording back through the live view (GUI or terminal), optionally re-publishing it on LSL",
        description=(
            "Play a recording (XDF, E4 export folder or CSV) back through the same pipeline as a live session, "
            "in the GUI (play, pause, seek, 0.5x-64x) or the terminal (--headless). --publish also re-publishes "
            "the recording's streams as LSL outlets (all channels, original headers, timestamps shifted to now) "
            "for other LSL tools. A flag is a prompt to check in, never a diagnosis."
        ),
    )
    p.add_argument("file", metavar="FILE", help="recording to replay")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help=f"replay speed, between {MIN_SPEED:g} and "
                   f"{MAX_SPEED:g} (default %(default)g; the GUI's speed menu offers 0.5x to 64x)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--start", type=float, default=None, metavar="S",
                       help="start playing at S seconds into the recording (everything before S is processed first; "
                            "S is 0 or more; 0 = from the very start, as --no-preroll)")
    where.add_argument("--preroll", type=float, default=None, metavar="SECONDS",
                       help="process the first SECONDS at full speed before the view opens, then play on from there "
                            "(default: the synchrony window + the detector's arming span + 30 s, about 3 min, then on "
                            "while a pair is still learning its baseline, up to 2 min more; at most half the "
                            "recording; SECONDS is 0 or more)")
    where.add_argument("--no-preroll", action="store_true",
                       help="open at 0:00 and play from the start (the first minutes show 'learning baseline')")
    p.add_argument("--publish", action="store_true", help="re-publish the recording's streams as LSL outlets")
    p.add_argument("--source-suffix", default="-replay", metavar="TEXT",
                   help="appended to every re-published source_id (default -replay; '' keeps the originals)")
    p.add_argument("--lsl-scope", choices=SCOPES, default=None, help="with --publish: where the outlets are seen")
    p.add_argument("--roster", metavar="R.toml", help="who wears which stream")
    add_session_options(p)
    p.add_argument("--headless", action="store_true", help="terminal view instead of the GUI")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a screenshot after --quit-after seconds, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="quit after S seconds, a positive number")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``attune replay``; return the exit code."""
    check_range("--speed", args.speed, MIN_SPEED, MAX_SPEED, what="a speed")
    for flag, value in (("--start", args.start), ("--preroll", getattr(args, "preroll", None))):
        if value is not None and not (math.isfinite(value) and value >= 0):
            check_at_least(flag, value, 0, what="seconds")
    check_positive("--quit-after", args.quit_after, example=60)
    config, modalities, settings = session_settings(args, will_use_gui(args))
    if args.publish or args.lsl_scope:
        from attune_monitor.acquisition.lslconfig import configure

        try:
            configure(args.lsl_scope)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    from attune_monitor.acquisition.files import RecordingError, load_recording
    from attune_monitor.acquisition.roster import RosterError
    from attune_monitor.acquisition.sources import RecordingSource

    try:
        rec = load_recording(args.file)
        assign, notes = make_assign(rec, args.roster)
        check_usable(rec, assign)
        source = RecordingSource(rec, speed=args.speed, assign=assign)
    except (RecordingError, RosterError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read it ({os_error_text(exc)}).") from None
    except ValueError as exc:  # what the pipeline says about unusable stream layouts
        raise UsageError(f"{args.file}: {exc}") from None
    fixed = args.start if args.start is not None else getattr(args, "preroll", None)
    if fixed is not None and fixed > source.duration_s:
        flag = "--start" if args.start is not None else "--preroll"
        raise UsageError(f"Invalid value for '{flag}': the recording lasts {source.duration_s:.0f} s, "
                         f"but got {fixed:g}.")
    runner = make_runner(source, config, modalities)
    for p in rec.problems:  # after the last check: an unusable file gets its one error line only
        print(f"attune replay: warning: {args.file}: {p}", file=sys.stderr)
    for n in notes:
        runner.model.message(n)
    # what the facilitator (and other apps) marked during the session, on the timelines as it was
    runner.model.show_external_markers([(t - source.origin, name, text) for t, name, text in rec.event_markers()])
    print(f"replaying {args.file} ({source.duration_s:.0f} s, {', '.join(runner.model.participants)}) at "
          f"{args.speed:g}x; {describe_settings(config, modalities)}", file=sys.stderr)
    start = _preroll(runner, args, source.duration_s)
    publisher = None
    if args.publish:
        from attune_monitor.acquisition.replay_publish import RecordingPublisher

        # the outlets start where the view does
        publisher = RecordingPublisher(rec, speed=args.speed, start_s=start, source_suffix=args.source_suffix)
        publisher.start()
        print(f"re-publishing {len(publisher.streams)} streams on LSL (source_id + {args.source_suffix!r}), "
              f"timestamps shifted by {publisher.shift:+.3f} s", file=sys.stderr)
    try:
        return open_view(runner, args, title=f"Attune - replay {args.file}", settings=settings)
    finally:
        if publisher is not None:
            publisher.stop()
            if publisher.error is not None:
                print(f"attune replay: re-publishing stopped: {publisher.error}", file=sys.stderr)


def _preroll(runner, args, duration_s: float) -> float:
    """Process the stretch before the replay starts (``--start``, ``--preroll`` or the default); say what was done.

    Returns the session time the replay plays on from.
    """
    import time

    from ..words import clock

    if args.start is not None:
        lo = hi = args.start
    elif getattr(args, "no_preroll", False):
        lo = hi = 0.0
    elif getattr(args, "preroll", None) is not None:
        lo = hi = args.preroll
    else:
        lo, hi = default_preroll(runner, duration_s)
    if hi <= 0:
        return 0.0
    t0 = time.monotonic()
    start = runner.preroll(lo, hi)
    if args.start is None:
        learning = sum(ps.get("state") == "calibrating" for ps in runner.model.snapshot(1).pair_states)
        npairs = len(runner.model.pairs)
        how = (f"{learning} of {npairs} pair(s) still learning their baseline" if learning
               else "every pair has measured its baseline")
        print(f"pre-rolled the first {clock(start)} in {time.monotonic() - t0:.1f} s ({how}); playing on from "
              f"{clock(start)} (--no-preroll starts at 0:00)", file=sys.stderr)
    return start


def replay_from_setup(path: str, monitor_args) -> int:
    """Replay the recording chosen in ``attune monitor``'s setup dialog (GUI, 1x, the monitor's session options)."""
    import argparse

    args = argparse.Namespace(
        file=path, speed=1.0, start=None, preroll=None, no_preroll=False, publish=False, source_suffix="-replay",
        lsl_scope=None, roster=None, preset=monitor_args.preset, window=getattr(monitor_args, "window", None),
        signals=getattr(monitor_args, "signals", None), headless=False, screenshot=None, quit_after=None)
    return run(args)
