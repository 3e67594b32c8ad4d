"""Batch synchrony metrics against independent references and known truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal

from attune_monitor.dsp import synchrony as sy

FS = 4.0


def _noise_walks(rng, P, n, trend=0.0):
    x = np.cumsum(rng.standard_normal((P, n)), 1) * 0.1 + 10.0
    return x + trend * np.arange(n) / n


def test_pair_index_and_validation():
    i, j = sy.pair_index(4)
    assert list(zip(i, j)) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="Invalid value for 'n_people'"):
        sy.pair_index(1)
    x = np.zeros((2, 100))
    with pytest.raises(ValueError, match="Invalid value for 'window_s'.*longer"):
        sy.rolling_pearson(x, FS, 0.1)
    with pytest.raises(ValueError, match="Invalid value for 'fs'"):
        sy.rolling_pearson(x, -1.0)
    with pytest.raises(ValueError, match="Invalid value for 'x'.*n_people >= 2"):
        sy.rolling_pearson(np.zeros(100), FS)
    with pytest.raises(ValueError, match="Invalid value for 'min_valid'"):
        sy.rolling_pearson(x, FS, min_valid=1.5)
    with pytest.raises(ValueError, match="Invalid value for 'max_lag_s'"):
        sy.windowed_xcorr(x, FS, 5.0, 1.0, 5.0)


def test_rolling_pearson_matches_pandas(rng):
    x = _noise_walks(rng, 3, 1500)
    m = sy.rolling_pearson(x, FS, 30.0, 1.0)
    win, step = 120, 4
    assert m.values.shape == (3, sy.n_windows(1500, win, step))
    assert np.array_equal(m.end_sample, np.arange(m.values.shape[1]) * step + win)
    np.testing.assert_allclose(m.end_s, m.end_sample / FS)
    for p, (a, b) in enumerate(zip(*sy.pair_index(3))):
        ref = pd.Series(x[a]).rolling(win).corr(pd.Series(x[b])).to_numpy()[win - 1 :: step]
        np.testing.assert_allclose(m.values[p], ref[: m.values.shape[1]], atol=1e-10)
    # first differences against pandas on the differenced series (window j: diffs inside [s, s+win))
    d = sy.rolling_pearson(x, FS, 30.0, 1.0, diff=True)
    dx = np.diff(x, axis=1)
    ref = pd.Series(dx[0]).rolling(win - 1).corr(pd.Series(dx[2])).to_numpy()[win - 2 :: step]
    np.testing.assert_allclose(d.values[1], ref[: d.values.shape[1]], atol=1e-10)


def test_detrended_is_partial_correlation_on_time(rng):
    x = _noise_walks(rng, 2, 800, trend=3.0)
    m = sy.synchrony(x, FS, 20.0, 2.0)
    t = np.arange(80)
    for j in range(0, m.values.shape[1], 7):
        seg = x[:, j * 8 : j * 8 + 80]
        res = [s - np.polyval(np.polyfit(t, s, 1), t) for s in seg]
        assert m.values[0, j] == pytest.approx(np.corrcoef(res)[0, 1], abs=1e-9)


def test_missing_and_flat_windows(rng):
    x = _noise_walks(rng, 2, 600)
    x[1, 100:130] = np.nan  # 30 samples: windows containing them have 75 % valid -> missing
    x[0, 300:310] = np.nan  # 10 samples -> 92 % valid -> computed on the pair-valid samples
    x[1, 450:600] = 7.0  # flat
    m = sy.rolling_pearson(x, FS, 30.0, 1.0)
    st = m.status[0]
    assert st[25] == sy.MISSING and np.isnan(m.values[0, 25])  # [100, 220): 30 of 120 missing
    assert st[0] == sy.OK  # [0, 120): 20 of 120 missing (83 % valid)
    j = 300 // 4 - 5  # window [280, 400) holds the 10-sample gap
    seg = x[:, j * 4 : j * 4 + 120]
    ok = np.isfinite(seg).all(0)
    assert st[j] == sy.OK
    assert m.values[0, j] == pytest.approx(np.corrcoef(seg[:, ok])[0, 1], abs=1e-10)
    jf = 450 // 4 + 1
    assert (st[jf:] == sy.FLAT).all() and np.isnan(m.values[0, jf:]).all()
    assert set(np.unique(st)) == {sy.OK, sy.MISSING, sy.FLAT}


def test_known_truths(rng):
    x = rng.standard_normal(1200)
    X = np.stack([x, x, -x, rng.standard_normal(1200)])
    for det in (False, True):
        m = sy.rolling_pearson(X, FS, 30.0, 1.0, detrend=det)
        np.testing.assert_allclose(m.values[0], 1.0, atol=1e-12)  # identical
        np.testing.assert_allclose(m.values[1], -1.0, atol=1e-12)  # x vs -x
        assert np.abs(m.values[2]).mean() < 0.1  # independent noise


def test_neurokit2_signal_synchrony(rng):
    nk = pytest.importorskip("neurokit2")
    x = _noise_walks(rng, 2, 800)
    w = 120
    ours = sy.rolling_pearson(x, FS, w / FS, 1 / FS)  # step 1 sample
    ref = nk.signal_synchrony(x[0], x[1], method="correlation", window_size=w)
    # NeuroKit2 shifts its rolling r back by w//2 (value of the window ending at i + w//2) and fills NaN
    # with the mean: our window j (ending at j + w - 1) is its index j + w - 1 - w//2.
    k = np.arange(ours.values.shape[1]) + w - 1 - w // 2
    valid = k < len(ref) - w // 2
    np.testing.assert_allclose(ours.values[0][valid], ref[k[valid]], atol=1e-10)


def _xcorr_loop(x, a, b, win, step, L, j):
    n_seg = win - L
    s = j * step
    out = {}
    for lag in range(-L, L + 1):
        lead, fol = (a, b) if lag >= 0 else (b, a)
        u = x[lead, s : s + n_seg]
        v = x[fol, s + abs(lag) : s + abs(lag) + n_seg]
        out[lag] = np.corrcoef(u, v)[0, 1]
    return out


def test_windowed_xcorr_against_loop_and_scipy(rng):
    x = _noise_walks(rng, 3, 700)
    res, R = sy.windowed_xcorr(x, FS, 20.0, 2.0, 3.0, return_lags=True)
    L = 12
    for p, (a, b) in enumerate(zip(*sy.pair_index(3))):
        for j in (0, 9, res.r0.shape[1] - 1):
            ref = _xcorr_loop(x, a, b, 80, 8, L, j)
            np.testing.assert_allclose(R[p, j], [ref[lag] for lag in range(-L, L + 1)], atol=1e-10)
            best = max(ref, key=lambda k: (ref[k], -abs(k)))
            assert res.lag_s[p, j] == best / FS
            assert res.rmax[p, j] == pytest.approx(ref[best], abs=1e-10)
            assert res.r0[p, j] == pytest.approx(ref[0], abs=1e-10)
    # unnormalised lag-0/+lag products against scipy.signal.correlate for one window
    s, n_seg = 8 * 5, 80 - L
    u = x[0, s : s + n_seg] - x[0, s : s + n_seg].mean()
    seg = x[1, s : s + 80]
    c = scipy.signal.correlate(seg, u, mode="valid")  # c[l] = sum u[k] * seg[k + l], l = 0..L
    v = np.lib.stride_tricks.sliding_window_view(seg, n_seg)
    r_sc = c / np.sqrt((u @ u) * ((v - v.mean(1, keepdims=True)) ** 2).sum(1))
    np.testing.assert_allclose(R[0, 5, L:], r_sc, atol=1e-10)


@pytest.mark.parametrize("detrend", [False, True])
def test_xcorr_delay_truth(rng, detrend):
    n = 1200
    src = np.convolve(rng.standard_normal(n + 50), np.ones(4) / 4, mode="same")
    d = 8  # 2 s at 4 Hz
    x = np.stack([src[50:], src[50 - d : n + 50 - d]])  # person 1 = person 0 delayed by 2 s
    res = sy.windowed_xcorr(x, FS, 30.0, 1.0, 5.0, detrend=detrend)
    assert np.all(res.lag_s[0] == 2.0)
    assert np.all(res.leader[0] == 0)  # person 0 leads
    np.testing.assert_allclose(res.rmax[0], 1.0, atol=1e-12)
    res2 = sy.windowed_xcorr(x[::-1], FS, 30.0, 1.0, 5.0, detrend=detrend)
    assert np.all(res2.lag_s[0] == -2.0) and np.all(res2.leader[0] == 1)


def test_concordance_and_ssi(rng):
    x = _noise_walks(rng, 2, 400)
    m = sy.sc_concordance(x, FS, 5.0, 15.0, 1.0)
    assert m.win == 60 + 20 - 1
    t = np.arange(20)
    for j in (0, 33, m.values.shape[1] - 1):
        seg = x[:, j * 4 : j * 4 + m.win]
        slopes = np.array([[np.polyfit(t, s[k : k + 20], 1)[0] for k in range(60)] for s in seg])
        assert m.values[0, j] == pytest.approx(np.corrcoef(slopes)[0, 1], abs=1e-9)
    # SSI by hand: ln(sum r+ / |sum r-|)
    r = np.array([[0.5, -0.25, 0.3, np.nan, -0.1, 0.2]])
    assert sy.single_session_index(r)[0] == pytest.approx(np.log(1.0 / 0.35))
    assert sy.single_session_index(np.array([0.2, 0.1])) == np.inf


def test_directional_agreement_loop(rng):
    x = np.round(_noise_walks(rng, 2, 300), 1)  # rounding makes zero changes happen
    m = sy.directional_agreement(x, FS, 10.0, 2.0)
    for j in (0, 5, m.values.shape[1] - 1):
        seg = x[:, j * 8 : j * 8 + 40]
        sg = np.sign(np.diff(seg, axis=1))
        assert m.values[0, j] == pytest.approx(np.mean(sg[0] == sg[1]))


@pytest.mark.parametrize("P", [2, 5, 64])
def test_direction_windows_count_every_pair_exactly(rng, P):
    """direction_windows of fully valid windows (products of the signs) is, bit for bit, the share of each pair's
    changes with the same sign counted one by one: windows where every sample changes, with some zero changes, and
    with only zero changes for one person."""
    ia, ib = sy.pair_index(P)
    for zeros in (0.0, 0.2, 0.9):
        W = np.cumsum(rng.standard_normal((3, P, 61)), -1)
        if zeros:
            W = np.round(W, 1)
            W[:, 0] = W[:, 0, :1]  # no change at all
            W[rng.random(W.shape) < zeros] = 0.0
        got, st = sy.direction_windows(W, ia, ib)
        sg = np.sign(np.diff(W, axis=-1))
        want = np.array([[np.count_nonzero(sg[w, a] == sg[w, b]) / 60 for a, b in zip(ia, ib)] for w in range(3)])
        np.testing.assert_array_equal(got, want)
        assert (st == sy.OK).all()


def test_group_and_connectedness():
    # 3 people: pairs (0,1), (0,2), (1,2)
    r = np.array([[0.8, 0.5], [0.8, np.nan], [0.1, 0.5]])
    g = sy.group_synchrony(r)
    assert g[0] == pytest.approx(np.tanh(np.mean(np.arctanh([0.8, 0.8, 0.1]))))
    assert g[1] == pytest.approx(0.5)
    c = sy.connectedness(r, 3)
    assert c.shape == (3, 2)
    assert c[0, 0] == pytest.approx(0.8)
    assert c[2, 0] == pytest.approx(np.tanh(np.mean(np.arctanh([0.8, 0.1]))))
    assert c[1, 1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="expected 3 pairs"):
        sy.connectedness(r[:2], 3)


def test_surrogate_independent_noise_within_band(rng):
    x = _noise_walks(rng, 2, 4 * 600)
    val = sy.synchrony(x, FS, 30.0, 1.0).values[0]
    mean, sd = sy.shifted_surrogate(x, FS, 30.0, 1.0)
    assert np.isnan(mean.values[0, :20]).all()  # no partner 20 s back yet... then available
    ok = np.isfinite(mean.values[0]) & np.isfinite(val)
    assert ok.mean() > 0.9
    z = (val[ok] - mean.values[0, ok]) / sd.values[0, ok]
    assert np.mean(np.abs(z) < 2.5) > 0.9
    # a truly coupled pair is far above its chance level
    y = x.copy()
    y[1] = x[0] + 0.3 * rng.standard_normal(x.shape[1]) * np.std(np.diff(x[0]))
    val = sy.synchrony(y, FS, 30.0, 1.0).values[0]
    m2, s2 = sy.shifted_surrogate(y, FS, 30.0, 1.0)
    ok = np.isfinite(m2.values[0])
    assert np.mean(val[ok] > m2.values[0, ok] + 2 * s2.values[0, ok]) > 0.9


@pytest.mark.parametrize("detrend", [False, True])
def test_fast_paths_equal_direct_windows(rng, detrend):
    """Batch fast paths (block sums over chunks of windows) == the direct per-window functions, for many
    people (several chunks), a step that does not divide the window, gaps, a flat stretch and drift."""
    P, n = 12, 2200
    x = _noise_walks(rng, P, n, trend=50.0) + 100.0 * np.arange(P)[:, None]
    x[3, 700:705] = np.nan  # short gap: above 80 %
    x[5, 1200:1500] = np.nan  # long gap: missing windows
    x[7, 1800:1950] = x[7, 1800]  # flat stretch
    win, step, L = 118, 6, 20  # 29.5 s, 1.5 s, 5 s at 4 Hz: 118 = 19 * 6 + 4
    ia, ib = sy.pair_index(P)
    nw = sy.n_windows(n, win, step)
    W = sy.window_view(x, win, step, nw)
    for diff in (False, True):
        m = sy.rolling_pearson(x, FS, 29.5, 1.5, detrend=detrend, diff=diff)
        r, st = sy.pearson_windows(W, ia, ib, detrend=detrend, diff=diff)
        assert set(np.unique(st)) == {sy.OK, sy.MISSING, sy.FLAT}
        np.testing.assert_array_equal(m.status, st.T)
        np.testing.assert_allclose(m.values, r.T, atol=1e-9)
    res, R = sy.windowed_xcorr(x, FS, 29.5, 1.5, 5.0, detrend=detrend, return_lags=True)
    Rd, st = sy.xcorr_windows(W, ia, ib, L, detrend=detrend)
    np.testing.assert_array_equal(res.status, st.T)
    np.testing.assert_allclose(R, Rd.transpose(1, 0, 2), atol=1e-9)
    r0, rmax, lag_s, leader = sy.summarize_xcorr(Rd, ia, ib, L, FS)
    np.testing.assert_allclose(res.r0, r0.T, atol=1e-9)
    np.testing.assert_allclose(res.rmax, rmax.T, atol=1e-9)
    np.testing.assert_array_equal(res.lag_s, lag_s.T)
    np.testing.assert_array_equal(res.leader, leader.T)


@pytest.mark.parametrize("detrend", [False, True])
def test_fast_pearson_chunks_equal_direct_windows(rng, detrend):
    """Lag-0 fast path over several chunks (the last one partial), a step that does not divide the window
    and a gap == the direct per-window r; windows it flags for the masked path are exactly those with a gap."""
    P, n = 9, 1500
    x = _noise_walks(rng, P, n, trend=50.0) + 100.0 * np.arange(P)[:, None]
    x[4, 900:903] = np.nan
    win, step = 118, 6
    ia, ib = sy.pair_index(P)
    nw = sy.n_windows(n, win, step)
    r = np.empty((len(ia), nw))
    redo = sy._fast_pearson(x, step, nw, win, detrend, ia, ib, r, J=37)  # 37 does not divide nw = 231
    rd, st = sy.pearson_windows(sy.window_view(x, win, step, nw), ia, ib, detrend=detrend)
    gap = np.isnan(sy.window_view(x, win, step, nw)).any(axis=(1, 2))
    np.testing.assert_array_equal(redo, gap)
    np.testing.assert_allclose(r[:, ~redo], rd[~redo].T, atol=1e-9)
    assert (st[~redo] == sy.OK).all()


@pytest.mark.skipif(not sy._kernels.HAVE_NUMBA, reason="numba not installed: the numpy path is the only one")
@pytest.mark.parametrize("step", [4, 6, 130])
def test_compiled_lag0_kernel_equals_numpy_path(rng, monkeypatch, step):
    """The numba lag-0 kernel == the numpy fast path (its reference) within 1e-9, same windows flagged for
    the masked path (gaps, a flat stretch); and rolling_pearson (levels, diff) equals itself with numba off."""
    P, n = 7, 1400
    x = _noise_walks(rng, P, n, trend=30.0) + 1000.0 * np.arange(P)[:, None]
    x[2, 700:703] = np.nan
    x[5, 300:460] = x[5, 300]  # stuck sensor: flat for longer than a window
    win = 118
    ia, ib = sy.pair_index(P)
    nw = sy.n_windows(n, win, step)
    r_np, r_nb = np.empty((len(ia), nw)), np.empty((len(ia), nw))
    redo_np = sy._fast_pearson(x, step, nw, win, False, ia, ib, r_np, J=37)
    redo_nb = np.zeros(nw, dtype=bool)
    sy._kernels.get("pearson_lag0")(x, step, nw, win, 37, ia, ib, r_nb, redo_nb, sy.FAST_REL, sy.FLAT_ABS)
    np.testing.assert_array_equal(redo_nb, redo_np)
    assert redo_np.any() and not redo_np.all()
    np.testing.assert_allclose(r_nb[:, ~redo_nb], r_np[:, ~redo_np], rtol=0, atol=1e-9)
    for diff in (False, True):
        m_nb = sy.rolling_pearson(x, FS, win / FS, step / FS, diff=diff)
        monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", False)
        m_np = sy.rolling_pearson(x, FS, win / FS, step / FS, diff=diff)
        monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", True)
        np.testing.assert_array_equal(m_nb.status, m_np.status)
        np.testing.assert_allclose(m_nb.values, m_np.values, rtol=0, atol=1e-9, equal_nan=True)
        nw_d = m_np.values.shape[1]
        rd, st = sy.pearson_windows(sy.window_view(x, win, step, nw_d), ia, ib, diff=diff)  # direct reference
        np.testing.assert_array_equal(m_nb.status, st.T)
        np.testing.assert_allclose(m_nb.values, rd.T, rtol=0, atol=1e-9, equal_nan=True)


@pytest.mark.skipif(not sy._kernels.HAVE_NUMBA, reason="numba not installed: the numpy path is the only one")
def test_compiled_lag0_kernel_bench_size_equals_numpy_path(monkeypatch):
    """At the bench size (32 people, 1 h at 4 Hz, 30 s windows, 1 s step) the numba kernel == numpy path."""
    rng = np.random.default_rng(7)
    x = 70 + np.cumsum(rng.standard_normal((32, 14400)), 1) * 0.3
    m_nb = sy.rolling_pearson(x, FS, 30.0, 1.0)
    monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", False)
    m_np = sy.rolling_pearson(x, FS, 30.0, 1.0)
    np.testing.assert_array_equal(m_nb.status, m_np.status)
    np.testing.assert_allclose(m_nb.values, m_np.values, rtol=0, atol=1e-9)


def _xcorr_both_paths(monkeypatch, x, window_s, step_s, lag_s, detrend):
    """windowed_xcorr (with the full lag array) with the compiled kernel and with numba off (numpy path)."""
    nb = sy.windowed_xcorr(x, FS, window_s, step_s, lag_s, detrend=detrend, return_lags=True)
    monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", False)
    try:
        npy = sy.windowed_xcorr(x, FS, window_s, step_s, lag_s, detrend=detrend, return_lags=True)
    finally:
        monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", True)
    return nb, npy


@pytest.mark.skipif(not sy._kernels.HAVE_NUMBA, reason="numba not installed: the numpy path is the only one")
@pytest.mark.parametrize("detrend", [False, True])
@pytest.mark.parametrize(
    ("n", "window_s", "step_s", "lag_s"),
    [
        (2200, 29.5, 1.5, 5.0),  # step does not divide the window; several chunks, the last one partial
        (2200, 30.0, 1.0, 5.0),  # the bench's geometry
        (2200, 20.0, 32.5, 3.0),  # step longer than the window
        (2200, 30.0, 1.0, 0.0),  # lag 0 only
        (2200, 10.0, 0.25, 8.0),  # 33 lags, 8 samples per segment, one-sample step
        (135, 30.0, 1.0, 2.0),  # shorter than one chunk, a single window
    ],
)
def test_compiled_xcorr_kernel_equals_numpy_path(rng, monkeypatch, detrend, n, window_s, step_s, lag_s):
    """The numba windowed cross-correlation == the numpy path (its reference) within 1e-9 at every lag, with the
    same statuses, peak lags and leaders, on random walks with drift, NaN gaps (short: above 80 %; long: missing
    windows) and a flat stretch; both equal the direct per-window lagged r (``xcorr_windows``)."""
    P = 9
    x = _noise_walks(rng, P, n, trend=40.0) + 100.0 * np.arange(P)[:, None]
    if n > 1000:
        x[2, 700:703] = np.nan
        x[5, 1200:1400] = np.nan
        x[7, 1700:1900] = x[7, 1700]
    (res, R), (ref, Rref) = _xcorr_both_paths(monkeypatch, x, window_s, step_s, lag_s, detrend)
    np.testing.assert_array_equal(res.status, ref.status)
    if n > 1000:
        assert set(np.unique(res.status)) == {sy.OK, sy.MISSING, sy.FLAT}
    np.testing.assert_allclose(R, Rref, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(res.r0, ref.r0, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(res.rmax, ref.rmax, rtol=0, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(res.lag_s, ref.lag_s)
    np.testing.assert_array_equal(res.leader, ref.leader)
    # the direct per-window reference, and the summary without the lag array is the same
    L = res.max_lag
    ia, ib = sy.pair_index(P)
    nw = res.r0.shape[1]
    Rd, st = sy.xcorr_windows(sy.window_view(x, res.win, res.step, nw), ia, ib, L, detrend=detrend)
    np.testing.assert_array_equal(res.status, st.T)
    np.testing.assert_allclose(R, Rd.transpose(1, 0, 2), rtol=0, atol=1e-9, equal_nan=True)
    short = sy.windowed_xcorr(x, FS, window_s, step_s, lag_s, detrend=detrend)
    for f in ("r0", "rmax", "lag_s", "leader", "status"):
        np.testing.assert_array_equal(getattr(short, f), getattr(res, f))
    if L == 0:
        np.testing.assert_array_equal(res.rmax, res.r0)
        assert np.all(res.lag_s[np.isfinite(res.rmax)] == 0.0) and np.all(res.leader == -1)


@pytest.mark.skipif(not sy._kernels.HAVE_NUMBA, reason="numba not installed: the numpy path is the only one")
@pytest.mark.parametrize("detrend", [False, True])
def test_compiled_xcorr_kernel_flags_gaps_and_flat_segments(rng, detrend):
    """The kernel flags for the masked path every window with a missing sample or a segment flat at some lag
    (chunks of 37 windows, which do not divide the 231 windows), and every r it keeps == the direct per-window
    r at every lag within 1e-9. (Near a flat stretch the precision check may flag a window in one fast path
    and not in the other: their anchors differ; either way the output is the same within 1e-9, tested above.)"""
    P, n = 7, 1500
    x = _noise_walks(rng, P, n, trend=30.0) + 1000.0 * np.arange(P)[:, None]
    x[2, 700:703] = np.nan
    x[5, 300:460] = x[5, 300]
    win, step, L = 118, 6, 20
    n_seg = win - L
    ia, ib = sy.pair_index(P)
    nw = sy.n_windows(n, win, step)
    K = len(ia)
    r0, rmax, lag = np.empty((K, nw)), np.empty((K, nw)), np.empty((K, nw), np.int64)
    rall = np.empty((K, nw, 2 * L + 1))
    redo = np.zeros(nw, dtype=bool)
    kernel = sy._kernels.get("xcorr_lags")
    kernel(x, step, nw, n_seg, L, 37, detrend, ia, ib, r0, rmax, lag, rall, redo, sy.FAST_REL, sy.FLAT_ABS)
    W = sy.window_view(x, win, step, nw)
    gap = np.isnan(W).any(axis=(1, 2))
    start = np.arange(nw) * step
    flat = np.array([any(np.ptp(x[5, s + lg : s + lg + n_seg]) == 0 for lg in range(L + 1)) for s in start])
    assert gap.any() and flat.any()
    assert redo[gap | flat].all() and not redo.all()
    Rd, _ = sy.xcorr_windows(W, ia, ib, L, detrend=detrend)
    np.testing.assert_allclose(rall[:, ~redo], Rd[~redo].transpose(1, 0, 2), rtol=0, atol=1e-9)
    r0d, rmaxd, lagd, _ = sy.summarize_xcorr(Rd[~redo], ia, ib, L, FS)
    np.testing.assert_allclose(r0[:, ~redo], r0d.T, rtol=0, atol=1e-9)
    np.testing.assert_allclose(rmax[:, ~redo], rmaxd.T, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lag[:, ~redo] / FS, lagd.T)


def test_windowed_xcorr_matches_pandas_per_lag(rng):
    """r at every lag == pandas ``lead.rolling(n).corr(follower.shift(-lag))`` (independent reference), and the
    peak over lags == the maximum of pandas' lags, in the windows without missing samples of data with a gap
    (the gap's windows, above 80 % valid, go through the masked path and stay OK)."""
    P, n = 4, 1300
    x = _noise_walks(rng, P, n)
    x[1, 600:604] = np.nan
    win, step, L = 120, 4, 20
    n_seg = win - L
    res, R = sy.windowed_xcorr(x, FS, 30.0, 1.0, 5.0, return_lags=True)
    nw = res.r0.shape[1]
    cols = [pd.Series(v) for v in x]
    for p, (a, b) in enumerate(zip(*sy.pair_index(P))):
        ref = np.empty((2 * L + 1, nw))
        for lag in range(-L, L + 1):
            lead, fol = (cols[a], cols[b]) if lag >= 0 else (cols[b], cols[a])
            ref[lag + L] = lead.rolling(n_seg).corr(fol.shift(-abs(lag))).to_numpy()[n_seg - 1 :: step][:nw]
        full = ~np.isnan(sy.window_view(x[[a, b]], win, step, nw)).any(axis=(1, 2))
        assert np.isfinite(ref[:, full]).all() and (0 < full.sum() < nw) == (1 in (a, b))
        np.testing.assert_allclose(R[p][full], ref.T[full], rtol=0, atol=1e-9)
        np.testing.assert_allclose(res.rmax[p, full], ref.max(0)[full], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(res.lag_s[p, full], (np.argmax(ref[:, full], 0) - L) / FS)
        assert (res.status[p, ~full] == sy.OK).all()  # the gap leaves > 80 % valid: masked path, not missing


@pytest.mark.skipif(not sy._kernels.HAVE_NUMBA, reason="numba not installed: the numpy path is the only one")
def test_compiled_xcorr_kernel_bench_size_equals_numpy_path(monkeypatch):
    """At the bench size (32 people, 1 h at 4 Hz, 30 s windows, 1 s step, +-5 s) the kernel == numpy path."""
    rng = np.random.default_rng(7)
    x = 70 + np.cumsum(rng.standard_normal((32, 14400)), 1) * 0.3
    nb = sy.windowed_xcorr(x, FS, 30.0, 1.0, 5.0)
    monkeypatch.setattr(sy._kernels, "HAVE_NUMBA", False)
    ref = sy.windowed_xcorr(x, FS, 30.0, 1.0, 5.0)
    np.testing.assert_array_equal(nb.status, ref.status)
    np.testing.assert_allclose(nb.r0, ref.r0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(nb.rmax, ref.rmax, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(nb.lag_s, ref.lag_s)
    np.testing.assert_array_equal(nb.leader, ref.leader)
