"""``attune simulate``: publish synthetic wearables over LSL, or write them to an XDF file.

Examples::

    attune simulate                                   # the rupture/repair demo couple, live
    attune simulate --scenario group-withdrawal --speed 4
    attune simulate --scenario couple-confounds --out test.xdf --truth test.truth.json
"""

from __future__ import annotations

import json
import os
import sys
import time

from ..errors import UsageError, check_output_file
from .options import DEFAULT_SCENARIO, DEFAULT_SEED, check_at_least, check_positive, check_range

__all__ = ["PARTICIPANTS", "register", "run"]

#: How many people a simulated session can have (64: the largest group the live pipeline is measured at, issue 21;
#: 64 people at 1x take ~15 % of one core to publish, 144 streams).
PARTICIPANTS = (1, 64)


def register(subparsers) -> None:
    """Add the ``simulate`` parser."""
    p = subparsers.add_parser(
        "simulate",
        help="publish simulated heart and EDA streams (LSL) or write them to XDF",
        description=(
            "Publish LSL streams that mimic real wearables (Polar H10 RR/ECG, wrist HR, E4/EmotiBit/Shimmer EDA, "
            "E4 PPG), one set per participant, following a scenario with scripted ruptures, repairs and "
            "confounds. Timestamps are session time; --speed only pushes faster."
        ),
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="NAME|FILE.toml",
                   help=f"built-in scenario name or a TOML file (default {DEFAULT_SCENARIO}; --list-scenarios)")
    p.add_argument("--list-scenarios", action="store_true", help="list the built-in scenarios and exit")
    p.add_argument("--participants", type=int, metavar="N",
                   help=f"number of participants, between {PARTICIPANTS[0]} and {PARTICIPANTS[1]} (default: the "
                        "scenario's)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds to simulate, a positive number (default: the scenario's)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                   help="random seed, 0 or more; same seed, same data (default %(default)s: both ruptures of the "
                        "default scenario are flagged with the balanced preset)")
    p.add_argument("--speed", type=float, default=1.0, metavar="X",
                   help="push X times faster than real time, a positive number (timestamps stay in session time; "
                        "default %(default)g)")
    p.add_argument("--truth", metavar="PATH", help="write the ground truth (ruptures, confounds) as JSON here")
    p.add_argument("--out", metavar="FILE.xdf", help="write an XDF file as fast as possible instead of publishing")
    p.add_argument("--source-prefix", default="attune-sim", metavar="TEXT",
                   help="start of every source_id (to run two simulators side by side; default attune-sim)")
    p.set_defaults(func=run)


def _rate(srate: float) -> str:
    return "irregular (one per beat)" if srate == 0 else f"{srate:g} Hz"


def run(args) -> int:
    """Run ``attune simulate``; return the exit code."""
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import builtin_names, load_scenario

    if args.list_scenarios:
        for name in builtin_names():
            sc = load_scenario(name)
            print(f"{name:24s} {len(sc.participants)} people, {sc.duration_s:g} s  {sc.description}")
        return 0
    check_positive("--speed", args.speed, what="a positive speed-up", example=8)
    check_positive("--duration", args.duration, example=600)
    check_range("--participants", args.participants, *PARTICIPANTS, what="a number of participants")
    check_at_least("--seed", args.seed, 0)
    scenario = load_scenario(args.scenario)  # a ScenarioError is said by attune_monitor.ui.cli
    if args.participants is not None and args.participants != len(scenario.participants):
        scenario = scenario.with_participants(args.participants)
    for opt in ("truth", "out"):
        path = getattr(args, opt)
        if path:
            if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise UsageError(f"Invalid value for '--{opt}': folder '{os.path.dirname(os.path.abspath(path))}' "
                                 "does not exist; create it or choose another path.")
            check_output_file(path, f"--{opt}", create_parents=False)

    session = simulate_session(scenario, args.seed, args.duration, source_prefix=args.source_prefix)
    print(f"scenario {scenario.name}: {len(scenario.participants)} participants, {session.duration_s:g} s, "
          f"seed {args.seed}, coupling {scenario.mean_coupling:g}")
    for s in session.streams:
        print(f"  {s.participant:6s} {s.name:22s} type={s.type:4s} rate={_rate(s.srate):24s} "
              f"{s.manufacturer} {s.device}, {s.unit}  source_id={s.source_id}")

    if args.out:
        from attune_monitor.acquisition.simulator import XDF_TIME_ORIGIN, write_session_xdf
        write_session_xdf(session, args.out, time_origin=XDF_TIME_ORIGIN)  # XdfWriteError: said by the cli
        _write_truth(args.truth, session, XDF_TIME_ORIGIN)
        n = sum(s.timestamps.size for s in session.streams)
        print(f"wrote {args.out}: {len(session.streams)} streams, {n} samples")
        return 0

    from attune_monitor.acquisition.simulator import Simulator

    sim = Simulator(session, speed=args.speed)
    origin = sim.start()
    try:
        _write_truth(args.truth, session, origin)
        print(f"publishing at {args.speed:g}x real time ({session.duration_s / args.speed:.0f} s); Ctrl-C stops",
              flush=True)
        while not sim.wait(0.5):
            pass
        if sim.error is not None:
            raise UsageError(f"the simulator stopped: {sim.error}")
        time.sleep(min(1.0, 0.2 + sim.chunk_interval))  # let inlets drain the last chunk before outlets close
        print("done: every sample was published")
    except KeyboardInterrupt:
        print(f"stopped at {sim.session_time():.1f} s of {session.duration_s:g} s", file=sys.stderr)
        return 130
    finally:
        sim.stop()
    return 0


def _write_truth(path, session, origin: float) -> None:
    if not path:
        return
    truth = dict(session.truth, time_origin=origin)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(truth, f, indent=1)
        os.replace(tmp, path)
    except OSError as exc:
        raise UsageError(f"cannot write the truth file '{path}': {exc.strerror or exc}; choose another path.") from None
