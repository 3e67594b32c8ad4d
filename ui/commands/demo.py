"""``attune demo``: a simulated session (by default a couple with a rupture and its repair) in the live view.

The simulator publishes LSL streams (loopback), a :class:`attune_monitor.acquisition.live.LiveSession`
receives them exactly as it would real wearables, and the session window opens.
With no display it says so and runs the headless monitor on the same simulator.
"""

from __future__ import annotations

import sys
import time

from ..errors import UsageError

# the simulator defaults are attune simulate's: not every seed shows both scripted ruptures (the detector misses
# some: with seed 0 the first one goes unflagged); the demo shows one where both are
from .options import (
    DEFAULT_PRESET,
    DEFAULT_SCENARIO,
    DEFAULT_SEED,
    add_session_options,
    check_at_least,
    check_positive,
    check_range,
    describe_settings,
    make_runner,
    open_view,
    session_settings,
    wait_for_source,
    will_use_gui,
)

__all__ = [
    "PARTICIPANTS", "SPEED_RANGE", "SCRIPTED_WORDS", "scenario_description", "register", "SimulatorClockSource",
    "start_demo", "run",
]

#: What each rupture family of the simulator scripts, in the words of the demo's closing message.
SCRIPTED_WORDS = {
    "aversive": "climbs alone (arousal up, coupling lost)", "withdrawn": "withdraws (flattens, coupling lost)",
    "coupling_loss": "loses the coupling", "partial": "partly loses the coupling", "drift": "drifts away",
    "sudden": "breaks off", "leave_group": "leaves the group",
}

#: The people a demo can show (the live view's layout) and how much faster than real time it can run.
PARTICIPANTS = (2, 8)
SPEED_RANGE = (0.1, 64.0)


def scenario_description(name_or_path: str) -> str:
    """The scenario's own description (the banner says what *this* scenario does, not the default's)."""
    from attune_monitor.acquisition.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(name_or_path).description or name_or_path
    except (ScenarioError, OSError):
        return name_or_path


def register(subparsers) -> None:
    """Add the ``demo`` parser."""
    p = subparsers.add_parser(
        "demo",
        help="a simulated session in the live view, by default a couple with a rupture and its repair (no hardware "
             "needed)",
        description=(
            "Start the simulator on a scenario and open the live view. The default scenario is a couple that talks "
            "calmly: their attunement becomes measurable after about 3-4 minutes of session time; at 4:30 one "
            "partner's arousal climbs alone for a minute, then they repair. At the default 4x the possible rupture "
            "is flagged and its repair shown within about 1.5 minutes on the clock. Other scenarios: `attune "
            "simulate --list-scenarios`. A flag is a prompt to check in, never a diagnosis."
        ),
    )
    p.add_argument("--scenario", default=DEFAULT_SCENARIO, metavar="NAME|FILE.toml",
                   help=f"simulator scenario (default {DEFAULT_SCENARIO}; see `attune simulate --list-scenarios`)")
    p.add_argument("--participants", type=int, metavar="N",
                   help=f"number of people, between {PARTICIPANTS[0]} and {PARTICIPANTS[1]} (default: the scenario's)")
    p.add_argument("--speed", type=float, default=4.0, metavar="X",
                   help=f"run the session X times faster than real time, between {SPEED_RANGE[0]:g} and "
                        f"{SPEED_RANGE[1]:g} (default %(default)g: in the default scenario the first possible rupture, "
                        "at 4:30 of session time, is flagged and repaired within about 1.5 minutes; 1 for real time)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, metavar="N",
                   help="simulator seed, 0 or more (default %(default)s: both scripted ruptures of the default "
                        "scenario are flagged and repaired)")
    add_session_options(p)
    p.add_argument("--headless", action="store_true", help="terminal view instead of the GUI")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (wall clock), a positive number")
    p.add_argument("--screenshot", metavar="PATH.png", help="GUI: save a PNG of the window after --quit-after s, exit")
    p.add_argument("--quit-after", type=float, metavar="S",
                   help="GUI: quit after S seconds (wall clock), a positive number")
    p.set_defaults(func=run)


