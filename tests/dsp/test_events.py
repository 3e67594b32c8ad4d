"""The typed events (:mod:`attune_monitor.dsp.events`): each kind is raised with the right fields on a series with a
known truth, is immutable, and writes exactly the dict the detector and the pipeline emitted before the events
were typed (the wire format of recordings' ``Attune events`` stream)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from attune_monitor import dsp
from attune_monitor.acquisition.recorder import event_payload
from attune_monitor.dsp import events as E
from attune_monitor.dsp.detector import Episode, PairMachine, PairState, RuptureDetector, SignalLossTracker, get_preset
from attune_monitor.dsp.quality import Quality

# the analytic evidence without dating back: onsets and ends are where the series change (as tests/dsp/test_arming.py)
CFG = dataclasses.replace(get_preset("balanced", "analytic"), onset_delay_s=0.0, repair_delay_s=0.0)


def _series(rng, segments, noise=0.05):
    """Concatenate (duration_s, r) segments at one window per second, with noise."""
    r = np.concatenate([np.full(int(d), v, dtype=float) for d, v in segments])
    return np.clip(r + noise * rng.standard_normal(r.size), -0.99, 0.99)


def _detector_events(sync, shared=(), cfg=CFG):
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=cfg, window_s=30.0)
    for t in shared:
        det.note_shared_event(t, "marker")
    t = np.arange(sync.size, dtype=float) + 1.0
    events = det.update("hr", t, sync[None], np.zeros((1, sync.size)), np.full((1, sync.size), 0.25))
    det.finish(t[-1])
    return det, events


def _machine_events(sync, cfg=CFG, shared_at=None):
    mach = PairMachine(("hr",), cfg, 1.0, 30.0)
    events: list = []
    for k, r in enumerate(sync):
        t = k + 1.0
        if shared_at is not None and t == shared_at:
            events += mach.shared_event(t, t + 30.0)
        events += mach.step(t, {"hr": (float(r), 0.0, 0.25)})
    return mach, events


def _of(kind, events):
    return [e for e in events if isinstance(e, kind)]


# -- one test per kind: raised, with typed fields, on a known truth -----------------------------------------------

def test_state_changes_chain_and_name_the_pair(rng):
    det, events = _detector_events(_series(rng, [(200, 0.7), (45, 0.0), (120, 0.7)]))
    states = _of(E.StateChanged, events)
    assert states and all(type(e.state) is PairState and type(e.previous) is PairState for e in states)
    assert all(e.pair == ("A", "B") for e in states)
    # each change leaves the state the last one entered, from calibrating on, in time order
    assert [e.previous for e in states] == [PairState.CALIBRATING] + [e.state for e in states[:-1]]
    assert [e.t for e in states] == sorted(e.t for e in states)
    seq = [e.state for e in states]
    assert seq.index(PairState.POSSIBLE_RUPTURE) < seq.index(PairState.REPAIRING) < seq.index(PairState.REPAIRED)
    assert det.machines[0].state == seq[-1]
    # a machine used on its own does not know its pair
    _, alone = _machine_events(_series(rng, [(200, 0.7)]))
    assert _of(E.StateChanged, alone) and all(e.pair is None for e in _of(E.StateChanged, alone))


def test_pair_rupture_dates_its_onset_at_the_drop(rng):
    mach, events = _machine_events(_series(rng, [(200, 0.7), (60, 0.0)]))
    (ev,) = _of(E.PairRupture, events)
    assert 198 <= ev.onset_s <= 203 < ev.t  # the drop starts at 200 s; flagged some seconds later
    assert ev.who is None and ev.pair is None
    assert mach.episode is not None and mach.episode.onset_s == ev.onset_s
    # raised by a person's tie to the group: names them
    evs: list = []
    mach2, _ = _machine_events(_series(rng, [(200, 0.7)]))
    mach2.flag(201.0, evs, who=["C"])
    assert isinstance(evs[0], E.PairRupture) and evs[0].who == ("C",) and evs[0].t == 201.0


def test_pair_repaired_dates_the_end_after_the_flag(rng):
    mach, events = _machine_events(_series(rng, [(200, 0.7), (45, 0.0), (120, 0.7)]))
    (flag,) = _of(E.PairRupture, events)
    (ev,) = _of(E.PairRepaired, events)
    assert 245 <= ev.offset_s <= 265          # synchrony is back at 245 s
    assert flag.t <= ev.offset_s <= ev.below_s   # not dated back before the flag; below_s is not dated back
    assert ev.t - ev.below_s == pytest.approx(CFG.min_repaired_s)   # known after min_repaired_s below
    assert [(e.t, e.state) for e in _of(E.StateChanged, events) if e.t == ev.t] == [(ev.t, PairState.REPAIRED)]
    assert mach.episode is None


def test_pair_lapsed_closes_lapse_s_after_the_onset(rng):
    mach, events = _machine_events(_series(rng, [(200, 0.7), (600, 0.0)]))
    (flag,) = _of(E.PairRupture, events)
    (ev,) = _of(E.PairLapsed, events)
    assert ev.offset_s == ev.t and ev.t - flag.onset_s == pytest.approx(CFG.lapse_s, abs=1.0)
    assert mach.state == PairState.OUT_OF_TUNE and mach.out_of_tune_since == flag.onset_s


def test_pair_interrupted_by_a_shared_event(rng):
    mach, events = _machine_events(_series(rng, [(200, 0.7), (200, 0.0)]), shared_at=260.0)
    assert _of(E.PairRupture, events)
    (ev,) = _of(E.PairInterrupted, events)
    assert ev.t == ev.offset_s == 260.0
    assert mach.state == PairState.NOT_IN_TUNE


def test_episode_opened_then_repaired(rng):
    det, events = _detector_events(_series(rng, [(200, 0.7), (45, 0.0), (120, 0.7)]))
    (ep,) = det.episodes
    opened, repaired = _of(E.EpisodeEvent, events)
    assert type(opened) is E.EpisodeOpened and type(repaired) is E.EpisodeRepaired
    assert opened.episode is ep and repaired.episode is ep and opened.pair == repaired.pair == ("A", "B")
    assert opened.t == ep.flagged_s and repaired.t > ep.offset_s
    assert ep.outcome == "repaired" and 245 <= ep.offset_s <= 265


@pytest.mark.parametrize("gap_s, reopened", [(15, True), (30, False)])
def test_a_relapse_soon_after_a_repair_reopens_the_episode(rng, gap_s, reopened):
    """Repaired once the drop is below the repaired level for min_repaired_s; a new flag within merge_gap_s +
    min_repaired_s of when it fell below reopens the same episode, a later one opens a new one."""
    det, events = _detector_events(_series(rng, [(200, 0.7), (45, 0.0), (gap_s, 0.7), (45, 0.0), (200, 0.7)]))
    kinds = [type(e) for e in _of(E.EpisodeEvent, events)]
    first_repair = _of(E.EpisodeRepaired, events)[0]
    if reopened:
        assert kinds == [E.EpisodeOpened, E.EpisodeRepaired, E.EpisodeReopened, E.EpisodeRepaired]
        (ev,) = _of(E.EpisodeReopened, events)
        assert ev.episode is first_repair.episode and len(det.episodes) == 1
        assert ev.t - first_repair.episode.flagged_s > 45  # a second flag, not the first
    else:
        assert kinds == [E.EpisodeOpened, E.EpisodeRepaired, E.EpisodeOpened, E.EpisodeRepaired]
        assert len(det.episodes) == 2


def test_episode_closed_by_a_lapse_and_by_a_marker(rng):
    det, events = _detector_events(_series(rng, [(200, 0.7), (600, 0.0)]))
    (ev,) = _of(E.EpisodeClosed, events)
    assert ev.episode is det.episodes[0] and ev.episode.outcome == "unrepaired" and ev.t == ev.episode.offset_s
    det, events = _detector_events(_series(rng, [(200, 0.7), (200, 0.0)]), shared=[260.0])
    (ev,) = _of(E.EpisodeClosed, events)
    assert ev.episode.outcome == "interrupted" and ev.t == 260.0 and ev.pair == ("A", "B")


def test_signal_lost_and_back_per_run():
    fs = 4.0
    q = np.zeros(400, dtype=np.uint8)
    q[40:80] = Quality.ELECTRODE_OFF       # 10 s .. 20 s
    q[300:360] = Quality.NO_DATA           # 75 s .. 90 s
    tr = SignalLossTracker(fs, min_duration_s=2.0)
    events = []
    for s in range(0, 400, 7):
        events += tr.update("P1", "eda", s, q[s:s + 7])
    assert [type(e) for e in events] == [E.SignalLost, E.SignalBack, E.SignalLost, E.SignalBack]
    lost, back = events[:2]
    assert (lost.participant, lost.modality, lost.onset_s, lost.offset_s, lost.reason) == (
        "P1", "eda", 10.0, None, "electrode_off")
    assert lost.t == 10.0   # reported once the run is min_duration_s long, dated at its onset
    assert (back.onset_s, back.offset_s, back.reason, back.t) == (10.0, 20.0, "electrode_off", 20.0)
    assert (events[2].onset_s, events[3].offset_s, events[3].reason) == (75.0, 90.0, "no_data")
    assert tr.periods[0]["offset_s"] == 20.0 and lost.offset_s is None   # the event is a snapshot, the period goes on


@pytest.fixture(scope="module")
def stressor_run(tmp_path_factory):
    """A couple with everybody's arousal climbing at once at 400 s (a shared stressor) and a lost strap at 450 s:
    the pipeline's events, update by update."""
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario, parse_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.analysis import feed, make_pipeline
    from attune_monitor.dsp.pipeline import PipelineConfig

    base = load_scenario("couple-calm")
    sc = dataclasses.replace(base, duration_s=540.0, confounds=parse_scenario({
        "name": "x", "duration_s": 540, "participants": [{"id": "P1"}, {"id": "P2"}],
        "confounds": [{"kind": "shared_stressor", "onset_s": 400, "duration_s": 40},
                      {"kind": "strap_dropout", "participants": ["P2"], "onset_s": 470, "duration_s": 20}],
    }).confounds)
    path = tmp_path_factory.mktemp("ev") / "stressor.xdf"
    write_session_xdf(simulate_session(sc, seed=3), path)
    source = RecordingSource(load_recording(path), speed=math.inf)
    pipe = make_pipeline(source, PipelineConfig())
    updates, t = [], 0.0
    while t < source.duration_s:
        t = min(t + 60.0, source.duration_s)
        chunks, until, _ = source.poll(horizon_s=t)
        feed(pipe, chunks)
        updates.append(pipe.advance(until))
    updates.append(pipe.flush(source.end))
    return pipe, updates


