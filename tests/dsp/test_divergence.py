"""Person-level arousal divergence (dsp.divergence) and its use by the rupture detector.

The signals here are made with a few lines of numpy (not the project's simulator): a shared slow drive
plus each person's own, heart rate and skin conductance with skin-conductance responses (SCRs); then one
person's arousal is made to climb alone (aversive), flatten alone (withdrawn), or everybody's climbs at
once (a shared stressor).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import butter, sosfiltfilt

from attune_monitor.dsp.detector import RuptureDetector, get_preset
from attune_monitor.dsp.divergence import FEATURES, ArousalDivergence

FS = 4.0

@pytest.fixture(autouse=True)
def analytic_evidence(monkeypatch):
    """The state machine on hand-made series, with the analytic evidence *including arousal divergence*
    (``arousal_evidence=True``, off in the presets) and without arming, so that these series test how
    arousal adds to the evidence; that the presets never let arousal alone flag is tested in test_arming.py."""
    import attune_monitor.dsp.detector as detector_mod

    monkeypatch.setattr(detector_mod, "PRESETS", {
        k: dataclasses.replace(v, arousal_evidence=True, arming=False)
        for k, v in detector_mod.ANALYTIC_PRESETS.items()})



def _slow(rng, n):
    """Unit-variance noise below 0.1 Hz, shape (n,)."""
    x = sosfiltfilt(butter(2, 0.1, fs=FS, output="sos"), rng.standard_normal(n + 400))[200:-200]
    return x / x.std()


def _group(rng, n_people=3, dur=600.0, aversive=None, withdrawn=None, stressor=None):
    """Grid dict {'hr': (n, N), 'eda': (n, N)}; events are (person or None, onset_s, offset_s)."""
    n = int(dur * FS)
    t = np.arange(n) / FS
    shared = _slow(rng, n)
    hr, eda = np.zeros((n_people, n)), np.zeros((n_people, n))
    for p in range(n_people):
        av = np.zeros(n)
        wd = np.zeros(n)
        if aversive and aversive[0] == p:
            av = np.clip((t - aversive[1]) / 20.0, 0, 1) * (t < aversive[2])
        if withdrawn and withdrawn[0] == p:
            wd = ((t >= withdrawn[1]) & (t < withdrawn[2])).astype(float)
        st = np.zeros(n)
        if stressor:
            st = np.clip((t - stressor[0]) / 6.0, 0, 1) * (t < stressor[1])
        drive = (np.sqrt(0.7) * shared + np.sqrt(0.3) * _slow(rng, n)) * (1 - 0.75 * wd)
        hr[p] = (70 + 5 * p + 6 * drive + 1.4 * np.sin(2 * np.pi * 0.25 * t + p) + 0.4 * rng.standard_normal(n)
                 + 12 * av + 15 * st - 2 * wd)
        rate = 4.0 / 60 / FS * (1 + 3 * av) * (1 - 0.9 * wd) * (1 + st)
        onsets = np.flatnonzero(rng.random(n) < rate)
        scr = np.zeros(n)
        k = np.arange(int(30 * FS)) / FS
        shape = np.exp(-k / 6.0) - np.exp(-k / 0.4)
        for o in onsets:
            seg = min(shape.size, n - o)
            scr[o:o + seg] += 0.3 * rng.lognormal(0, 0.3) * shape[:seg]
        eda[p] = 4 + p + 0.3 * drive + scr + 1.2 * av + 1.5 * st - 0.3 * wd + 0.003 * rng.standard_normal(n)
    return {"hr": hr, "eda": eda}


def _llr(grid, n_people):
    ad = ArousalDivergence(n_people, FS, ("hr", "eda"))
    t, llr, div = ad.push(grid)
    return t, llr, div


def test_chunked_equals_batch(rng):
    grid = _group(rng, 3, 500.0, aversive=(1, 300, 360))
    t, llr, div = _llr(grid, 3)
    ad = ArousalDivergence(3, FS, ("hr", "eda"))
    parts, k, n = [], 0, grid["hr"].shape[1]
    while k < n:
        s = int(rng.integers(1, 50))
        parts.append(ad.push({m: v[:, k:k + s] for m, v in grid.items()}))
        k += s
    assert np.array_equal(np.concatenate([p[0] for p in parts]), t)
    np.testing.assert_allclose(np.concatenate([p[1] for p in parts], axis=1), llr, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(np.concatenate([p[2] for p in parts], axis=2), div, atol=1e-9, equal_nan=True)
    assert t[0] == 1.0 - 1.0 / FS and np.all(np.diff(t) == 1.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aversive_person_stands_out(seed):
    rng = np.random.default_rng(seed)
    grid = _group(rng, 3, 600.0, aversive=(1, 300, 370))
    t, llr, div = _llr(grid, 3)
    before = (t > 200) & (t < 295)
    during = (t > 325) & (t < 370)
    assert np.nanmedian(llr[1, during]) > 3.0
    assert np.nanmedian(llr[1, before]) < 0.0
    # the person whose arousal climbs, not the others, is the one that diverges; their HR and EDA levels rose
    assert np.nanmedian(llr[1, during]) > np.nanmedian(llr[0, during]) + 3
    assert np.nanmedian(div[1, FEATURES.index("hr_level"), during]) > 1.5
    assert np.nanmedian(div[1, FEATURES.index("eda_level"), during]) > 1.5


@pytest.mark.parametrize("seed", [4, 5])
def test_withdrawn_person_stands_out(seed):
    rng = np.random.default_rng(seed)
    grid = _group(rng, 3, 600.0, withdrawn=(2, 300, 370))
    t, llr, div = _llr(grid, 3)
    before = (t > 200) & (t < 295)
    during = (t > 325) & (t < 370)
    assert np.nanmedian(llr[2, during]) > np.nanmedian(llr[2, before]) + 1.5
    assert np.nanmedian(llr[2, during]) > np.nanmax(np.nanmedian(llr[:2, during], axis=1))
    assert np.nanmedian(div[2, FEATURES.index("eda_activity"), during]) < -1.0
    assert np.nanmedian(div[2, FEATURES.index("hr_variability"), during]) < -0.5


def test_shared_stressor_is_not_a_divergence(rng):
    grid = _group(rng, 2, 600.0, stressor=(300, 340))
    t, llr, _ = _llr(grid, 2)
    during = (t > 305) & (t < 345)
    # everybody's arousal climbs at once: levels rise for both, nobody moves away from the other
    assert np.nanmax(np.nanmedian(llr[:, during], axis=1)) < 0.5


def test_missing_eda_uses_heart_alone(rng):
    grid = _group(rng, 2, 400.0, aversive=(0, 250, 320))
    grid["eda"][0] = np.nan  # P1 wears no EDA sensor
    t, llr, div = _llr(grid, 2)
    late = t > 200
    assert np.isfinite(llr[0, late]).all()
    assert np.isnan(div[0, FEATURES.index("eda_level"), late]).all()
    assert np.nanmedian(llr[0, (t > 275) & (t < 320)]) > 2.0


def test_not_enough_history_gives_nan(rng):
    grid = _group(rng, 2, 150.0)
    t, llr, _ = _llr(grid, 2)
    # a baseline needs 20 s of 10 s means ending 20 s back (from ~50 s), a spread 30 s of values after that
    # (from ~90 s; refreshed every 10 s): nothing is known before 90 s, everything after 100 s
    assert np.isnan(llr[:, t < 90]).all()
    assert np.isfinite(llr[:, t > 100]).all()


def test_validation_messages():
    with pytest.raises(ValueError, match="whole number of samples per second"):
        ArousalDivergence(2, 2.5)
    with pytest.raises(ValueError, match="at least 2"):
        ArousalDivergence(1, 4.0)
    ad = ArousalDivergence(2, 4.0, ("hr", "eda"))
    with pytest.raises(ValueError, match="same number of new samples"):
        ad.push({"hr": np.zeros((2, 4)), "eda": np.zeros((2, 5))})


def _feed(det, t, sync_r, llr):
    n_pairs = len(det.pairs)
    det.update("hr", t, np.tile(sync_r, (n_pairs, 1)), np.zeros(n_pairs))
    det.update_arousal(t, llr)
    return det.finish()


def test_detector_flags_arousal_divergence_without_a_sync_drop():
    t = np.arange(1.0, 401.0)
    sync = np.full(t.size, 0.4)  # synchrony never drops (a pair clearly in tune would need more arousal evidence)
    llr = np.full((2, t.size), -2.0)
    llr[1, (t >= 250) & (t < 300)] = 6.0  # B moves away for 50 s
    # these ratios change at once (no trailing window behind them), so the onset and the end are not dated back
    cfg = dataclasses.replace(get_preset("balanced"), onset_delay_s=0.0, repair_delay_s=0.0)
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=cfg, arousal=True)
    eps = _feed(det, t, sync, llr)
    assert len(eps) == 1
    # balanced: 10 * (6 - 4.5) / 25 = 0.6 per second for, the steady synchrony (snr**2 ~ 0.5) 0.35 against:
    # the evidence reaches 10 after ~40 s
    assert 249 <= eps[0].onset_s <= 252 and 285 <= eps[0].flagged_s <= 296
    # the episode is repaired once B's arousal is back in line
    assert eps[0].repaired and 300 <= eps[0].offset_s <= 320


def test_detector_ignores_arousal_below_its_reference():
    t = np.arange(1.0, 401.0)
    llr = np.full((2, t.size), 4.0)  # above "in tune" but below arousal_k (4.5 in the balanced preset)
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, arousal=True)
    assert _feed(det, t, np.full(t.size, 0.4), llr) == []


def test_detector_names_who_moves_away_in_a_group():
    t = np.arange(1.0, 401.0)
    llr = np.full((3, t.size), -2.0)
    # C moves away for 80 s: with three pairs each needs 1 + 0.3 ln 3 = 1.33 times the evidence (~53 s at 0.25/s)
    llr[2, (t >= 250) & (t < 330)] = 6.0
    det = RuptureDetector(["A", "B", "C"], modalities=("hr",), step_s=1.0, arousal=True)
    eps = _feed(det, t, np.full(t.size, 0.4), llr)
    assert eps and all("C" in e.pair and e.people == ["C"] for e in eps)


def test_arousal_needs_opt_in():
    det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0)
    with pytest.raises(ValueError, match="arousal=True"):
        det.update_arousal(np.arange(1.0, 3.0), np.zeros((2, 2)))


def test_in_tune_arousal_does_not_veto_a_clear_synchrony_drop():
    """Synchrony falls well below chance for 45 s while both people's arousal is plainly in tune (L = -6)."""
    import dataclasses

    from attune_monitor.dsp.detector import get_preset

    t = np.arange(1.0, 401.0)
    sync = np.where((t >= 200) & (t < 245), -0.6, 0.7)
    llr = np.full((2, t.size), -6.0)
    flagged = {}
    for floor in (2.0, -np.inf):
        cfg = dataclasses.replace(get_preset("balanced"), arousal_floor=floor)
        det = RuptureDetector(["A", "B"], modalities=("hr",), step_s=1.0, config=cfg, arousal=True)
        eps = _feed(det, t, sync, llr)
        flagged[floor] = eps[0].flagged_s if eps else None
    # drop (z 0.87 -> -0.69) = 1.8 of the way to chance: snr**2 * (1.8 - 0.7) ~ 2.3 per second for, the floored
    # arousal 15 * (2 - 4) / 25 = 1.2 against: the evidence reaches 15 after ~14 s
    assert flagged[2.0] is not None and 205 < flagged[2.0] <= 225
    # without the floor an in-tune arousal (15 * (-6 - 4) / 25 = 6 per second against) cancels the drop
    assert flagged[-np.inf] is None