class SimulatorClockSource:
    """A live LSL source whose completeness clock is the simulator's, so ``--speed`` speeds the pipeline too.

    The simulator stamps samples in session time and pushes them ``speed``
    times faster than real time; the plain :class:`attune_monitor.acquisition.sources.LiveSource`
    declares data complete up to ``local_clock()``, which would hold the
    pipeline at real time. Here data are complete up to the simulator's session
    time minus a safety margin of 0.5 s of wall clock (network and chunking).
    Session time 0 is the simulator's first sample. The simulated session has an end (:meth:`ended_at`): the
    runner then closes the session as a replay's end does, instead of reporting every stream lost.
    """

    def __init__(self, live_source, simulator, safety_wall_s: float = 0.5):
        self.live = live_source
        self.safety_wall_s = float(safety_wall_s)
        self._done_at: float | None = None  # monotonic time at which the simulator was first seen finished
        self.session = live_source.session  # the record button records its raw streams
        self.sim = simulator
        self.inputs = live_source.inputs
        self.origin = float(simulator.time_origin)
        self.safety_s = safety_wall_s * simulator.speed
        self.notes = getattr(live_source, "notes", [])
        self.messages = live_source.messages

    def poll(self):
        """New chunks, the simulator's completeness time (session time minus the margin) and the status."""
        chunks, _, status = self.live.poll()
        return chunks, self.origin + self.sim.session_time() - self.safety_s, status

    def ended_at(self) -> float | None:
        """The simulated session's end (stream time) once it is over, else ``None``.

        Over: the simulator pushed its last sample at least the safety margin plus 0.5 s of wall clock ago, so LSL
        has delivered it (a stream is called lost only after seconds without data).
        """
        import time

        if not self.sim.finished or self.sim.error is not None:
            return None
        now = time.monotonic()
        if self._done_at is None:
            self._done_at = now
        if now - self._done_at < self.safety_wall_s + 0.5:
            return None
        return self.origin + float(self.sim.session.duration_s)

    def new_streams(self) -> list[str]:
        """Names of streams that appeared after the source was made (not in its slots): announced by the runner."""
        return self.live.new_streams()

    def scripted_words(self, episodes) -> list[str]:
        """At the end: each rupture the scenario scripted (which the detector never saw), and whether it was flagged.

        Parameters
        ----------
        episodes : list of dict
            The session's episodes (session time, which is the truth's: both count from the simulator's first
            sample).

        Returns
        -------
        lines : list of str
            One message, or none when nothing was scripted.
        """
        from attune_monitor.evaluation import Detection, score_file

        from ..words import clock

        truth = self.sim.session.truth
        ruptures = truth.get("ruptures", [])
        if not ruptures:
            return []
        dets = [Detection(tuple(e["pair"]), tuple(e.get("people") or ()), float(e["onset_s"]),
                          float(e.get("flagged_s", e["onset_s"])), e.get("offset_s")) for e in episodes]
        sc = score_file(dets, truth)
        latency = iter(sc.detection_latency_s)
        parts = []
        for r, hit in zip(ruptures, sc.detected):
            what = SCRIPTED_WORDS.get(r.get("family") or r.get("style"), "a rupture")
            span = f"{r['who']} {what} {clock(r['onset_s'])}-{clock(r['offset_s'])}"
            parts.append(f"{span}: flagged at {clock(r['onset_s'] + next(latency))}" if hit else
                         f"{span}: not flagged")
        tail = ("" if all(sc.detected) else " (Attune misses some ruptures, and flags none while a pair is not yet "
                "measurably in tune: docs/validation.md)")
        return ["Scripted in this simulation (the detector never sees the script): " + "; ".join(parts) + "." + tail]

    def close(self) -> None:
        """Close the live session."""
        self.live.close()


def start_demo(scenario: str = DEFAULT_SCENARIO, participants: int | None = None, speed: float = 1.0,
               seed: int = DEFAULT_SEED,
               preset: str = DEFAULT_PRESET, wait_s: float = 15.0, config=None, modalities=None):
    """Start simulator, live session and runner (not its thread).

    ``config`` (a :class:`attune_monitor.dsp.pipeline.PipelineConfig`) replaces ``preset`` when given; ``modalities``
    limits the signals used (default: heart and skin).

    Returns
    -------
    runner : ui.runner.Runner
        ``runner.simulator`` is the running simulator; ``runner.stop()`` does not stop it: call
        ``runner.simulator.stop()`` too.
    """
    import uuid

    from attune_monitor.acquisition.live import LiveSession
    from attune_monitor.acquisition.scenario import ScenarioError, load_scenario
    from attune_monitor.acquisition.simulator import Simulator
    from attune_monitor.dsp.pipeline import PipelineConfig

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
        live = wait_for_source(session, wait_s, expected={s.source_id for s in sim.session.streams})
        deadline = time.monotonic() + wait_s
        while any(r.state == "connecting" for r in session.receivers.values()) and time.monotonic() < deadline:
            time.sleep(0.05)  # every inlet open before the first sample is pushed (a loaded machine takes seconds)
        time.sleep(0.3)
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
    check_range("--speed", args.speed, *SPEED_RANGE, what="a speed-up")
    check_positive("--quit-after", args.quit_after, example=60)
    check_positive("--duration", args.duration, example=60)
    check_range("--participants", args.participants, *PARTICIPANTS, what="a number of people")
    check_at_least("--seed", args.seed, 0)
    config, modalities, settings = session_settings(args, will_use_gui(args))
    from attune_monitor.acquisition.lslconfig import configure

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
