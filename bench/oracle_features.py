"""Would another synchrony feature carry more of a rupture than the one the detector follows? An interval oracle.

The companion of ``bench/oracle_bound.py``, which scores the detector's own fused drop. Here every feature is
computed straight from a cached session (``bench/families.py cache``): from the grid (each person's heart rate
and skin conductance at the pipeline's 4 Hz) and from the engine's 30-s windows the cache holds per pair.
A *person's* value per second is the mean over their pairs (Fisher z of r) and over the two modalities:

- ``pair_r W s``: Pearson r of the grid over trailing W-s windows (W = 15, 30, 60);
- ``group_r 30 s``: r of the person's grid with the mean of the others' z-scored grids (groups of 3+ only:
  averaging the others cancels their own noise, so a person leaving the group might stand out more);
- ``engine:<metric>``: the engine's 30-s window metric (``sync`` less its chance level, as the detector follows
  it; ``pearson``; ``pearson_diff``, r of the changes; ``wcc_rmax``, the peak lagged r; ``synchrony``).

Each person's drop is (median - value) / IQR over that person's own null seconds (no rupture of theirs within
60 s), a reference no causal detector has. The oracle is told each rupture's interval (onset + 20 s to offset)
and scores it by the mean drop; nulls are 60-s intervals of null seconds (40 draws per person and session).
Recall at the null's 99th percentile is about what a detector at <= 1 false alarm/h could reach at best.

Usage::

    python bench/oracle_features.py /tmp/families/heldout-li-cache [/tmp/families/choose-cache ...]
"""

from __future__ import annotations

import argparse
import collections
import glob
import math
import pickle
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_controls import auc  # noqa: E402  (P(ruptures > nulls), ties half)

#: The pipeline's grid rate (Hz) in the cache.
GRID_FS = 4.0
#: Seconds after a rupture's onset before 30-s windows reach into it.
REACH_S = 20.0
#: Null intervals drawn per person and session, and their length (s).
NULL_DRAWS, NULL_S = 40, 60.0
#: Engine metrics compared (the detector follows ``sync``; see ``dsp.pipeline.DETECTOR_METRICS``).
ENGINE_METRICS = ("sync", "pearson", "pearson_diff", "wcc_rmax", "synchrony")


