"""Streaming engine == batch functions, bounded memory, no drift over 8 hours."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from attune_monitor.dsp import synchrony as sy
from attune_monitor.dsp.engine import EngineConfig, SynchronyEngine

FS = 4.0


def _session(rng, P, n):
    x = np.cumsum(rng.standard_normal((P, n)), 1) * 0.05 + 5.0 + np.arange(P)[:, None]
    x[1, 1000:1012] = np.nan  # short gap: windows stay above 80 %
    x[2 % P, 2000:2400] = np.nan  # long gap: missing windows
    x[0, 3000:3003] = np.nan
    x[0, 3500:3700] = x[0, 3500]  # flat stretch
    return x


def _run_chunked(eng, blocks, rng):
    n = blocks["eda"].shape[1]
    outs = {}
    i = 0
    while i < n:
        k = int(rng.integers(1, 60))
        o = eng.push({m: b[:, i : i + k] for m, b in blocks.items()})
        for m, res in o.items():
            for name, v in res.items():
                outs.setdefault((m, name), []).append(v)
        i += k
    cat = {}
    for key, vs in outs.items():
        cat[key] = (
            np.concatenate([v.values for v in vs], 1),
            np.concatenate([v.status for v in vs], 1),
            np.concatenate([v.window_index for v in vs]),
            np.concatenate([v.end_sample for v in vs]),
        )
    return cat


def _same(got, ref_values, ref_status=None, tol=1e-9):
    v, s = got[0], got[1]
    assert v.shape == ref_values.shape
    assert np.array_equal(np.isnan(v), np.isnan(ref_values))
    if np.isfinite(v).any():
        assert np.nanmax(np.abs(v - ref_values)) <= tol
    if ref_status is not None:
        assert np.array_equal(s, ref_status)


def test_chunked_equals_batch(rng):
    P, n = 3, 4400
    blocks = {"eda": _session(rng, P, n), "hr": 70 + 10 * _session(rng, P, n)}
    eng = SynchronyEngine(P, FS, EngineConfig())
    got = _run_chunked(eng, blocks, rng)
    for m, x in blocks.items():
        s = sy.synchrony(x, FS, 30.0, 1.0)
        _same(got[(m, "synchrony")], s.values, s.status)
        assert np.array_equal(got[(m, "synchrony")][2], s.window_index)
        assert np.array_equal(got[(m, "synchrony")][3], s.end_sample)
        assert set(np.unique(s.status)) == {sy.OK, sy.MISSING, sy.FLAT}
        p = sy.rolling_pearson(x, FS, 30.0, 1.0)
        _same(got[(m, "pearson")], p.values, p.status)
        d = sy.rolling_pearson(x, FS, 30.0, 1.0, diff=True)
        _same(got[(m, "pearson_diff")], d.values, d.status)
        a = sy.directional_agreement(x, FS, 30.0, 1.0)
        _same(got[(m, "direction")], a.values, a.status)
        w = sy.windowed_xcorr(x, FS, 30.0, 1.0, 5.0, detrend=True)
        _same(got[(m, "wcc_r0")], w.r0, w.status)
        _same(got[(m, "wcc_rmax")], w.rmax, w.status)
        _same(got[(m, "wcc_lag_s")], w.lag_s, w.status, tol=0)
        assert np.array_equal(got[(m, "wcc_leader")][0], w.leader)
        sm, ssd = sy.shifted_surrogate(x, FS, 30.0, 1.0)
        _same(got[(m, "surrogate_mean")], sm.values, sm.status)
        _same(got[(m, "surrogate_sd")], ssd.values)
        pm, psd = sy.shifted_surrogate(x, FS, 30.0, 1.0, detrend=False)
        _same(got[(m, "surrogate_pearson_mean")], pm.values, pm.status)
        _same(got[(m, "surrogate_pearson_sd")], psd.values)
        assert not np.allclose(pm.values, sm.values, equal_nan=True)  # a different chance level, really
    c = sy.sc_concordance(blocks["eda"], FS)
    _same(got[("eda", "concordance")], c.values, c.status)
    assert ("hr", "concordance") not in got


def test_one_sample_ticks_and_bounded_memory(rng):
    P = 2
    eng = SynchronyEngine(P, FS, EngineConfig(modalities=("hr",)))
    x = 70 + np.cumsum(rng.standard_normal((P, 3000)), 1)
    mem0 = None
    vals = []
    for k in range(x.shape[1]):
        out = eng.push(x[:, k])  # single modality: a bare (n_people,) sample is accepted
        if "synchrony" in out["hr"]:
            vals.append(out["hr"]["synchrony"].values)
        if k == 1000:
            mem0 = eng.memory_bytes()
    assert eng.memory_bytes() == mem0  # fixed by the window/shift lengths, not by session length
    ref = sy.synchrony(x, FS).values
    np.testing.assert_allclose(np.concatenate(vals, 1), ref, atol=1e-9)


def test_eight_hours_no_drift(rng):
    """Batch (anchored block sums) over 8 h at 4 Hz: the last windows equal a direct computation."""
    n = 8 * 3600 * 4
    t = np.arange(n) / FS
    # skin conductance that drifts from 2 to 20 uS over the session, with small fast changes
    x = 2 + 18 * t / t[-1] + 0.01 * np.cumsum(rng.standard_normal((2, n)), 1) / 30
    for det in (False, True):
        m = sy.rolling_pearson(x, FS, 30.0, 1.0, detrend=det)
        last = m.values.shape[1] - 1
        for j in (last - 7, last):
            seg = x[:, j * 4 : j * 4 + 120]
            if det:
                tt = np.arange(120)
                seg = np.array([s - np.polyval(np.polyfit(tt, s, 1), tt) for s in seg])
            assert m.values[0, j] == pytest.approx(np.corrcoef(seg)[0, 1], abs=1e-9)
    # and streaming the final 10 minutes (engine starts at 0 but we only feed the tail windows)
    eng = SynchronyEngine(2, FS, EngineConfig(modalities=("eda",), surrogate_shifts_s=(20.0,)))
    out = eng.push({"eda": x})["eda"]["synchrony"]
    ref = sy.synchrony(x, FS)
    assert np.nanmax(np.abs(out.values[:, -100:] - ref.values[:, -100:])) <= 1e-9


def test_engine_validation():
    with pytest.raises(ValueError, match="Invalid value for 'modality': expected one of hr, eda"):
        SynchronyEngine(2, FS).push({"ecg": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"expected shape \(2, n_new\)"):
        SynchronyEngine(2, FS).push({"hr": np.zeros((3, 3))})
    with pytest.raises(ValueError, match="expected a dict"):
        SynchronyEngine(2, FS).push(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="Invalid value for 'surrogate_shifts_s'"):
        SynchronyEngine(2, FS, EngineConfig(surrogate_shifts_s=(0.0,)))


def test_one_large_push_has_bounded_temporaries(rng):
    """A push that completes thousands of windows (e.g. a recording fed at once) is computed in blocks:
    peak memory stays far below the size of all windows' lagged segments (~480 MB here)."""
    import tracemalloc

    P, n = 8, 3600 * 4
    x = 70 + np.cumsum(rng.standard_normal((P, n)), 1)
    eng = SynchronyEngine(P, FS, EngineConfig(modalities=("hr",)))
    tracemalloc.start()
    try:
        out = eng.push({"hr": x})["hr"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 150e6
    w = sy.windowed_xcorr(x[:, :2000], FS, 30.0, 1.0, 5.0, detrend=True)
    k = w.rmax.shape[1]
    np.testing.assert_allclose(out["wcc_rmax"].values[:, :k], w.rmax, atol=1e-9)
    np.testing.assert_array_equal(out["wcc_lag_s"].values[:, :k], w.lag_s)
    assert out["synchrony"].values.shape == (P * (P - 1) // 2, sy.n_windows(n, 120, 4))


def test_chance_of_only_the_followed_metric(rng):
    """An engine asked for plain r's chance level alone gives the same values as one computing both."""
    blocks = {"hr": _session(rng, 3, 4 * 1000), "eda": _session(rng, 3, 4 * 1000)}
    both = SynchronyEngine(3, 4.0, EngineConfig(modalities=("hr", "eda"))).push(blocks)
    one = SynchronyEngine(3, 4.0, EngineConfig(modalities=("hr", "eda"), chance_of=("pearson",))).push(blocks)
    for m in ("hr", "eda"):
        assert "surrogate_mean" not in one[m] and "surrogate_sd" not in one[m]
        for name in ("surrogate_pearson_mean", "surrogate_pearson_sd", "pearson", "synchrony"):
            np.testing.assert_array_equal(one[m][name].values, both[m][name].values)
        assert np.isfinite(one[m]["surrogate_pearson_mean"].values).any()
    with pytest.raises(ValueError, match="chance_of"):
        SynchronyEngine(3, 4.0, EngineConfig(chance_of=("spearman",)))
    # and for one modality only (the pipeline follows phasic synchrony for skin conductance, with its own chance)
    hr_only = SynchronyEngine(3, 4.0, EngineConfig(modalities=("hr", "eda"), chance_of=("pearson",),
                                                   chance_modalities=("hr",))).push(blocks)
    assert "surrogate_pearson_mean" not in hr_only["eda"]
    np.testing.assert_array_equal(hr_only["eda"]["pearson"].values, both["eda"]["pearson"].values)
    for name in ("surrogate_pearson_mean", "surrogate_pearson_sd"):
        np.testing.assert_array_equal(hr_only["hr"][name].values, both["hr"][name].values)
    with pytest.raises(ValueError, match="chance_modalities"):
        SynchronyEngine(3, 4.0, EngineConfig(modalities=("hr",), chance_modalities=("eda",)))


def _best_lagged_r(u, v, L):
    """Brute force: max over lags 0..L of r(u[:n], v[l:l+n]) and r(v[:n], u[l:l+n]), n = len - L (NaN-free)."""
    n = len(u) - L
    return max(np.corrcoef(p[:n], q[lag : lag + n])[0, 1] for lag in range(L + 1) for p, q in ((u, v), (v, u)))


def test_phasic_chunked_equals_batch_and_brute_force(rng):
    """Phasic synchrony = windowed cross-correlation (+-3 s) of the changes, chunked == batch; its chance level
    = the same lag search against each partner's changes 20..120 s earlier, both ways (brute force), every 10 s."""
    P, n = 3, 4400
    x = _session(rng, P, n)  # with gaps and a flat stretch
    eng = SynchronyEngine(P, FS, EngineConfig(modalities=("eda",), phasic_modalities=("eda",), chance_of=()))
    got = _run_chunked(eng, {"eda": x}, rng)
    d = np.diff(x, axis=1, prepend=np.nan)
    w = sy.windowed_xcorr(d, FS, 30.0, 1.0, 3.0, detrend=False)
    _same(got[("eda", "phasic")], w.rmax, w.status)
    _same(got[("eda", "phasic_lag_s")], w.lag_s, w.status, tol=0)
    assert ("eda", "pearson") in got and ("eda", "surrogate_pearson_mean") not in got
    mean, sd = got[("eda", "surrogate_phasic_mean")][0], got[("eda", "surrogate_phasic_sd")][0]
    # computed for every 10th window, held for the next nine; window 20's partner 20 s earlier (window 0) lacks
    # its first change, so window 30 is the first with a chance level
    assert np.isnan(mean[:, :30]).all() and np.isfinite(mean[0, 30:40]).all()
    np.testing.assert_array_equal(mean[:, 41:50], np.repeat(mean[:, 40:41], 9, axis=1))
    win, L = 120, 12
    # one partner shift, six, six; no window of pair (0, 1) touches a gap, but person 2's gap covers window 500
    for j in (40, 130, 500):
        vals = []
        for back in (20, 40, 60, 80, 100, 120):
            if j - back < 0 or (j - back) * 4 < 1:
                continue
            now, then = slice(j * 4, j * 4 + win), slice((j - back) * 4, (j - back) * 4 + win)
            vals += [_best_lagged_r(d[0, now], d[1, then], L), _best_lagged_r(d[1, now], d[0, then], L)]
        assert mean[0, j] == pytest.approx(np.mean(vals), abs=1e-9)
        assert sd[0, j] == pytest.approx(np.std(vals, ddof=1), abs=1e-9)
    with pytest.raises(ValueError, match="phasic_modalities"):
        SynchronyEngine(2, FS, EngineConfig(modalities=("hr",), phasic_modalities=("eda",)))
    with pytest.raises(ValueError, match="multiple of phasic_chance_every_s"):
        SynchronyEngine(2, FS,
                        EngineConfig(modalities=("eda",), phasic_modalities=("eda",), surrogate_shifts_s=(22.0,)))


def test_phasic_finds_responses_a_second_apart(rng):
    """Known truth: two people answer the same moments with skin-conductance responses, B 1.5 s after A, over
    their own slow drifts. Phasic synchrony finds the lag (+1.5 s: A leads) and stays far above its chance
    level; for two people answering different moments it sits at chance."""
    n = int(300 * FS)
    t = np.arange(n) / FS

    def scr(onsets):
        k = np.clip(t[None, :] - np.asarray(onsets)[:, None], 0, None)
        return ((np.exp(-k / 6.0) - np.exp(-k / 0.4)) * (k > 0)).sum(0)

    moments = np.sort(rng.uniform(0, 295, 60))
    drift = lambda: np.cumsum(rng.standard_normal(n)) * 0.01  # noqa: E731
    a = 4 + scr(moments) + drift()
    b = 3 + 0.8 * scr(moments + 1.5) + drift()
    c = 5 + scr(np.sort(rng.uniform(0, 295, 60))) + drift()
    eng = SynchronyEngine(3, FS, EngineConfig(modalities=("eda",), phasic_modalities=("eda",), chance_of=()))
    out = eng.push({"eda": np.vstack([a, b, c])})["eda"]
    late = out["phasic"].window_index >= 150  # every partner shift available
    r, lag, ch = (out[k].values[:, late] for k in ("phasic", "phasic_lag_s", "surrogate_phasic_mean"))
    # pairs (A, B), (A, C), (B, C)
    assert np.median(lag[0]) == 1.5  # positive: the pair's first person (A) leads
    assert np.median(r[0]) > 0.8 and np.median(r[0] - ch[0]) > 0.5
    assert abs(np.median(r[1] - ch[1])) < 0.1 and abs(np.median(r[2] - ch[2])) < 0.1


def test_window_ticks_run_blas_on_one_thread_and_give_the_same_numbers(rng):
    """Where windows complete, the engine multiplies with one BLAS thread (issue 21: a second one only waited
    for a core on the 2-core machine); outside, BLAS keeps its threads. The numbers equal a run with BLAS on its
    threads throughout (the limit switched off), within 1e-12."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from attune_monitor.dsp import engine as engine_mod

    ctl = threadpoolctl.ThreadpoolController()

    def numpy_blas_threads(libs):  # numpy's own BLAS (scipy may load another one, which matmul never uses)
        return max((lib["num_threads"] for lib in libs if lib["user_api"] == "blas" and "numpy" in lib["filepath"]),
                   default=1)

    seen = []
    real = SynchronyEngine._compute

    def spy(self, modalities):
        seen.append(numpy_blas_threads(ctl.info()))
        return real(self, modalities)

    x = _session(rng, 4, 4000)[:, 2600:3400]  # the long gap's end, a short gap and a flat stretch
    blocks = {"hr": x, "eda": x[::-1].copy()}
    cfg = EngineConfig(phasic_modalities=("eda",))
    before = numpy_blas_threads(ctl.info())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SynchronyEngine, "_compute", spy)
        limited = SynchronyEngine(4, FS, cfg).push(blocks)
    assert seen and max(seen) == 1
    assert numpy_blas_threads(ctl.info()) == before  # restored after the push
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine_mod, "one_blas_thread", contextlib.nullcontext)
        free = SynchronyEngine(4, FS, cfg).push(blocks)
    for m in blocks:
        assert set(limited[m]) == set(free[m])
        for name, met in limited[m].items():
            np.testing.assert_allclose(met.values, free[m][name].values, rtol=0, atol=1e-12, equal_nan=True)
            np.testing.assert_array_equal(met.status, free[m][name].status)


def test_first_call_while_the_kernel_preloads_equals_the_kernel():
    """A fresh process starts loading the compiled lag-0 kernel at import (issue 21); a call before it is ready
    takes the numpy path, and the kernel, once loaded, needs no second compile for the real call's types (the
    preload compiled exactly those). Both agree with pandas' rolling correlation within 1e-9."""
    from attune_monitor.dsp import _kernels

    if not _kernels.HAVE_NUMBA:
        pytest.skip("numba is not installed: there is no kernel to preload")
    code = """
import json, numpy as np, pandas as pd
from attune_monitor.dsp import _kernels, synchrony as sy
x = 70 + np.cumsum(np.random.default_rng(3).standard_normal((3, 600)), 1) * 0.3
ready_before = _kernels.get("pearson_lag0", wait=False) is not None
first = sy.rolling_pearson(x, 4.0, 30.0, 1.0).values
_kernels._preloading["pearson_lag0"].join()
kernel = _kernels.get("pearson_lag0", wait=False)
second = sy.rolling_pearson(x, 4.0, 30.0, 1.0).values
ia, ib = sy.pair_index(3)
ref = np.array([pd.Series(x[a]).rolling(120).corr(pd.Series(x[b])).to_numpy()[119::4] for a, b in zip(ia, ib)])
print(json.dumps({"ready_before": ready_before, "signatures": len(kernel.signatures),
                  "first_vs_second": float(np.max(np.abs(first - second))),
                  "second_vs_pandas": float(np.max(np.abs(second - ref[:, :second.shape[1]])))}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ATTUNE_NUMBA_PRELOAD": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["signatures"] == 1
    assert res["first_vs_second"] <= 1e-9
    assert res["second_vs_pandas"] <= 1e-9


def _phasic_session(rng, P, n):
    x = np.cumsum(rng.standard_normal((P, n)), 1) * 0.05 + 5.0 + np.arange(P)[:, None]
    x[1, 700:712] = np.nan  # short gap: the phasic windows over it lose their chance level
    x[2, 1100:1300] = np.nan  # long gap: missing windows and partner windows
    x[0, 900:1000] = x[0, 900]  # flat stretch
    x[P - 1, 600:601] = np.nan
    return x


@pytest.mark.parametrize("P, chunks", [(3, (1,)), (4, (1, 2, 3, 5)), (9, (1, 7, 13)), (17, (3, 4)), (64, (1,))])
def test_phasic_chance_prepared_over_ticks_is_the_direct_computation(rng, P, chunks):
    """Issue 21: the phasic chance level of a window is prepared over the ticks before it completes (its lag
    searches against the partners, a slice per tick). Published with the same window, it is bitwise the level
    computed at once when the window completes (the path with the preparation switched off, and one batch push),
    chunked in different sizes, across gaps, a flat stretch and missing partner windows."""
    n = 1500 if P < 64 else 1000
    x = _phasic_session(rng, P, n)
    hr = 70 + 10 * _phasic_session(rng, P, n)
    cfg = EngineConfig(phasic_modalities=("eda", "hr"), chance_of=("pearson",))
    if P == 64:  # the live size, skin conductance only (the test's time)
        cfg = EngineConfig(modalities=("eda",), phasic_modalities=("eda",), chance_of=(), wcc_step_s=30.0)
    sizes = rng.choice(chunks, size=n)

    def run(ahead: bool, batch: bool = False):
        eng = SynchronyEngine(P, FS, cfg)
        if not ahead:
            eng._phasic_ahead = lambda st: None
        prepared = []
        real_finish = eng._phasic_finish

        def finish(st, p, D):
            prepared.append(p.j)
            return real_finish(st, p, D)

        eng._phasic_finish = finish
        outs: dict = {}
        i = k = 0
        while i < n:
            step = n if batch else int(sizes[k])
            o = eng.push({m: b[:, i: i + step] for m, b in (("eda", x), ("hr", hr)) if m in cfg.modalities})
            for m, res in o.items():
                for name in ("phasic", "phasic_lag_s", "surrogate_phasic_mean", "surrogate_phasic_sd"):
                    if name in res:
                        outs.setdefault((m, name), []).append(res[name].values)
            i, k = i + step, k + 1
        return {key: np.concatenate(v, 1) for key, v in outs.items()}, prepared

    got, prepared = run(ahead=True)
    direct, none = run(ahead=False)
    batch, _ = run(ahead=False, batch=True)
    assert len(prepared) >= (n // 4 - 150) // 10 - 2 and not none  # nearly every chance window was prepared
    for key in got:
        np.testing.assert_array_equal(got[key], direct[key])
        np.testing.assert_allclose(got[key], batch[key], rtol=0, atol=1e-12)
    mean = got[("eda", "surrogate_phasic_mean")]
    assert np.isfinite(mean).mean() > 0.5 and np.isnan(mean).any()  # the masks were exercised


@pytest.mark.parametrize("detrend", [False, True])
def test_fast_lagged_r_equals_the_direct_r(rng, detrend):
    """The engine's lead-lag r of fully valid windows (one matrix product per window: the lead segments' residuals
    times every lagged segment) equals the direct per-window, per-lag r of ``xcorr_windows`` within 1e-11 and
    picks the same peak lag and leader, for 2-64 people, lags 0-25 and levels far from 0."""
    from attune_monitor.dsp.engine import _xcorr_full

    for trial in range(40):
        P = int(rng.choice([2, 3, 5, 16, 64])) if trial % 8 else 64
        win = int(rng.integers(20, 130))
        L = int(rng.integers(0, min(win - 8, 25)))
        W = np.cumsum(rng.standard_normal((int(rng.integers(1, 4)), P, win)), -1) * rng.uniform(0.01, 5)
        W += rng.uniform(-100, 100, (1, P, 1))
        ia, ib = sy.pair_index(P)
        got = _xcorr_full(W, ia, ib, L, detrend, FS)
        assert got is not None
        R, status = sy.xcorr_windows(W, ia, ib, L, detrend=detrend, min_valid=0.8)
        ref = sy.summarize_xcorr(R, ia, ib, L, FS)
        assert (status == sy.OK).all()
        np.testing.assert_allclose(got[0], ref[0], rtol=0, atol=1e-11)
        np.testing.assert_allclose(got[1], ref[1], rtol=0, atol=1e-11)
        np.testing.assert_array_equal(got[2], ref[2])
        np.testing.assert_array_equal(got[3], ref[3])


@pytest.mark.parametrize("P, chunks, detrend", [(3, (1,), True), (5, (1, 2, 3, 7), False), (9, (1, 4), True),
                                                (64, (1,), True)])
def test_lead_lag_prepared_over_ticks_equals_the_direct_computation(rng, monkeypatch, P, chunks, detrend):
    """Issue 21: a lead-lag window's r at each lag is prepared as its lagged segments complete (the lead segment
    anchored on its own mean); the window's tick checks flatness and picks the peaks. The same r within 1e-12 as
    the preparation switched off and as one batch push, the same peak lags, leaders and statuses, chunked in
    different sizes across gaps and a flat stretch."""
    from attune_monitor.dsp import engine as engine_mod

    monkeypatch.setattr(engine_mod, "LAGS_AHEAD_PEOPLE", 1)  # small groups too (live groups from 32 people)
    n = 1300 if P < 64 else 1000
    blocks = {"eda": _phasic_session(rng, P, n), "hr": 70 + 10 * _phasic_session(rng, P, n)}
    cfg = EngineConfig(wcc_step_s=5.0, wcc_detrend=detrend, chance_of=())
    sizes = rng.choice(chunks, size=n)
    names = ("wcc_r0", "wcc_rmax", "wcc_lag_s", "wcc_leader")

    def run(ahead: bool, batch: bool = False):
        eng = SynchronyEngine(P, FS, cfg)
        if not ahead:
            eng._lags_ahead_many = lambda st, kind, js, n_total: {}
        used = []
        real = eng._lags_prepared

        def spy(kind, js, modalities):
            r = real(kind, js, modalities)
            if kind == "wcc":
                used.append(r is not None)
            return r

        eng._lags_prepared = spy
        outs: dict = {}
        i = k = 0
        while i < n:
            step = n if batch else int(sizes[k])
            for m, res in eng.push({m: b[:, i: i + step] for m, b in blocks.items()}).items():
                for name in names:
                    if name in res:
                        outs.setdefault((m, name), []).append((res[name].values, res[name].status))
            i, k = i + step, k + 1
        return {key: tuple(np.concatenate(p, 1) for p in zip(*v)) for key, v in outs.items()}, used

    got, used = run(ahead=True)
    direct, none = run(ahead=False)
    batch, _ = run(ahead=False, batch=True)
    assert sum(used) >= 0.6 * len(used) and not any(none)  # most windows prepared (not those over gaps)
    for key, (v, s) in got.items():
        for ref in (direct[key], batch[key]):
            np.testing.assert_array_equal(s, ref[1])
            if key[1] in ("wcc_lag_s", "wcc_leader"):
                np.testing.assert_array_equal(v, ref[0])
            else:
                np.testing.assert_allclose(v, ref[0], rtol=0, atol=1e-12)
    assert (got[("hr", "wcc_r0")][1] != sy.OK).any()  # gaps / flat windows went the direct way


def test_one_blas_thread_limits_blas_and_is_empty_when_already_one():
    """Inside ``one_blas_thread`` BLAS runs on one thread and gets its threads back after; when it already runs on
    one, the context is empty (threadpoolctl's limit, ~10 us on entering and leaving, is not entered)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from attune_monitor.dsp import engine as engine_mod

    engine_mod.one_blas_thread()  # creates the controller
    if not engine_mod._blas or not engine_mod._blas_libs:
        pytest.skip("no BLAS library that threadpoolctl can control")

    mine = {lib.filepath for lib in engine_mod._blas_libs}  # (a BLAS loaded later, e.g. scipy's, is not numpy's)

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["filepath"] in mine]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        if max(blas_threads()) < 2:
            pytest.skip("this BLAS runs on one thread only")
        outside = blas_threads()
        with engine_mod.one_blas_thread():
            assert blas_threads() == [1] * len(outside)
        assert blas_threads() == outside
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        ctx = engine_mod.one_blas_thread()
        assert isinstance(ctx, contextlib.nullcontext)