def test_shared_event_when_everybody_moves_at_once(stressor_run):
    pipe, updates = stressor_run
    shared = [e for u in updates for e in _of(E.SharedEvent, u.events)]
    assert shared, "a shared stressor moves everybody's arousal at once"
    assert all(e.what == "everybody's arousal moved at once" for e in shared)
    assert any(400 <= e.t <= 445 for e in shared)
    assert [e.t for e in shared] == [te for te, what in pipe.detector.shared_events if what == shared[0].what]


def test_pipeline_events_are_typed_and_in_time_order(stressor_run):
    _, updates = stressor_run
    for u in updates:
        assert all(isinstance(e, E.Event) for e in u.events)
        keys = [e.onset_s if isinstance(e, E.SignalBack) else e.t for e in u.events]
        assert keys == sorted(keys)
    lost = [e for u in updates for e in _of(E.SignalLost, u.events)]
    assert any(e.participant == "P2" and e.modality == "hr" and 465 <= e.onset_s <= 475 for e in lost), lost


# -- immutability -------------------------------------------------------------------------------------------------

def _one_of_each() -> list[E.Event]:
    ep = Episode(id=1, pair=("P1", "P2"), people=["P1"], onset_s=21.0, flagged_s=24.0, nadir_s=23.0, offset_s=None,
                 repaired=False, depth=0.8, modalities=["hr"], confidence=0.5)
    return [
        E.StateChanged(t=24.0, state=PairState.POSSIBLE_RUPTURE, previous=PairState.DRIFTING, pair=("P1", "P2")),
        E.PairRupture(t=24.0, onset_s=21.0, who=("P1",), pair=("P1", "P2")),
        E.PairRepaired(t=60.0, offset_s=50.0, below_s=52.0),
        E.PairLapsed(t=270.0, offset_s=270.0),
        E.PairInterrupted(t=100.0, offset_s=100.0, pair=("P1", "P2")),
        E.EpisodeOpened(t=24.0, pair=("P1", "P2"), episode=ep),
        E.EpisodeReopened(t=70.0, pair=("P1", "P2"), episode=ep),
        E.EpisodeRepaired(t=60.0, pair=("P1", "P2"), episode=ep),
        E.EpisodeClosed(t=270.0, pair=("P1", "P2"), episode=ep),
        E.SignalLost(t=10.0, participant="P3", modality="eda", onset_s=10.0, offset_s=None, reason="flat"),
        E.SignalBack(t=20.0, participant="P3", modality="eda", onset_s=10.0, offset_s=20.0, reason="flat"),
        E.SharedEvent(t=300.0, what="everybody's arousal moved at once"),
    ]


