"""Rupture/repair state machine on synchrony series with a known truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attune_monitor.dsp.detector import PRESETS, RuptureDetector, SignalLossTracker, arousal_trend, get_preset
from attune_monitor.dsp.events import EpisodeEvent, EpisodeOpened, EpisodeRepaired
from attune_monitor.dsp.quality import Quality

#: The balanced preset for series without the lag of a trailing window (see ``_run``): onsets and ends not dated back.
NO_LAG = dataclasses.replace(get_preset("balanced", "analytic"), onset_delay_s=0.0, repair_delay_s=0.0)

@pytest.fixture(autouse=True)
def analytic_evidence(monkeypatch):
    """The state machine on hand-made series, with the analytic evidence (its response to them is known by
    construction); the learned evidence is tested in test_evidence.py and on simulated sessions end to end."""
    import attune_monitor.dsp.detector as detector_mod

    monkeypatch.setattr(detector_mod, "PRESETS", detector_mod.ANALYTIC_PRESETS)



def _series(rng, segments, noise=0.06):
    """Concatenate (duration_s, r) segments at 1 window per second, with noise."""
    r = np.concatenate([np.full(int(d), v, dtype=float) for d, v in segments])
    return np.clip(r + noise * rng.standard_normal(r.size), -0.99, 0.99)


def _run(sync, chance=0.05, preset="balanced", people=("A", "B"), onset_delay_s=0.0, repair_delay_s=0.0):
    """Run a detector on per-second synchrony values.

    These series are the windows' values themselves, with no lag of a trailing window behind the change, so
    the onset and the end are not dated back (``onset_delay_s``, ``repair_delay_s`` 0) unless a test asks for it.
    """
    cfg = dataclasses.replace(get_preset(preset) if isinstance(preset, str) else preset, onset_delay_s=onset_delay_s,
                              repair_delay_s=repair_delay_s)
    det = RuptureDetector(people, modalities=("hr",), step_s=1.0, config=cfg)
    t = np.arange(sync.shape[-1], dtype=float) + 1.0
    events = det.update("hr", t, np.atleast_2d(sync), np.full(np.atleast_2d(sync).shape, chance))
    det.finish(t[-1])
    return det, events


def test_rupture_then_repair_is_flagged_once(rng):
    sync = _series(rng, [(120, 0.7), (45, 0.0), (120, 0.7)])
    det, events = _run(sync)
    assert len(det.episodes) == 1
    ep = det.episodes[0]
    assert 115 <= ep.onset_s <= 125          # drop starts at 120 s: the CUSUM run starts there
    # evidence grows by snr**2 * (drop - k) per second, snr = (baseline - chance) / z_sd
    cfg = get_preset("balanced")
    snr2 = ((np.arctanh(0.7) - np.arctanh(0.05)) / cfg.z_sd) ** 2
    expected = cfg.cusum_h / (snr2 * (1.0 - cfg.cusum_k))
    assert abs((ep.flagged_s - 120) - expected) <= 5
    assert ep.repaired and 165 <= ep.offset_s <= 185
    assert ep.depth > 0.8 and ep.people == ["A", "B"]
    kinds = [type(e) for e in events if isinstance(e, EpisodeEvent)]
    assert kinds == [EpisodeOpened, EpisodeRepaired]


def test_unrepaired_rupture_stays_open_at_session_end(rng):
    sync = _series(rng, [(120, 0.7), (60, 0.0)])
    det, _ = _run(sync)
    assert len(det.episodes) == 1 and not det.episodes[0].repaired
    assert det.episodes[0].offset_s is None and det.episodes[0].time_to_repair_s is None


@pytest.mark.parametrize("segments", [
    [(120, 0.7), (60, 0.95), (120, 0.7)],          # shared stressor: synchrony up, then back to usual
    [(120, 0.7)] + [(20, 0.7), (3, 0.0)] * 8,       # flicker: short dips are not ruptures
    [(300, 0.08)],                                   # never in tune: nothing to lose
])
def test_no_false_flags(rng, segments):
    det, _ = _run(_series(rng, segments))
    assert det.episodes == []


def test_signal_loss_freezes_instead_of_flagging(rng):
    sync = _series(rng, [(120, 0.7), (40, 0.7), (120, 0.7)])
    sync[120:160] = np.nan
    det, _ = _run(sync)
    assert det.episodes == []


def test_noted_signal_loss_blocks_evidence_of_every_pair_of_that_person(rng):
    # a drop around an electrode loss of B (windows still computed from what is left) must not be a rupture,
    # in any pair with B; the same drop without the loss note is flagged (so the test can fail)
    sync = np.vstack([_series(rng, [(120, 0.7), (50, 0.0), (150, 0.7)]) for _ in range(3)])
    t = np.arange(sync.shape[1], dtype=float) + 1.0

    def run(note):
        det = RuptureDetector(("A", "B", "C"), modalities=("hr",), step_s=1.0, window_s=20.0)
        if note:
            det.note_signal_loss("B", 118.0, 120.0)
        # chunked feeding; the loss's end arrives later, as the pipeline's signal_back does
        det.update("hr", t[:150], sync[:, :150], np.full((3, 150), 0.05))
        if note:
            det.note_signal_loss("B", 118.0, 120.0, offset_s=160.0)
        det.update("hr", t[150:], sync[:, 150:], np.full((3, sync.shape[1] - 150), 0.05))
        return det.finish()

    flagged = {tuple(e.pair) for e in run(False)}
    assert flagged == {("A", "B"), ("A", "C"), ("B", "C")}
    assert {tuple(e.pair) for e in run(True)} == {("A", "C")}  # only the pair without B
    with pytest.raises(ValueError, match="'participant': expected one of A, B, C, but got 'D'"):
        RuptureDetector(("A", "B", "C")).note_signal_loss("D", 1.0, 3.0)


def test_presets_trade_sensitivity(rng):
    sync = _series(rng, [(120, 0.7), (30, 0.2), (120, 0.7)])  # a shallow drop
    counts = {p: len(_run(sync, preset=p)[0].episodes) for p in PRESETS}
    assert counts["sensitive"] >= counts["balanced"] >= counts["conservative"]
    assert counts["sensitive"] == 1 and counts["conservative"] == 0
    with pytest.raises(ValueError, match="expected one of conservative, balanced, sensitive"):
        get_preset("paranoid")


def test_group_names_who_disconnects(rng):
    people = ["P1", "P2", "P3", "P4"]
    n_pairs = 6
    sync = np.stack([_series(rng, [(120, 0.7), (60, 0.7), (120, 0.7)]) for _ in range(n_pairs)])
    # P4 withdraws: pairs (0,3), (1,3), (2,3) are indices 2, 4, 5 in triu order
    for p in (2, 4, 5):
        sync[p, 120:180] = 0.0 + 0.06 * rng.standard_normal(60)
    det, _ = _run(sync, people=people)
    assert {ep.pair for ep in det.episodes} == {("P1", "P4"), ("P2", "P4"), ("P3", "P4")}
    assert all(ep.people == ["P4"] for ep in det.episodes)


def _two(hr, eda, chance=0.05):
    det = RuptureDetector(["A", "B"], modalities=("hr", "eda"), step_s=1.0, config=NO_LAG)
    t = np.arange(1, hr.size + 1, dtype=float)
    det.update("hr", t, hr[None], np.full((1, t.size), chance))
    det.update("eda", t, eda[None], np.full((1, t.size), chance))
    det.finish()
    return det


def test_modalities_are_fused(rng):
    drop = [(120, 0.7), (60, 0.0), (120, 0.7)]
    both = _two(_series(rng, drop), _series(rng, drop))
    (ep_both,) = both.episodes
    assert sorted(ep_both.modalities) == ["eda", "hr"] and ep_both.confidence >= 0.75
    # one modality drops while the other stays in tune: the fused drop stays under k, no flag
    assert _two(_series(rng, drop), _series(rng, [(300, 0.7)])).episodes == []
    # the other modality is missing (EDA electrode off): HR alone flags, at lower confidence
    eda = _series(rng, [(300, 0.7)])
    eda[100:] = np.nan
    (ep_one,) = _two(_series(rng, drop), eda).episodes
    assert ep_one.modalities == ["hr"] and ep_one.confidence < ep_both.confidence
    assert 115 <= ep_one.onset_s <= 125


def test_loss_in_one_modality_is_not_a_drop(rng):
    """An EDA hole while HR stays in tune: the fused series uses HR only and nothing is flagged."""
    eda = _series(rng, [(300, 0.7)])
    eda[120:160] = np.nan
    eda[160:180] = 0.0  # windows straddling the gap after it: guarded
    det = _two(_series(rng, [(300, 0.7)]), eda)
    assert det.episodes == []


def test_chunked_feeding_gives_identical_episodes(rng):
    sync = _series(rng, [(120, 0.7), (45, 0.0), (120, 0.7), (40, -0.1), (100, 0.7)])
    det_a, _ = _run(sync)
    det_b = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=NO_LAG)
    t = np.arange(sync.size, dtype=float) + 1.0
    cuts = np.sort(rng.choice(np.arange(1, sync.size), 30, replace=False))
    for s, e in zip(np.r_[0, cuts], np.r_[cuts, sync.size]):
        det_b.update("hr", t[s:e], sync[None, s:e], np.full((1, e - s), 0.05))
    det_b.finish(t[-1])
    assert [e.to_json() for e in det_a.episodes] == [e.to_json() for e in det_b.episodes]
    assert len(det_a.episodes) == 2


def test_signal_loss_tracker_runs_and_reasons():
    fs = 4.0
    q = np.zeros(400, dtype=np.uint8)
    q[40:80] = Quality.ELECTRODE_OFF       # 10 s
    q[200:203] = Quality.NO_DATA           # 0.75 s: too short to report
    q[300:360] = Quality.NO_DATA           # 15 s
    tr = SignalLossTracker(fs, min_duration_s=2.0)
    for s in range(0, 400, 7):             # odd chunking
        tr.update("P1", "eda", s, q[s:s + 7])
    got = [(p["onset_s"], p["offset_s"], p["reason"]) for p in tr.periods]
    assert got == [(10.0, 20.0, "electrode_off"), (75.0, 90.0, "no_data")]


def test_signal_loss_rows_equal_one_update_per_person():
    """``update_rows`` (one array test for every person, then :meth:`update` of the rows with a bad code or an open
    run) gives the events and periods of one ``update`` per person, in the same order, for any chunking."""
    fs = 4.0
    rng = np.random.default_rng(5)
    people = [f"P{k}" for k in range(9)]
    q = np.zeros((len(people), 2000), np.uint8)
    q[rng.random(q.shape) < 0.3] = Quality.CORRECTED
    for _ in range(60):  # bad runs from one sample to 30 s, of every reason
        p, a = rng.integers(len(people)), rng.integers(q.shape[1])
        q[p, a:a + rng.integers(1, 120)] = rng.choice([Quality.NO_DATA, Quality.ELECTRODE_OFF, Quality.MOTION,
                                                        Quality.IMPLAUSIBLE, Quality.WARMUP])
    q[:, -3:] = Quality.NO_DATA  # runs still open at the end
    for chunk in (1, 3, 17, 2000):
        rows, one = SignalLossTracker(fs), SignalLossTracker(fs)
        got, want = [], []
        for s in range(0, q.shape[1], chunk):
            block = q[:, s:s + chunk]
            got += rows.update_rows(people, "eda", s, block)
            for i, p in enumerate(people):
                want += one.update(p, "eda", s, block[i])
        assert got == want and rows.periods == one.periods and len(want) > 80
        assert rows.currently_lost() == one.currently_lost() != []
    assert SignalLossTracker(fs).update_rows(people, "hr", 0, q[:, :0]) == []


def test_arousal_trend():
    t = np.arange(0, 60, 0.25)
    assert arousal_trend(t, 0.05 * t, 10, 50) == "rising"
    assert arousal_trend(t, -0.05 * t, 10, 50) == "falling"
    assert arousal_trend(t, np.zeros_like(t), 10, 50) == "steady"


def test_calibration_trimmed_mean_and_capped_adaptation():
    """The first baseline ignores a warm-up transient (trimmed mean); afterwards the baseline follows a slow
    change, but a drop to chance moves it at most ``cap_down * margin`` per half-life."""
    from scipy.stats import trim_mean

    from attune_monitor.dsp.detector import DetectorConfig, ModalityTrack, _fisher

    cfg = DetectorConfig(arming=False)  # the first calibration_s of windows are the baseline (test_arming.py: with)
    tr = ModalityTrack("hr", cfg, 1.0)
    calib = np.r_[np.full(10, -0.3), np.full(int(cfg.calibration_s) - 10, 0.6)]   # 10 s warm-up dip
    for k, r in enumerate(calib):
        tr.step(k + 1.0, r, 0.0)
    expected = trim_mean([_fisher(r) for r in calib], cfg.calibration_trim)
    assert tr.baseline_z == pytest.approx(expected) and tr.baseline_z == pytest.approx(_fisher(0.6))
    # pair at chance (here z 0) for one half-life while "learning": each step moves the baseline at most
    # alpha * cap_down * margin, so it loses ~20 % of its margin instead of the uncapped 50 %
    b0, m0 = tr.baseline_z, tr.margin
    n = int(cfg.baseline_halflife_s)
    for k in range(n):
        tr.step(100.0 + k, 0.0, 0.0)
        tr.learn()
    alpha = 1.0 - 0.5 ** (1.0 / cfg.baseline_halflife_s)
    bound = m0 * (1.0 - (1.0 - alpha * cfg.baseline_cap_down) ** n)
    assert b0 - tr.baseline_z <= bound + 1e-9 and bound < 0.25 * m0
    assert b0 - tr.baseline_z > 0.8 * bound   # but it does adapt downwards
    # and upwards, towards a higher attuned level
    b1 = tr.baseline_z
    for k in range(600):
        tr.step(500.0 + k, 0.8, 0.0)
        tr.learn()
    assert tr.baseline_z > b1 + 0.1 and tr.baseline_z <= _fisher(0.8) + 1e-9


def test_group_prior_shrinks_an_unusual_pair_baseline(rng):
    """With a group prior, a pair whose calibration stretch was unusual starts from a baseline between its own
    and the other pairs' median; without it, from its own."""
    import dataclasses

    people = ("A", "B", "C")
    n = int(get_preset("balanced").calibration_s)   # exactly the calibration stretch
    sync = np.vstack([np.full(n, 0.7), np.full(n, 0.7), np.full(n, 0.3)])   # pair B-C calibrates low
    t = np.arange(n, dtype=float) + 1.0
    z3, z7 = np.arctanh(0.3), np.arctanh(0.7)
    for w in (0.0, 0.5):
        cfg = dataclasses.replace(get_preset("balanced"), group_prior_weight=w, arming=False)
        det = RuptureDetector(people, modalities=("hr",), step_s=1.0, config=cfg)
        det.update("hr", t, sync, np.zeros_like(sync))
        # pairs (A,B), (A,C), (B,C): the prior of each is the median of the other two pairs' first baselines
        assert det.machines[2].tracks["hr"].baseline_z == pytest.approx((1 - w) * z3 + w * z7)
        assert det.machines[0].tracks["hr"].baseline_z == pytest.approx((1 - w) * z7 + w * 0.5 * (z3 + z7))


