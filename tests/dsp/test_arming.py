"""Arming, shared events and the long-lapse state of the rupture detector, on series with a known truth.

A rupture needs an attunement to lapse from: a pair is *armed* only once its synchrony has been measurably
above chance (:class:`attune_monitor.dsp.detector.ModalityTrack`); a shared event (a marker, a task switch) or a gap
re-baselines every pair; a lapse that does not come back closes as unrepaired and leaves the pair "out of
tune since" its onset until it is armed again.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist

import numpy as np
import pytest

from attune_monitor.dsp.detector import RuptureDetector, get_preset
from attune_monitor.dsp.events import EpisodeClosed, StateChanged

#: Analytic evidence, onsets not dated back (the series below have no trailing-window lag).
CFG = dataclasses.replace(get_preset("balanced", "analytic"), onset_delay_s=0.0, repair_delay_s=0.0)


def _series(rng, segments, noise=0.05):
    """Concatenate (duration_s, r) segments at one window per second, with noise."""
    r = np.concatenate([np.full(int(d), v, dtype=float) for d, v in segments])
    return np.clip(r + noise * rng.standard_normal(r.size), -0.99, 0.99)


def _states(events):
    return [(ev.t, ev.state) for ev in events if isinstance(ev, StateChanged)]


def _run(sync, chance=0.0, chance_sd=0.25, cfg=CFG, shared=(), chunk=None):
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=cfg, window_s=30.0)
    for t in shared:
        det.note_shared_event(t, "marker")
    t = np.arange(sync.size, dtype=float) + 1.0
    ch = np.full((1, sync.size), chance)
    sd = np.full((1, sync.size), chance_sd)
    events = []
    step = chunk or sync.size
    for k in range(0, sync.size, step):
        sl = slice(k, k + step)
        events += det.update("hr", t[sl], sync[None, sl], ch[:, sl], sd[:, sl])
    det.finish(t[-1])
    return det, events


def test_a_pair_above_chance_arms_after_the_span_and_its_drop_is_flagged(rng):
    sync = _series(rng, [(200, 0.7), (60, 0.0), (200, 0.7)])
    det, events = _run(sync)
    armed_at = next(t for t, s in _states(events) if s == "attuned")
    # the arming span must fill with clean windows; excess 0.87 z >> 3 * 0.25 / sqrt(4)
    assert CFG.arm_span_s - 1 <= armed_at <= CFG.arm_span_s + 2
    assert len(det.episodes) == 1 and 200 <= det.episodes[0].onset_s <= 215
    assert det.episodes[0].repaired and det.episodes[0].outcome == "repaired"


def test_a_pair_at_chance_never_arms_and_never_flags_however_low_it_goes(rng):
    """Strangers in the same room: synchrony at its chance level, then even below it: no rupture, and every
    state says "not measurably in tune" with the evidence."""
    sync = _series(rng, [(300, 0.05), (120, -0.5), (200, 0.05)], noise=0.2)
    det, events = _run(sync, chance=0.05, chance_sd=0.3)
    assert det.episodes == []
    assert {s for _, s in _states(events)} <= {"calibrating", "not_in_tune"}
    ps = det.pair_states()[0]
    assert ps["state"] == "not_in_tune" and ps["words"] == "not measurably in tune" and not ps["armed"]
    snap = ps["modalities"]["hr"]
    # the surrogate's spread over sqrt(span / window) independent windows
    n_indep = CFG.arm_span_s / 30.0
    sd_z = np.arctanh(0.05 + 0.3) - np.arctanh(0.05)
    assert snap["excess"] is not None and snap["excess_se"] == pytest.approx(sd_z / math.sqrt(n_indep), rel=0.01)


def test_arming_needs_the_excess_to_beat_its_uncertainty(rng):
    """The same modest synchrony (r 0.3 over chance 0) arms when chance alone spreads little and does not when
    chance alone spreads as wide as smooth 1-Hz device HR does (surrogate SD 0.8)."""
    sync = _series(rng, [(300, 0.3)], noise=0.02)
    narrow, _ = _run(sync, chance_sd=0.15)
    wide, _ = _run(sync, chance_sd=0.8)
    assert narrow.pair_states()[0]["armed"]
    assert not wide.pair_states()[0]["armed"]


def test_arming_is_lost_at_a_gap_and_regained_after_a_span_of_clean_windows(rng):
    sync = _series(rng, [(200, 0.7), (40, np.nan), (200, 0.7)])
    det, events = _run(sync)
    st = _states(events)
    lost = [t for t, s in st if s == "not_in_tune" and t > 200]
    back = [t for t, s in st if s == "attuned" and t > 240]
    assert lost and back
    # after the gap: the loss guard (20 s), then a full span of clean windows
    assert back[0] >= 240 + CFG.loss_guard_s + CFG.arm_span_s - 2
    assert det.episodes == []


def test_a_marker_rebaselines_every_pair_instead_of_flagging(rng):
    """A task switch at 200 s: the pair's synchrony settles at a lower level (still well above chance).
    Without the marker that is a possible rupture; with it, the pair is measured afresh and nothing is flagged."""
    sync = _series(rng, [(200, 0.75), (300, 0.25)])
    without, _ = _run(sync, chance_sd=0.1)
    with_marker, events = _run(sync, chance_sd=0.1, shared=[200.0])
    assert len(without.episodes) >= 1
    assert with_marker.episodes == []
    back = [t for t, s in _states(events) if s == "attuned" and t > 200]
    # windows holding the marker (ending before 200 + window_s) are left out, then a span is measured
    assert back and back[0] >= 200 + 30 + CFG.arm_span_s - 2
    assert with_marker.shared_events == [(200.0, "marker")]


def test_a_marker_closes_an_open_prompt_as_interrupted(rng):
    sync = _series(rng, [(200, 0.7), (200, 0.0)])
    det, events = _run(sync, shared=[260.0])
    assert len(det.episodes) == 1
    ep = det.episodes[0]
    assert ep.outcome == "interrupted" and not ep.repaired and ep.offset_s == pytest.approx(260.0)
    assert any(isinstance(ev, EpisodeClosed) and ev.episode is ep for ev in events)


def test_markers_noted_up_front_give_the_same_result_chunked(rng):
    sync = _series(rng, [(200, 0.7), (100, 0.0), (200, 0.7), (100, 0.1)])
    whole, _ = _run(sync, shared=[350.0])
    chunked, _ = _run(sync, shared=[350.0], chunk=7)
    assert [e.to_json() for e in whole.episodes] == [e.to_json() for e in chunked.episodes]


def test_a_long_lapse_closes_unrepaired_and_the_pair_is_out_of_tune_until_it_rearms(rng):
    cfg = CFG
    sync = _series(rng, [(200, 0.7), (900, 0.0), (300, 0.7)])
    det, events = _run(sync, cfg=cfg)
    assert len(det.episodes) == 1
    ep = det.episodes[0]
    assert ep.outcome == "unrepaired" and not ep.repaired
    # closed lapse_s after its onset: no prompt stays open for the rest of the lapse
    assert ep.offset_s - ep.onset_s == pytest.approx(cfg.lapse_s, abs=1.5)
    st = _states(events)
    out = [t for t, s in st if s == "out_of_tune"]
    assert out and out[0] == pytest.approx(ep.offset_s, abs=1.0)
    # words while out of tune, then armed again once synchrony is measurably back (no new prompt)
    back = [t for t, s in st if s == "attuned" and t > out[0]]
    # the span's mean excess crosses arm_sigma standard errors once enough of its windows are back at 0.7:
    # 0.87 * k / 120 >= 3 * 0.255 / sqrt(4)  ->  k ~ 53
    assert back and 1100 + 40 <= back[0] <= 1100 + cfg.arm_span_s
    assert len(det.episodes) == 1


def test_out_of_tune_words_name_the_onset(rng):
    sync = _series(rng, [(200, 0.7), (600, 0.0)])
    det, _ = _run(sync)
    ps = det.pair_states()[0]
    ep = det.episodes[0]
    assert ps["state"] == "out_of_tune" and ps["out_of_tune_since"] == pytest.approx(ep.onset_s)
    m, s = divmod(int(round(ep.onset_s)), 60)
    assert ps["words"] == f"out of tune since {m:02d}:{s:02d}"


def test_arousal_divergence_alone_never_raises_a_flag(rng):
    """One person's arousal runs away from the other's for minutes while synchrony stays as usual: the
    analytic presets do not let arousal alone flag (it is shown per person)."""
    n = 600
    # synchrony dips a little while the arousal runs away (less than a rupture's drop: under cusum_k)
    sync = _series(rng, [(250, 0.7), (250, 0.45), (100, 0.7)])
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=CFG, window_s=30.0, arousal=True)
    t = np.arange(n, dtype=float) + 1.0
    llr = np.full((2, n), -2.0)
    llr[0, 250:500] = 8.0   # far beyond any arousal_k
    det.update("hr", t, sync[None], np.zeros((1, n)), np.full((1, n), 0.25))
    det.update_arousal(t, llr)
    det.finish(t[-1])
    assert det.episodes == []
    # the old behaviour, for contrast: with arousal as evidence the same input flags
    old = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, window_s=30.0, arousal=True,
                          config=dataclasses.replace(CFG, arousal_evidence=True))
    old.update("hr", t, sync[None], np.zeros((1, n)), np.full((1, n), 0.25))
    old.update_arousal(t, llr)
    old.finish(t[-1])
    assert len(old.episodes) >= 1


def test_without_arming_the_first_windows_are_the_baseline(rng):
    """``arming=False`` keeps the detector as it was: a pair at chance 'calibrates' and is then watched."""
    sync = _series(rng, [(300, 0.05)], noise=0.05)
    det, events = _run(sync, cfg=dataclasses.replace(CFG, arming=False))
    assert any(s == "attuned" for _, s in _states(events))
    assert det.pair_states()[0]["armed"]


def test_shared_event_time_must_be_finite():
    det = RuptureDetector(["A", "B"], modalities=("hr",), config=CFG)
    with pytest.raises(ValueError, match="finite session time"):
        det.note_shared_event(math.nan)


def test_a_prompt_lapses_even_while_a_signal_is_lost(rng):
    """The prompt must close after lapse_s also when the pair has no evidence then (signal lost, disarmed by a
    gap): no prompt stays open for the rest of a session (a real dyad showed one 'repairing' for 33 min)."""
    sync = _series(rng, [(200, 0.7), (60, 0.0), (1200, np.nan)])
    det, _ = _run(sync)
    assert len(det.episodes) == 1
    ep = det.episodes[0]
    assert ep.outcome == "unrepaired" and ep.offset_s - ep.onset_s == pytest.approx(CFG.lapse_s, abs=1.5)


def test_shared_shift_needs_everybody_moving_the_same_way():
    """SharedShift: a second is shared when every person with a value moved the same way by >= z_min of their
    own spread, in heart-rate or skin-conductance level; min_s such seconds make one event, dated at the first;
    nothing within refractory_s of it; one person alone (a divergence) is not shared."""
    from attune_monitor.dsp.divergence import FEATURES, SharedShift

    n_sec = 200
    t = np.arange(n_sec, dtype=float)
    rel = np.zeros((3, len(FEATURES), n_sec))
    hr = FEATURES.index("hr_level")
    rel[:, hr, 50:60] = [[3.5], [4.0], [3.2]]          # everybody up at 50 s (a task switch)
    rel[:, hr, 80:90] = [[3.5], [4.0], [3.2]]          # again within the refractory span: no second event
    rel[0, hr, 150:170] = 5.0                          # one person alone: not shared
    rel[:, hr, 180:182] = -4.0                         # everybody down, but only 2 s: not enough
    sh = SharedShift(3, z_min=3.0, min_s=3, refractory_s=60.0)
    assert sh.push(t, rel) == [50.0]
    # chunked == batch
    sh2 = SharedShift(3, z_min=3.0, min_s=3, refractory_s=60.0)
    got = []
    for k in range(0, n_sec, 7):
        got += sh2.push(t[k:k + 7], rel[:, :, k:k + 7])
    assert got == [50.0]


def test_pipeline_rebaselines_at_a_recorded_marker(tmp_path):
    """A recording's markers reach the detector before processing (analyze == replay): a marker in the middle of
    an armed stretch re-baselines every pair, so the pair is 'not measurably in tune' right after it."""
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf
    from attune_monitor.analysis import analyze_recording

    path = tmp_path / "calm.xdf"
    write_session_xdf(simulate_session(load_scenario("couple-calm"), seed=1), path)
    rec = load_recording(path)
    plain = analyze_recording(rec)
    armed = [t for t, _, s in plain.state_changes if s == "attuned"]
    assert armed, "a calm coupled session should become measurably in tune"
    marker_t = armed[0] + 30.0
    rec.streams.append(_marker_stream(marker_t + rec.origin))
    with_marker = analyze_recording(rec)
    after = [(t, s) for t, _, s in with_marker.state_changes if t >= marker_t - 1e-6]
    assert after and after[0][1] == "not_in_tune" and after[0][0] == pytest.approx(marker_t, abs=1.5)
    # measured afresh: armed again only after the windows holding the marker and a full arming span
    back = [t for t, s in after if s == "attuned"]
    assert not back or back[0] >= marker_t + 30.0 + CFG.arm_span_s - 2


def _marker_stream(t_abs: float):
    from attune_monitor.acquisition.files import RecordedStream, describe

    xml = ("<info><name>Task markers</name><type>Markers</type><channel_count>1</channel_count>"
           "<nominal_srate>0</nominal_srate><channel_format>string</channel_format><source_id>psychopy-1</source_id>"
           "<desc></desc></info>")
    return RecordedStream(describe(xml), np.array([t_abs]), [["block 2: puzzle"]], xml)


def test_one_person_drifting_from_the_group_is_flagged_by_their_tie_naming_them(rng):
    """Four people; P3's three pairs drop part of the way to chance at once. Their mean (the person's tie to the
    group) reaches the tie threshold before any single pair reaches its (larger, six-pair) threshold: all three
    of P3's pairs are flagged together, naming P3; no pair without P3 is flagged."""
    people = ["P1", "P2", "P3", "P4"]
    det = RuptureDetector(people, modalities=("hr",), step_s=1.0, config=CFG, window_s=30.0)
    n = 600
    t = np.arange(n, dtype=float) + 1.0
    sync = np.empty((len(det.pairs), n))
    for p, pair in enumerate(det.pairs):
        sync[p] = _series(rng, [(300, 0.7), (150, 0.15 if "P3" in pair else 0.7), (150, 0.7)])
    det.update("hr", t, sync, np.zeros_like(sync), np.full_like(sync, 0.25))
    det.finish(t[-1])
    flagged = {e.pair: e for e in det.episodes}
    p3 = [pr for pr in det.pairs if "P3" in pr]
    assert set(flagged) == set(p3)
    assert all(e.people == ["P3"] for e in flagged.values())
    assert len({e.flagged_s for e in flagged.values()}) == 1  # raised together, by the tie
    # and without the tie each pair would have needed longer
    solo = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=CFG, window_s=30.0)
    solo.machines[0].h_scale = det.machines[0].h_scale
    solo.update("hr", t, sync[det.pairs.index(p3[0])][None], np.zeros((1, n)), np.full((1, n), 0.25))
    solo.finish(t[-1])
    assert not solo.episodes or solo.episodes[0].flagged_s > next(iter(flagged.values())).flagged_s