@pytest.mark.parametrize("ev", _one_of_each(), ids=lambda e: type(e).__name__)
def test_events_are_immutable(ev):
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.t = 0.0  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        ev.note = "x"  # type: ignore[attr-defined]   # slotted: no new attributes either
    assert not hasattr(ev, "__dict__")


# -- wire format: today's dicts -----------------------------------------------------------------------------------

def test_every_kind_has_its_wire_name_and_is_exported():
    assert set(E.EVENT_TYPES) == {"state", "pair_rupture", "pair_repaired", "pair_lapsed", "pair_interrupted",
                                  "episode_open", "episode_update", "episode_repaired", "episode_closed",
                                  "signal_loss", "signal_back", "shared_event"}
    assert {type(e) for e in _one_of_each()} == set(E.EVENT_TYPES.values())
    for name in E.__all__:
        assert getattr(dsp, name) is getattr(E, name) and name in dsp.__all__


def test_to_dict_is_the_dict_events_wire_format():
    """What each kind wrote before the events were typed, as the detector and the pipeline built it then."""
    evs = _one_of_each()
    epd = {"id": 1, "pair": ["P1", "P2"], "people": ["P1"], "onset_s": 21.0, "flagged_s": 24.0, "nadir_s": 23.0,
           "offset_s": None, "repaired": False, "depth": 0.8, "modalities": ["hr"], "confidence": 0.5, "context": {},
           "open": True, "outcome": "open", "time_to_repair_s": None}
    want = [
        {"type": "state", "state": "possible_rupture", "previous": "drifting", "t": 24.0, "pair": ["P1", "P2"]},
        {"type": "pair_rupture", "t": 24.0, "onset_s": 21.0, "who": ["P1"], "pair": ["P1", "P2"]},
        {"type": "pair_repaired", "t": 60.0, "offset_s": 50.0, "below_s": 52.0},
        {"type": "pair_lapsed", "t": 270.0, "offset_s": 270.0},
        {"type": "pair_interrupted", "t": 100.0, "offset_s": 100.0, "pair": ["P1", "P2"]},
        {"type": "episode_open", "pair": ["P1", "P2"], "t": 24.0, "episode": epd},
        {"type": "episode_update", "pair": ["P1", "P2"], "t": 70.0, "episode": epd},
        {"type": "episode_repaired", "pair": ["P1", "P2"], "t": 60.0, "episode": epd},
        {"type": "episode_closed", "pair": ["P1", "P2"], "t": 270.0, "episode": epd},
        {"type": "signal_loss", "participant": "P3", "modality": "eda", "onset_s": 10.0, "offset_s": None,
         "reason": "flat"},
        {"type": "signal_back", "participant": "P3", "modality": "eda", "onset_s": 10.0, "offset_s": 20.0,
         "reason": "flat"},
        {"type": "shared_event", "t": 300.0, "what": "everybody's arousal moved at once"},
    ]
    for ev, w in zip(evs, want, strict=True):
        d = ev.to_dict()
        assert d == w and type(ev).type == w["type"]
        # JSON types only, and through JSON unchanged
        assert json.loads(json.dumps(d)) == w
        assert all(type(v) is not PairState for v in d.values())
    # a pair rupture raised by the pair's own evidence had no "who"; a bare machine's events no "pair"
    assert E.PairRupture(t=1.0, onset_s=0.5).to_dict() == {"type": "pair_rupture", "t": 1.0, "onset_s": 0.5}