def test_groups_need_more_evidence_per_pair(rng):
    """A group of four watches six pairs: each needs (1 + group_h_factor * ln 6) times the evidence, so the
    same drop of one pair flags later (by that factor, as the evidence grows linearly) than in a couple."""
    cfg = get_preset("balanced")
    drop = _series(rng, [(120, 0.7), (90, 0.0), (60, 0.7)], noise=0.0)
    couple, _ = _run(drop)
    others = np.tile(np.full(drop.size, 0.7), (5, 1))
    group, _ = _run(np.vstack([drop, others]), people=("A", "B", "C", "D"))
    assert len(couple.episodes) == 1 and len(group.episodes) == 1 and group.episodes[0].pair == ("A", "B")
    scale = 1.0 + cfg.group_h_factor * np.log(6)
    assert group.machines[0].h_scale == pytest.approx(scale) and scale > 1.3
    t0 = 120.0
    assert group.episodes[0].flagged_s - t0 == pytest.approx((couple.episodes[0].flagged_s - t0) * scale, abs=2.0)


def test_wide_chance_spread_weakens_the_evidence(rng):
    """Where time-shifted partners already spread widely (smooth 1 Hz device HR), the same drop flags later."""
    sync = _series(rng, [(120, 0.7), (60, 0.0), (120, 0.7)])
    t = np.arange(sync.size, dtype=float) + 1.0
    flagged = {}
    for sd in (0.35, 0.8):
        det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0)
        det.update("hr", t, sync[None], np.full((1, t.size), 0.05), np.full((1, t.size), sd))
        det.finish()
        flagged[sd] = [e.flagged_s for e in det.episodes]
    assert len(flagged[0.35]) == 1
    assert not flagged[0.8] or flagged[0.8][0] > flagged[0.35][0] + 5