def rolling_r(x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Pearson r of ``x`` and ``y`` (shape (T,)) over the trailing ``n`` samples at every sample; NaN where fewer
    than 80 % of the window is finite in both."""
    ok = np.isfinite(x) & np.isfinite(y)
    x0, y0 = np.where(ok, x, 0.0), np.where(ok, y, 0.0)

    def window_sum(a):
        c = np.concatenate([[0.0], np.cumsum(a)])
        return c[n:] - c[:-n]

    k = window_sum(ok.astype(float))
    sx, sy = window_sum(x0), window_sum(y0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = window_sum(x0 * y0) - sx * sy / k
        r = cov / np.sqrt((window_sum(x0 * x0) - sx * sx / k) * (window_sum(y0 * y0) - sy * sy / k))
    r[k < 0.8 * n] = np.nan
    out = np.full(x.shape, np.nan)
    out[n - 1:] = r
    return np.clip(out, -0.999, 0.999)


def person_features(d: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{feature: (t (T,), value (n_people, T))}`` of one cached session; t in session seconds."""
    people, pairs = d["participants"], d["pairs"]
    n_p = len(people)
    t_grid = np.arange(d["grid"][d["modalities"][0]].shape[1]) / GRID_FS
    per_mod = collections.defaultdict(list)
    for m in d["modalities"]:
        g = np.asarray(d["grid"][m], float)
        gz = (g - np.nanmean(g, axis=1, keepdims=True)) / np.where(
            (s := np.nanstd(g, axis=1, keepdims=True)) > 0, s, 1.0)
        for w in (15, 30, 60):
            n = int(w * GRID_FS)
            v = np.full((n_p, g.shape[1]), np.nan)
            for p in range(n_p):
                v[p] = np.nanmean([np.arctanh(rolling_r(g[p], g[q], n)) for q in range(n_p) if q != p], axis=0)
            per_mod[f"pair_r {w} s"].append(v)
        if n_p >= 3:
            v = np.full((n_p, g.shape[1]), np.nan)
            for p in range(n_p):
                others = np.nanmean(gz[[q for q in range(n_p) if q != p]], axis=0)
                v[p] = np.arctanh(rolling_r(g[p], others, int(30 * GRID_FS)))
            per_mod["group_r 30 s"].append(v)
    out = {k: (t_grid, np.nanmean(v, axis=0)) for k, v in per_mod.items()}
    win = d["win"][30.0]
    for metric in ENGINE_METRICS:
        vals, t_win = [], None
        for m in d["modalities"]:
            if metric not in win[m]:
                continue
            v = np.asarray(win[m][metric], float)
            v = v - np.asarray(win[m]["chance"], float) if metric == "sync" else np.arctanh(np.clip(v, -0.999, 0.999))
            t_win = np.asarray(win[m]["t"], float)
            vals.append(np.array([np.nanmean(v[[k for k, pr in enumerate(pairs) if who in pr]], axis=0)
                                  for who in people]))
        if vals:
            out[f"engine:{metric}"] = (t_win, np.nanmean(vals, axis=0))
    return out


def score_family(files: list[str], rng: np.random.Generator, min_people: int = 2) -> dict[str, tuple[list, list]]:
    """``{feature: (rupture scores, null scores)}`` over the sessions ``files`` of one family (those with at least
    ``min_people`` people)."""
    res: dict = collections.defaultdict(lambda: ([], []))
    for f in files:
        with open(f, "rb") as fh:
            d = pickle.load(fh)
        if len(d["participants"]) < min_people:
            continue
        shift = d["origin"] - float(d["truth"].get("time_origin", d["origin"]))
        rups = [(r["onset_s"] - shift, r["offset_s"] - shift, r) for r in d["truth"]["ruptures"]]
        for feature, (t, values) in person_features(d).items():
            per_s = max(1, int(round(1.0 / np.median(np.diff(t)))))  # samples a second
            for p, who in enumerate(d["participants"]):
                label = np.zeros(t.size, int)
                mine = []
                for on, off, r in rups:
                    if any(who in pr for pr in r["pairs"]):
                        label[(t >= on - 60) & (t <= off + 60)] = -1
                    if r.get("who") == who or all(who in pr for pr in r["pairs"]):
                        mine.append((on, off))
                v = values[p]
                null = (label == 0) & np.isfinite(v)
                if null.sum() < 100 * per_s:
                    continue
                q25, q50, q75 = np.percentile(v[null], [25, 50, 75])
                drop = (q50 - v) / ((q75 - q25) or 1.0)
                for on, off in mine:
                    inside = (t >= on + REACH_S) & (t <= off) & np.isfinite(drop)
                    if inside.sum() >= 10 * per_s:
                        res[feature][0].append(drop[inside].mean())
                n = int(NULL_S * per_s)
                for _ in range(NULL_DRAWS):
                    s = int(rng.integers(0, t.size - n))
                    if null[s:s + n].all():
                        res[feature][1].append(drop[s:s + n].mean())
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caches", type=Path, nargs="+", help="family caches: CACHE/<family>/s<seed>.pkl")
    ap.add_argument("--min-people", type=int, default=2, help="only sessions with at least this many people")
    ap.add_argument("--seed", type=int, default=0, help="seed of the null intervals' draw")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN stretches (signal losses) give NaN, as meant
    for cache in args.caches:
        rng = np.random.default_rng(args.seed)
        print(f"== {cache}")
        pooled: dict = collections.defaultdict(list)
        for fam in sorted(glob.glob(str(cache / "*"))):
            res = score_family(sorted(glob.glob(fam + "/*.pkl")), rng, args.min_people)
            for feature, (pos, neg) in sorted(res.items()):
                pos_a, neg_a = np.array(pos), np.array(neg)
                r99 = float(np.mean(pos_a > np.percentile(neg_a, 99))) if pos and neg else math.nan
                pooled[feature].append((pos_a.size, r99))
                print(f"{Path(fam).name:14s} {feature:20s} ruptures {pos_a.size:3d} nulls {neg_a.size:4d} "
                      f"AUC {auc(pos_a, neg_a):.2f} recall@null95 "
                      f"{np.mean(pos_a > np.percentile(neg_a, 95)) if pos and neg else math.nan:.2f} "
                      f"recall@null99 {r99:.2f}")
        print("recall at the null's 99th percentile, families pooled (weighted by ruptures):")
        for feature, rows in sorted(pooled.items()):
            n = sum(k for k, _ in rows)
            print(f"  {feature:20s} {sum(k * r for k, r in rows if math.isfinite(r)) / max(n, 1):.2f} ({n} ruptures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