def test_recorded_payloads_keep_the_time_they_were_stamped_with():
    """The recorder's (time, text): ``t``, a lost signal at its onset, a returned one at its offset."""
    stamps = [event_payload(ev)[0] for ev in _one_of_each()]
    assert stamps == [24.0, 24.0, 60.0, 270.0, 100.0, 24.0, 70.0, 60.0, 270.0, 10.0, 20.0, 300.0]
    t, text = event_payload(_one_of_each()[0])
    assert text == ('{"pair": ["P1", "P2"], "previous": "drifting", "state": "possible_rupture", "t": 24.0, '
                    '"type": "state"}')


def test_consumers_can_match_on_the_classes():
    seen = []
    for ev in _one_of_each():
        match ev:
            case E.StateChanged(state=PairState.POSSIBLE_RUPTURE, pair=pair):
                seen.append(("flagged", pair))
            case E.EpisodeEvent(episode=ep):
                seen.append((ev.type, ep.id))
            case E.SignalLost(participant=who) | E.SignalBack(participant=who):
                seen.append((ev.type, who))
    assert seen == [("flagged", ("P1", "P2")), ("episode_open", 1), ("episode_update", 1), ("episode_repaired", 1),
                    ("episode_closed", 1), ("signal_loss", "P3"), ("signal_back", "P3")]