def test_pair_gather_is_fancy_indexing_with_its_memory_order(rng):
    """``_pairs_of(M, ab)`` gives ``M[..., ia, ib]`` (and the reverse pairs) with the same values and the same memory
    order of the axes (later reductions add in the same order), for stacks of matrices of 2-64 people, contiguous
    or strided; ``_pairs_flat`` the same values C-ordered."""
    from attune_monitor.dsp.engine import _pairs_flat, _pairs_of

    def order(a):  # the axes of length > 1, fastest first
        return [i for _, i in sorted((abs(s), i) for i, (s, n) in enumerate(zip(a.strides, a.shape)) if n > 1)]

    for P in (2, 3, 8, 64):
        ia, ib = sy.pair_index(P)
        for lead in ((1,), (2,), (1, 6), (3, 6)):
            for M in (rng.standard_normal(lead + (P, P)), rng.standard_normal(lead + (P, 3, P))[..., 0, :]):
                for x, y in ((ia, ib), (ib, ia)):
                    ref, got = M[..., x, y], _pairs_of(M, x * P + y)
                    np.testing.assert_array_equal(got, ref)
                    assert order(got) == order(ref)
                    flat = _pairs_flat(M, x * P + y)
                    np.testing.assert_array_equal(flat, ref)
                    assert flat.flags.c_contiguous


