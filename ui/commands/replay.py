"""``attune replay``: play a recording back through the live pipeline (and optionally over LSL).

Examples::

    attune replay recordings/sample-couple.xdf                     # GUI: play, pause, seek, 0.5x-64x
    attune replay recordings/sample-couple.xdf --headless --speed 16
    attune replay session.xdf --publish --speed 1                  # also re-publish its streams on LSL

Replaying a recording gives the same episodes as ``attune analyze`` on it: both
run the same causal pipeline.
"""

from __future__ import annotations

import math
import sys

from ..errors import UsageError, os_error_text
from .monitor import (SCOPES, _positive, add_session_options, describe_settings, make_runner, open_view,
                      session_settings, will_use_gui)

#: Replay speeds the command accepts (the GUI offers 0.5x .. 64x).
MIN_SPEED, MAX_SPEED = 0.1, 1000.0


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
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="replay speed (default 1; GUI 0.5-64)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="start at S seconds into the recording")
    p.add_argument("--publish", action="store_true", help="re-publish the recording's streams as LSL outlets")
    p.add_argument("--source-suffix", default="-replay", metavar="TEXT",
                   help="appended to every re-published source_id (default -replay; '' keeps the originals)")
    p.add_argument("--lsl-scope", choices=SCOPES, default=None, help="with --publish: where the outlets are seen")
    p.add_argument("--roster", metavar="R.toml", help="who wears which stream")
    add_session_options(p)
    p.add_argument("--headless", action="store_true", help="terminal view instead of the GUI")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a screenshot after --quit-after seconds, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="quit after S seconds")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``attune replay``; return the exit code."""
    if not (math.isfinite(args.speed) and MIN_SPEED <= args.speed <= MAX_SPEED):
        raise UsageError(f"Invalid value for '--speed': expected {MIN_SPEED:g} .. {MAX_SPEED:g} (e.g. 1, 8, 64), "
                         f"but got {args.speed}.")
    if not (math.isfinite(args.start) and args.start >= 0):
        raise UsageError(f"Invalid value for '--start': expected seconds >= 0, but got {args.start}.")
    _positive("--quit-after", args.quit_after)
    config, modalities, settings = session_settings(args, will_use_gui(args))
    if args.publish or args.lsl_scope:
        from acquisition.lslconfig import configure

        try:
            configure(args.lsl_scope)
        except (RuntimeError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    from acquisition.files import RecordingError, load_recording
    from acquisition.roster import RosterError
    from acquisition.sources import RecordingSource

    from .analyze import _check_usable, make_assign

    try:
        rec = load_recording(args.file)
        assign, notes = make_assign(rec, args.roster)
        _check_usable(rec, assign)
        source = RecordingSource(rec, speed=args.speed, assign=assign)
    except (RecordingError, RosterError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read it ({os_error_text(exc)}).") from None
    except ValueError as exc:  # what the pipeline says about unusable stream layouts
        raise UsageError(f"{args.file}: {exc}") from None
    if args.start > source.duration_s:
        raise UsageError(f"Invalid value for '--start': the recording lasts {source.duration_s:.0f} s, "
                         f"but got {args.start:g}.")
    if args.start:
        source.seek(args.start)
    runner = make_runner(source, config, modalities)
    for p in rec.problems:  # after the last check: an unusable file gets its one error line only
        print(f"attune replay: warning: {args.file}: {p}", file=sys.stderr)
    for n in notes:
        runner.model.message(n)
    # what the facilitator (and other apps) marked during the session, on the timelines as it was
    runner.model.show_external_markers([(t - source.origin, name, text) for t, name, text in rec.event_markers()])
    publisher = None
    if args.publish:
        from acquisition.replay_publish import RecordingPublisher

        publisher = RecordingPublisher(rec, speed=args.speed, start_s=args.start, source_suffix=args.source_suffix)
        publisher.start()
        print(f"re-publishing {len(publisher.streams)} streams on LSL (source_id + {args.source_suffix!r}), "
              f"timestamps shifted by {publisher.shift:+.3f} s", file=sys.stderr)
    print(f"replaying {args.file} ({source.duration_s:.0f} s, {', '.join(runner.model.participants)}) at "
          f"{args.speed:g}x; {describe_settings(config, modalities)}", file=sys.stderr)
    try:
        return open_view(runner, args, title=f"Attune - replay {args.file}", settings=settings)
    finally:
        if publisher is not None:
            publisher.stop()
            if publisher.error is not None:
                print(f"attune replay: re-publishing stopped: {publisher.error}", file=sys.stderr)


def replay_from_setup(path: str, monitor_args) -> int:
    """Replay the recording chosen in ``attune monitor``'s setup dialog (GUI, 1x, the monitor's session options)."""
    import argparse

    args = argparse.Namespace(
        file=path, speed=1.0, start=0.0, publish=False, source_suffix="-replay", lsl_scope=None, roster=None,
        preset=monitor_args.preset, window=getattr(monitor_args, "window", None),
        signals=getattr(monitor_args, "signals", None), headless=False, screenshot=None, quit_after=None)
    return run(args)