def test_onset_is_not_dated_back_to_a_slow_creep(rng):
    """A slight sag (just above cusum_k) before a real drop: the onset is the drop, not the start of the sag."""
    import dataclasses

    # in tune, then 30 s a little below the baseline (drop 0.72 vs cusum_k 0.7: the evidence creeps up by
    # snr**2 * 0.02 ~ 0.04 per second, ~1.1 in all, under 10 % of cusum_h), then a full drop at 180 s
    drop_r = np.tanh(np.arctanh(0.7) - 0.72 * (np.arctanh(0.7) - np.arctanh(0.05)))
    sync = _series(rng, [(150, 0.7), (30, drop_r), (45, 0.0), (120, 0.7)], noise=0.0)
    onsets = {}
    for frac in (0.0, 0.1):
        cfg = dataclasses.replace(get_preset("balanced"), onset_frac=frac)
        det, _ = _run(sync, preset=cfg)
        assert len(det.episodes) == 1
        onsets[frac] = det.episodes[0].onset_s
    assert 148 <= onsets[0.0] <= 153     # the CUSUM's own change point: where the sag began
    assert 178 <= onsets[0.1] <= 185     # last time the evidence was under 10 % of the threshold: the drop


def _decoupling(seed: int):
    """30 s rolling Pearson r of two people who share a slow drive, except B from 200 s to 270 s (own drive only).

    Returns
    -------
    t_end, r : ndarray, shape (n_windows,)
        Window end times (s) and r.
    """
    from scipy.signal import butter, sosfiltfilt

    from attune_monitor.dsp.synchrony import rolling_pearson

    fs = 4.0
    n = int(420 * fs)
    t = np.arange(n) / fs
    sos = butter(2, [0.01, 0.1], btype="band", fs=fs, output="sos")
    g = np.random.default_rng(100 + seed)
    shared, own_a, own_b = (sosfiltfilt(sos, g.standard_normal(n)) for _ in range(3))
    a = shared + 0.5 * own_a
    b = np.where((t >= 200) & (t < 270), 1.5 * own_b, shared + 0.5 * own_b)
    res = rolling_pearson(np.vstack([a, b]), fs, 30.0, 1.0)
    return res.end_s, res.values[0]