def _modest(u_s: float, k: float = 3.6, chance_sd: float = 0.25) -> np.ndarray:
    """``u_s`` seconds at chance, then 300 s whose full arming span sits exactly ``k`` standard errors above it."""
    se = math.atanh(chance_sd) / math.sqrt(CFG.arm_span_s / 30.0)
    return np.concatenate([np.zeros(int(u_s)), np.full(300, math.tanh(k * se))])


def _need(t: float) -> float:
    """The threshold at session time ``t`` of a track tested since its first full span (120 s), from
    :class:`statistics.NormalDist` (an independent inverse normal): 3 s.e.'s one-sided tail over the spans tested."""
    u = max(0.0, t - CFG.arm_span_s)
    return max(3.0, -NormalDist().inv_cdf((1.0 - NormalDist().cdf(3.0)) / (1.0 + u / CFG.arm_span_s)))


@pytest.mark.parametrize("u_s, arms", [(100, True), (300, True), (600, True), (1200, False), (2400, False)])
def test_the_arming_threshold_rises_with_the_time_a_pair_has_gone_unarmed(u_s, arms):
    """Known threshold: 3 standard errors' one-sided tail divided by the number of 120-s spans tested since the
    first full span (Bonferroni), 3.51 s.e. after 600 s, 3.67 after 1200. A pair 3.6 s.e. above chance arms after
    100, 300 or 600 s at chance (at the moment the ramp of its span's mean crosses the threshold), not after 1200 or
    2400; with a fixed threshold it arms every time, and the threshold falls back to ``arm_sigma`` once armed."""
    sync = _modest(u_s)
    det, events = _run(sync)
    fixed, fixed_events = _run(sync, cfg=dataclasses.replace(CFG, arm_correct=False))
    assert fixed.pair_states()[0]["armed"]
    armed_at = [t for t, s in _states(events) if s == "attuned"]
    assert bool(armed_at) == arms
    track = det.machines[0].tracks["hr"]
    if arms:
        # j s into the new level the span's mean is min(j, 120) / 120 * 3.6 s.e. (windows end at t = 1, 2, ...)
        expect = next(u_s + j for j in range(1, 301) if min(j, 120) / 120 * 3.6 >= _need(u_s + j))
        assert expect - 2 <= armed_at[0] <= expect + 2
        assert math.isnan(track.testable_since) and track.arm_threshold(1e6) == CFG.arm_sigma
    else:
        assert track.testable_since == pytest.approx(CFG.arm_span_s, abs=1)
        assert track.arm_threshold(u_s + 300) == pytest.approx(_need(u_s + 300), abs=1e-12) and _need(u_s) > 3.6
        assert [t for t, s in _states(fixed_events) if s == "attuned"]