def test_chance_stats_value_major_are_surrogate_stats_bit_for_bit(rng):
    """The engine's mean and SD of each pair's chance r's from a value-major stack (a vector sum per value) are
    ``surrogate_stats`` of the pair-major stack bit for bit (numpy's pairwise summation order), for 1-140 values per
    pair, with NaN, pairs with fewer than 2 values, exact zeros and -0.0."""
    from attune_monitor.dsp.engine import _surrogate_stats_values_first

    for K in list(range(1, 40)) + [64, 127, 128, 129, 140]:
        S = rng.standard_normal((2, K, 300)) * 10.0 ** rng.uniform(-8, 2, (2, K, 300))
        S[rng.random(S.shape) < 0.2] = np.nan
        S[:, :, :5] = np.nan  # no values
        S[:, 1:, 5:10] = np.nan  # one value at most
        S[:, :, 10:12] = 0.0
        S[:, :, 12] = -0.0
        mean, sd = _surrogate_stats_values_first(S)
        rm, rsd, _ = sy.surrogate_stats(np.ascontiguousarray(S.swapaxes(1, 2)))
        assert np.array_equal(mean, rm, equal_nan=True) and np.array_equal(sd, rsd, equal_nan=True), K
        assert np.array_equal(np.signbit(mean), np.signbit(rm))