def test_episode_context_is_the_flavour_of_who_moved_away():
    """Sample couple (seed 3): P2 climbs alone at 270-330 s (aversive), P1 withdraws at 410-470 s.

    The episode's arousal context of the person who moved away is their flavour (aversive -> rising,
    withdrawn -> falling), the same whether the recording is analysed in 120 s or 7 s chunks.
    """
    from pathlib import Path

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.analysis import analyze_recording

    rec = load_recording(Path(__file__).resolve().parents[2] / "recordings" / "sample-couple.xdf")
    by_chunk = {}
    for chunk in (120.0, 7.0):
        eps = analyze_recording(rec, chunk_s=chunk).episodes
        by_chunk[chunk] = [(round(e.onset_s, 2), dict(e.context)) for e in eps]
    assert by_chunk[120.0] == by_chunk[7.0]
    eps = by_chunk[120.0]
    first = [c for on, c in eps if 265 <= on <= 330]   # P2 climbs at 4:30
    second = [c for on, c in eps if 405 <= on <= 470]  # P1 withdraws at 6:50
    assert first and first[0]["P2"] == "rising"
    assert second and second[0]["P1"] == "falling"


def test_less_others_median_for_everyone_at_once_is_the_loop_bit_for_bit():
    """Issue 21: each person's features less the others' median, for all people at once (one sort per feature and
    second) give the person-by-person loop's bits: 4-64 people, ties, missing values (a few to nearly all), +-inf;
    values of 0.0 / -0.0 go to the loop (their order in a sort is not their bits' order)."""
    from attune_monitor.dsp.divergence import _less_others_median, _less_others_median_loop

    rng = np.random.default_rng(21)
    for n in (4, 5, 8, 17, 64):
        for T in (1, 3, 70):
            for trial in range(8):
                z = rng.normal(size=(n, 4, T))
                if trial % 2:
                    z = np.round(z, 1)
                    z[z == 0] = 0.5  # ties, no zero
                z[rng.random(z.shape) < (0.0, 0.1, 0.5, 0.95)[trial % 4]] = np.nan
                if trial == 4:
                    z[rng.random(z.shape) < 0.05] = np.inf
                    z[rng.random(z.shape) < 0.05] = -np.inf
                with np.errstate(invalid="ignore"):  # inf - inf, in both
                    got, want = _less_others_median(z), _less_others_median_loop(z)
                assert np.array_equal(got.view(np.int64), want.view(np.int64)), (n, T, trial)
    div = ArousalDivergence(6, 4.0)
    z = rng.normal(size=(6, 4, 130))
    z[rng.random(z.shape) < 0.2] = np.nan
    assert np.array_equal(div._divergence(z).view(np.int64), _less_others_median_loop(z).view(np.int64))
    z[2, 1, 5], z[4, 1, 5] = 0.0, -0.0
    assert np.array_equal(div._divergence(z).view(np.int64), _less_others_median_loop(z).view(np.int64))