def test_onset_is_dated_back_by_the_trailing_windows_delay():
    """Windowed r lags a decoupling: the default onset is closer to the true one than the CUSUM's own.

    Two people share a slow drive until 200 s; then B decouples for 70 s (:func:`_decoupling`). The detector sees
    30 s rolling Pearson windows, which reach chance only ~20-30 s after 200 s.
    """
    errs = {0.0: [], get_preset("balanced").onset_delay_s: []}
    for seed in range(8):
        t_end, r = _decoupling(seed)
        found = {}
        for delay in errs:
            cfg = dataclasses.replace(get_preset("balanced"), onset_delay_s=delay)
            det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=cfg)
            det.update("hr", t_end, r[None], np.zeros((1, r.size)))
            det.finish()
            eps = [e for e in det.episodes if 190 <= e.flagged_s <= 300]
            assert len(eps) <= 1 and len(det.episodes) == len(eps)  # no flag outside the decoupling
            found[delay] = eps[0].onset_s - 200.0 if eps else None
        # the delay moves the onset, never whether (or when) a flag is raised
        assert (found[0.0] is None) == (found[cfg.onset_delay_s] is None)
        if found[0.0] is not None:
            for delay, err in found.items():
                errs[delay].append(err)
    plain, dated = (np.array(v) for v in errs.values())
    assert plain.size >= 5, plain
    assert np.median(plain) > 8.0                               # the CUSUM's change point lags the decoupling
    assert abs(np.median(dated)) < np.median(plain) - 5.0     # dated back: much closer
    assert dated.min() >= -10.0                                 # and never far before it


