"""``attune demo``: simulated couple with a rupture about a minute in and its repair, in the live view.

The simulator publishes LSL streams (loopback), a :class:`acquisition.live.LiveSession`
receives them exactly as it would real wearables, and the session window opens.
With no display it says so and runs the headless monitor on the same simulator.
"""

from __future__ import annotations

import sys
import time
import uuid

from ..errors import UsageError
# the simulator seed of the demo is attune simulate's: not every seed shows both scripted ruptures (the detector
# misses some: with seed 0 the first one goes unflagged); the demo shows one where both are
from .simulate import DEFAULT_SEED

DEFAULT_SCENARIO = "couple-rupture-repair"


def scenario_description(name_or_path: str) -> str:
    """The scenario's own description (the banner says what *this* scenario does, not the default's)."""
    from acquisition.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(name_or_path).description or name_or_path
    except (ScenarioError, OSError):
        return name_or_path


def register(subparsers) -> None:
    """Add the ``demo`` parser."""
    p = subparsers.add_parser(
        "demo",
        help="simulated couple with a rupture and its repair, in the live view (no hardware needed)",
        description=(
            "Start the simulator (a couple that talks calmly: their attunement becomes measurable after about "
            "3-4 minutes of session time; at 4:30 one partner's arousal climbs alone for a minute, then they "
            "repair) and open the live view, at 4x by default: the possible rupture is flagged and its repair "
            "shown within about 1.5 minutes on the clock. A flag is a prompt to check in, never a diagnosis."
        ),
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="NAME|FILE.toml",
                   help=f"simulator scenario (default {DEFAULT_SCENARIO}; see `attune simulate --list-scenarios`)")
    p.add_argument("--participants", type=int, metavar="N", help="number of people (default: the scenario's)")
    p.add_argument("--speed", type=float, default=4.0, metavar="X",
                   help="run the session X times faster than real time (default 4: the first possible rupture (at 4:30 "
                        "of session time) is flagged and repaired within about 1.5 minutes; 1 for real time)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                   help=f"simulator seed (default {DEFAULT_SEED}: both scripted ruptures are flagged and repaired)")
    from .monitor import add_session_options

    add_session_options(p)
    p.add_argument("--headless", action="store_true", help="terminal view instead of the GUI")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (wall clock)")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a PNG of the window after --quit-after s, exit")
    p.add_argument("--quit-after", type=float, metavar="S", help="GUI: quit after S seconds (wall clock)")
    p.set_defaults(func=run)


class SimulatorClockSource:
    """A live LSL source whose completeness clock is the simulator's, so ``--speed`` speeds the pipeline too.

    The simulator stamps samples in session time and pushes them ``speed``
    times faster than real time; the plain :class:`acquisition.sources.LiveSource`
    declares data complete up to ``local_clock()``, which would hold the
    pipeline at real time. Here data are complete up to the simulator's session
    time minus a safety margin of 0.5 s of wall clock (network and chunking).
    Session time 0 is the simulator's first sample.
    """

    def __init__(self, live_source, simulator, safety_wall_s: float = 0.5):
        self.live = live_source
        self.session = live_source.session  # the record button records its raw streams
        self.sim = simulator
        self.inputs = live_source.inputs
        self.origin = float(simulator.time_origin)
        self.safety_s = safety_wall_s * simulator.speed
        self.notes = getattr(live_source, "notes", [])
        self.messages = live_source.messages

    def poll(self):
        chunks, _, status = self.live.poll()
        return chunks, self.origin + self.sim.session_time() - self.safety_s, status

    def close(self) -> None:
        self.live.close()


def start_demo(scenario: str = DEFAULT_SCENARIO, participants: int | None = None, speed: float = 1.0, seed: int = DEFAULT_SEED,
               preset: str = "balanced", wait_s: float = 15.0, config=None, modalities=None):
    """Start simulator, live session and runner (not its thread).

    ``config`` (a :class:`dsp.pipeline.PipelineConfig`) replaces ``preset`` when given; ``modalities``
    limits the signals used (default: heart and skin).

    Returns
    -------
    runner : ui.runner.Runner
        ``runner.simulator`` is the running simulator; ``runner.stop()`` does not stop it: call
        ``runner.simulator.stop()`` too.
    """
    from acquisition.files import RecordingError
    from acquisition.live import LiveSession
    from acquisition.scenario import ScenarioError, load_scenario
    from acquisition.simulator import Simulator
    from acquisition.sources import LiveSource
    from dsp.pipeline import PipelineConfig

    from .monitor import _wait_for_source, make_runner

    try:
        sc = load_scenario(scenario)
        if participants is not None:
            sc = sc.with_participants(participants)
    except (ScenarioError, OSError) as exc:
        raise UsageError(str(exc)) from None
    prefix = f"attune-demo-{uuid.uuid4().hex[:8]}"
    sim = Simulator.from_scenario(sc, seed=seed, source_prefix=prefix, speed=speed)
    sim.open()  # outlets visible first, so the session receives the very first sample
    session = LiveSession(match=f"{prefix}*", rescan_interval=1.0).start()
    try:
        live = _wait_for_source(session, wait_s, LiveSource, RecordingError)
        time.sleep(0.5)  # inlets of every stream connected
        sim.start()
        runner = make_runner(SimulatorClockSource(live, sim), config or PipelineConfig(preset=preset), modalities)
    except BaseException:
        session.close()
        sim.stop()
        raise
    runner.simulator = sim
    return runner


def run(args) -> int:
    """Run ``attune demo``; return the exit code."""
    from .monitor import describe_settings, open_view, session_settings, will_use_gui

    if not args.speed > 0 or args.speed > 64:
        raise UsageError(f"Invalid value for '--speed': expected a number in (0, 64], but got {args.speed:g}.")
    for name in ("quit_after", "duration"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise UsageError(f"Invalid value for '--{name.replace('_', '-')}': expected seconds > 0, but got {v:g}.")
    if args.participants is not None and not 2 <= args.participants <= 8:
        raise UsageError(f"Invalid value for '--participants': expected 2 to 8, but got {args.participants}.")
    config, modalities, settings = session_settings(args, will_use_gui(args))
    from acquisition.lslconfig import configure

    configure(None)
    runner = start_demo(args.scenario, args.participants, args.speed, args.seed, config=config, modalities=modalities)
    runner.model.label = f"Demo \u00b7 simulated at {args.speed:g}x"
    print(f"demo: simulator '{args.scenario}' at {args.speed:g}x (session time runs {args.speed:g}x faster than the "
          f"clock); people {', '.join(runner.model.participants)}; {describe_settings(config, modalities)}. "
          f"Scenario: {scenario_description(args.scenario)}",
          file=sys.stderr)
    try:
        return open_view(runner, args, title="Attune - demo (simulated)", settings=settings)
    finally:
        runner.stop()
        runner.simulator.stop()