def test_the_inverse_normal_is_the_standard_librarys():
    from attune_monitor.dsp.detector import normal_isf

    tails = np.concatenate([np.geomspace(1e-300, 0.5, 4000), np.linspace(0.001, 0.999, 999)])
    ref = [-NormalDist().inv_cdf(float(p)) for p in tails]
    np.testing.assert_allclose([normal_isf(float(p)) for p in tails], ref, rtol=1e-15, atol=1e-15)


def _strangers(cfg, seed: int, bias_se: float, n_people: int = 10, duration_s: int = 3600) -> float:
    """The share of 45 pairs of strangers armed at some time in an hour.

    Each pair's windowed r is chance: overlapping 30-s windows (a moving sum of 30 one-second innovations) whose
    Fisher z has the surrogate's spread, shifted by ``bias_se`` standard errors of the span's mean (a chance level
    that runs low, as skin conductance's does on real strangers: docs/method.md).
    """
    rng = np.random.default_rng(seed)
    n_pairs = n_people * (n_people - 1) // 2
    sd_z = math.atanh(0.25)
    c = np.cumsum(rng.standard_normal((n_pairs, duration_s + 30)), axis=1)
    z = sd_z * (c[:, 30:] - c[:, :-30]) / math.sqrt(30) + bias_se * sd_z / math.sqrt(CFG.arm_span_s / 30.0)
    det = RuptureDetector([f"P{i}" for i in range(n_people)], modalities=("hr",), step_s=1.0, config=cfg,
                          window_s=30.0)
    t = np.arange(duration_s, dtype=float) + 1.0
    events = det.update("hr", t, np.tanh(z), np.zeros_like(z), np.full_like(z, 0.25))
    return len({ev.pair for ev in events if isinstance(ev, StateChanged) and ev.state == "attuned"}) / n_pairs


@pytest.mark.parametrize("bias_se", [0.0, 0.3])
def test_strangers_tested_for_an_hour_are_rarely_armed_by_chance(bias_se):
    """Known truth: these pairs are never in tune. A fixed 3-s.e. test run on every window arms about a tenth of
    them (9 %, 19 % with a chance level 0.3 s.e. low: 8 hours of 45 pairs each); the corrected threshold arms
    0.6 % and 3.3 %, most of them in the first minutes, where few spans have been tested."""
    fixed = np.mean([_strangers(dataclasses.replace(CFG, arm_correct=False), s, bias_se) for s in range(8)])
    rising = np.mean([_strangers(CFG, s, bias_se) for s in range(8)])
    assert fixed >= 0.06
    assert rising <= 0.04 and rising <= fixed / 5