def test_repair_is_dated_back_never_before_the_flag_or_the_deepest_point():
    """Windowed r lags a recoupling: the reported end of the episode is closer to the true repair.

    B decouples from 200 s to 270 s and then shares the drive again (:func:`_decoupling`).
    The delay moves only the reported end: the same flags, at the same times, with the same onsets.
    """
    delay = get_preset("balanced").repair_delay_s
    assert delay > 0
    errs = {0.0: [], delay: []}
    for seed in range(8):
        t_end, r = _decoupling(seed)
        eps = {}
        for d in errs:
            det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0,
                                  config=dataclasses.replace(get_preset("balanced"), repair_delay_s=d))
            det.update("hr", t_end, r[None], np.zeros((1, r.size)))
            eps[d] = det.finish()
        plain, dated = eps[0.0], eps[delay]
        def key(e):
            return (e.onset_s, e.flagged_s, e.repaired)

        assert [key(e) for e in plain] == [key(e) for e in dated]
        for p, q in zip(plain, dated):
            assert q.offset_s >= max(q.flagged_s, q.nadir_s) and q.offset_s >= p.offset_s - delay - 1e-9
            assert q.time_to_repair_s == pytest.approx(q.offset_s - q.onset_s)
            errs[0.0].append(p.offset_s - 270.0)
            errs[delay].append(q.offset_s - 270.0)
    plain, dated = (np.array(v) for v in errs.values())
    assert plain.size >= 5, plain
    assert np.median(plain) > 20.0                                   # "repaired" comes well after the recoupling
    assert np.median(np.abs(dated)) < np.median(plain) - 15.0        # dated back: much closer
