"""How synchronous are simulated partners? Windowed Pearson r per scenario and phase.

For every built-in scenario and seeds 0..N-1: heart rate from RR (or the 1 Hz HR
stream) and EDA are put on a 4 Hz grid with ``np.interp``; r is computed in
30 s (HR, linearly detrended) and 20 s (EDA detrended, and EDA first
differences) windows every 5 s, and averaged over calm windows, windows fully
inside a scripted rupture (pairs involving ``who``, and the other pairs), and
windows touching a shared stressor. Plain numpy/scipy, independent of dsp/.

Usage::

    python bench/simulator_synchrony.py [--seeds 10]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from scipy.signal import detrend

from attune_monitor.acquisition.physiology import simulate_session
from attune_monitor.acquisition.scenario import builtin_names, load_scenario


def grid(session, pid, kind, fs=4.0):
    g = np.arange(0, session.duration_s, 1 / fs)
    if kind == "hr":
        try:
            s = session.stream(pid, "rr")
            return np.interp(g, s.timestamps, 60000 / s.values[:, 0])
        except KeyError:
            s = session.stream(pid, "hr")
            return np.interp(g, s.timestamps, s.values[:, 0])
    s = session.stream(pid, "eda")
    return np.interp(g, s.timestamps, s.values[:, 0])


def windowed_r(a, b, win, fs=4.0, step=5.0, diff=False):
    n, st = int(win * fs), int(step * fs)
    idx = np.arange(0, a.size - n, st)
    f = np.diff if diff else detrend
    return (idx + n / 2) / fs, np.array([np.corrcoef(f(a[i:i + n]), f(b[i:i + n]))[0, 1] for i in idx])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args(argv)
    for name in builtin_names():
        sc = load_scenario(name)
        acc: dict = {}
        for seed in range(args.seeds):
            s = simulate_session(sc, seed)
            for a, b in itertools.combinations(sc.ids, 2):
                for mod, win, diff in (("HR 30 s", 30, False), ("EDA 20 s", 20, False), ("dEDA 20 s", 20, True)):
                    kind = "hr" if mod.startswith("HR") else "eda"
                    tc, r = windowed_r(grid(s, a, kind), grid(s, b, kind), win, diff=diff)
                    calm = np.ones(tc.size, bool)
                    for ru in s.truth["ruptures"]:
                        calm &= (tc + win / 2 < ru["onset_s"]) | (tc - win / 2 > ru["repair_s"])
                        inside = (tc - win / 2 >= ru["onset_s"] + 3) & (tc + win / 2 <= ru["offset_s"])
                        label = f"rupture ({ru['style']})" if [a, b] in ru["pairs"] else "rupture, other pairs"
                        acc.setdefault((mod, label), []).extend(r[inside])
                    for c in s.truth["confounds"]:
                        if c["kind"] == "shared_stressor":
                            m = (tc + win / 2 > c["onset_s"]) & (tc - win / 2 < c["offset_s"])
                            calm &= ~m
                            acc.setdefault((mod, "shared stressor"), []).extend(r[m])
                    acc.setdefault((mod, "calm"), []).extend(r[calm])
        print(name)
        for mod in ("HR 30 s", "EDA 20 s", "dEDA 20 s"):
            parts = [f"{k[1]}: {np.nanmean(v):+.2f} (sd {np.nanstd(v):.2f})" for k, v in acc.items() if k[0] == mod]
            print(f"  {mod:10s} " + "   ".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