def test_large_group_concordance_equals_the_masked_r(rng, monkeypatch):
    """From FAST_CONCORDANCE_PEOPLE the concordance of fully valid windows is r of the standardized slopes (one
    matrix product); ticks of one sample of a 40-person session with gaps, flat stretches (one person, and a
    stretch of slopes that are constant but not zero) and a level of thousands give the masked r of
    ``concordance_windows`` (the path below the threshold) within 1e-12 with the same statuses."""
    from attune_monitor.dsp import engine as engine_mod

    P, n = 40, 1400
    x = _phasic_session(rng, P, n)
    x[3, 200:320] = 7.0 + 0.01 * np.arange(120)  # constant slope: flat slopes, not flat samples
    x[4] += 5000.0
    cfg = EngineConfig(modalities=("eda",), chance_of=(), wcc_step_s=30.0)

    def run(threshold):
        monkeypatch.setattr(engine_mod, "FAST_CONCORDANCE_PEOPLE", threshold)
        eng = SynchronyEngine(P, FS, cfg)
        outs = (eng.push({"eda": x[:, i: i + 1]}).get("eda", {}) for i in range(n))
        got = [o["concordance"] for o in outs if "concordance" in o]
        return (np.concatenate([g.values for g in got], 1), np.concatenate([g.status for g in got], 1))

    fast, ref = run(P), run(P + 1)
    np.testing.assert_array_equal(fast[1], ref[1])
    np.testing.assert_allclose(fast[0], ref[0], rtol=0, atol=1e-12)
    assert (ref[1] == sy.FLAT).any() and (ref[1] == sy.MISSING).any() and (ref[1] == sy.OK).mean() > 0.9
