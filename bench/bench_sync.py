"""Synchrony benchmark (`make bench`): our batch metrics and streaming engine vs what a user would write.

Data: 32 people, 1 hour at 4 Hz (random walks), 30 s windows with a 1 s step; WCC with +-5 s lags.
Baselines (same data, same run):
  * pandas: ``a.rolling(120).corr(b)`` per pair (every sample, then every 4th value kept);
  * NeuroKit2: ``nk.signal_synchrony(a, b, method="correlation", window_size=120)`` per pair,
    timed on a subset of pairs and extrapolated to all 496 (printed as such);
  * WCC: pandas per lag and per pair ``a.rolling(n_seg).corr(b.shift(-lag))``, subset + extrapolation.
Memory bandwidth: best of several large numpy copies (bytes read + bytes written per second).
Our "bytes touched" for a metric = input read once + output written once (n_pairs x n_windows float64
values and int8 status), i.e. the minimum any implementation must move; the fraction says how far from
memory-bound we are.
Streaming: 8 people (28 pairs), hr + eda, all metrics, one grid sample (0.25 s) per tick.

The last line of output is one JSON object with the headline figures.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsp import synchrony as sy  # noqa: E402
from dsp.engine import EngineConfig, SynchronyEngine  # noqa: E402

FS = 4.0
P = 32
N = 3600 * 4
WIN_S, STEP_S, LAG_S = 30.0, 1.0, 5.0


def best_of(fn, repeat=3):
    ts = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), out


def bandwidth_gbs():
    a = np.ones(64 * 1024 * 1024 // 8 * 4)  # 256 MB
    b = np.empty_like(a)
    t, _ = best_of(lambda: np.copyto(b, a), 5)
    return 2 * a.nbytes / t / 1e9


def main() -> int:
    import pandas as pd

    rng = np.random.default_rng(7)
    x = 70 + np.cumsum(rng.standard_normal((P, N)), 1) * 0.3
    ia, ib = sy.pair_index(P)
    n_pairs = len(ia)
    win, step = int(WIN_S * FS), int(STEP_S * FS)
    L = int(LAG_S * FS)
    nw = sy.n_windows(N, win, step)
    rows = []

    # --- ours, batch
    t_p, m = best_of(lambda: sy.rolling_pearson(x, FS, WIN_S, STEP_S))
    t_s, _ = best_of(lambda: sy.synchrony(x, FS, WIN_S, STEP_S))
    t_w, wres = best_of(lambda: sy.windowed_xcorr(x, FS, WIN_S, STEP_S, LAG_S), 1)

    # --- pandas per pair (all pairs; it is fast enough)
    cols = [pd.Series(x[k]) for k in range(P)]

    def pandas_all():
        out = np.empty((n_pairs, nw))
        for p, (a, b) in enumerate(zip(ia, ib)):
            out[p] = cols[a].rolling(win).corr(cols[b]).to_numpy()[win - 1 :: step][:nw]
        return out

    t_pd, ref = best_of(pandas_all, 1)
    err = float(np.nanmax(np.abs(ref - m.values)))

    # --- NeuroKit2 per pair, subset + extrapolation
    import neurokit2 as nk

    sub = 24
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in range(sub):
            nk.signal_synchrony(x[ia[p]], x[ib[p]], method="correlation", window_size=win)
    t_nk = (time.perf_counter() - t) / sub * n_pairs

    # --- WCC pandas per lag per pair, subset + extrapolation
    n_seg = win - L
    subw = 6
    t = time.perf_counter()
    for p in range(subw):
        a, b = cols[ia[p]], cols[ib[p]]
        for lag in range(-L, L + 1):
            lead, fol = (a, b) if lag >= 0 else (b, a)
            lead.rolling(n_seg).corr(fol.shift(-abs(lag))).to_numpy()[n_seg - 1 :: step]
    t_wpd = (time.perf_counter() - t) / subw * n_pairs

    # --- bandwidth
    bw = bandwidth_gbs()
    bytes_p = x.nbytes + n_pairs * nw * 9
    frac = bytes_p / t_p / 1e9 / bw

    # --- streaming ticks, 8 people, hr + eda, all metrics, one sample per tick
    P8 = 8
    eng = SynchronyEngine(P8, FS, EngineConfig())
    xs = {"hr": 70 + np.cumsum(rng.standard_normal((P8, 4 * 900)), 1), "eda": 5 + np.cumsum(rng.standard_normal((P8, 4 * 900)), 1) * 0.01}
    ticks = []
    for k in range(xs["hr"].shape[1]):
        blk = {mname: v[:, k : k + 1] for mname, v in xs.items()}
        t = time.perf_counter()
        eng.push(blk)
        ticks.append(time.perf_counter() - t)
    ticks = np.array(ticks[4 * 150 :]) * 1e3  # after surrogate history filled (150 s)
    p50, p99 = float(np.median(ticks)), float(np.percentile(ticks, 99))

    rows += [
        ("ours rolling_pearson (levels)", t_p, f"{n_pairs} pairs x {nw} windows; max |r - pandas| = {err:.1e}"),
        ("ours synchrony (detrended r)", t_s, "default metric"),
        ("pandas rolling().corr per pair", t_pd, "every sample, then every 4th kept"),
        ("NeuroKit2 signal_synchrony", t_nk, f"extrapolated from {sub} of {n_pairs} pairs"),
        ("ours windowed_xcorr +-5 s", t_w, f"{2 * L + 1} lags"),
        ("pandas WCC per lag per pair", t_wpd, f"extrapolated from {subw} of {n_pairs} pairs"),
    ]
    print(f"Synchrony benchmark: {P} people, {N / FS / 3600:.0f} h at {FS:g} Hz, {WIN_S:g} s windows, {STEP_S:g} s step")
    print(f"{'what':38s} {'seconds':>10s}  note")
    for name, sec, note in rows:
        print(f"{name:38s} {sec:10.3f}  {note}")
    res = {
        "speedup_vs_pandas": round(t_pd / t_p, 1),
        "speedup_vs_neurokit2": round(t_nk / t_p, 1),
        "wcc_speedup_vs_pandas": round(t_wpd / t_w, 1),
        "synchrony_detrended_speedup_vs_pandas": round(t_pd / t_s, 1),
        "memory_bandwidth_gbs": round(bw, 2),
        "bandwidth_fraction": round(frac, 4),
        "tick_ms_p50_8p": round(p50, 3),
        "tick_ms_p99_8p": round(p99, 3),
        "wcc_windows": int(wres.r0.shape[1]),
    }
    print(f"memory bandwidth (numpy copy, read+write): {bw:.2f} GB/s; rolling_pearson moves {bytes_p / 1e6:.1f} MB "
          f"(input + output) -> {bytes_p / t_p / 1e9:.3f} GB/s = {frac:.2%} of bandwidth")
    print(f"streaming, 8 people (28 pairs), hr+eda, all metrics, 1 sample/tick: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
