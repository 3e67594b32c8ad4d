"""Fit the learned rupture evidence (:mod:`~attune_monitor.dsp.evidence`) on simulated tune sessions; choose thresholds.

Uses sessions cached by ``bench/tune_detector.py cache`` (the tune split only; never the eval split). Each
session is replayed through :class:`attune_monitor.dsp.detector.RuptureDetector` with ``collect_features=True``, so the
feature rows are exactly those the detector computes live. A second is labelled *rupture* from 10 s after a
scripted rupture's onset to its offset, for the pairs with the person who ruptures; *in tune* away from
ruptures (10 s before the onset to 30 s after the repair); the first minute and the seconds within 50 s of a
signal loss are left out. The ensemble is scikit-learn's ``HistGradientBoostingClassifier`` (a development
dependency only); its trees are exported to ``dsp/evidence_model.npz`` and evaluated with numpy at run time.

Usage::

    python bench/make_eval_set.py /tmp/tune --split tune -n 300
    python bench/tune_detector.py cache /tmp/tune /tmp/tune-cache --windows 30
    python bench/train_evidence.py fit /tmp/tune-cache --val 80 --out dsp/evidence_model.npz
    python bench/train_evidence.py cv /tmp/tune-cache                  # presets' learned_k / learned_h
    python bench/train_evidence.py sweep /tmp/tune-cache --val 80      # the shipped trees on held-out sessions

``--val N``: the last N sessions are held out of the fit; ``sweep`` scores them. ``cv``: 5-fold cross-validation
over all the sessions (every session scored by trees not fitted on it), what the presets were chosen with.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_detector import load, replay, score  # noqa: E402


def labels(d: dict, t: np.ndarray, pair: tuple) -> np.ndarray:
    """Per step of one pair: 1 rupture, 0 in tune, -1 left out, shape (n_steps,)."""
    tr = d["truth"]
    tt = t + d["origin"] - float(tr.get("time_origin", d["origin"]))
    y = np.zeros(t.size, int)
    for r in tr["ruptures"]:
        if r["who"] in pair:
            y[(tt > r["onset_s"] - 10) & (tt < r.get("repair_s", r["offset_s"]) + 30)] = -1
            y[(tt >= r["onset_s"] + 10) & (tt <= r["offset_s"])] = 1
    y[tt < 60] = -1
    for x in d["loss"]:
        if x["participant"] in pair:
            off = x["offset_s"] if x["offset_s"] is not None else math.inf
            y[(t >= x["onset_s"]) & (t < off + 50)] = -1
    return y


def collect(data) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and labels of every pair and step of the sessions: X (n_rows, F), y (n_rows,)."""
    per = collect_sessions(data)
    return np.vstack([x for x, _ in per]), np.concatenate([y for _, y in per])


def collect_sessions(data) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`collect` per session: a list of (X, y)."""
    from attune_monitor.dsp.detector import DetectorConfig

    out = []
    for d in data:
        Xs, ys = [], []
        det = replay(d, DetectorConfig(), collect_features=True)
        t = np.concatenate([a for a, _ in det.feature_log])
        X = np.concatenate([b for _, b in det.feature_log])  # (n_steps, n_pairs, F)
        for p, pair in enumerate(det.pairs):
            y = labels(d, t, pair)
            keep = y >= 0
            Xs.append(X[keep, p])
            ys.append(y[keep])
        out.append((np.vstack(Xs), np.concatenate(ys)))
    return out


def fit(X: np.ndarray, y: np.ndarray, seed: int = 0, max_iter: int = 200):
    """The ensemble (scikit-learn), fitted."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    m = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, max_leaf_nodes=31,
                                       l2_regularization=1.0, random_state=seed)
    return m.fit(X, y)


def export(model, y: np.ndarray) -> dict:
    """The fitted ensemble's trees as the arrays :class:`attune_monitor.dsp.evidence.TreeEnsemble` reads."""
    from attune_monitor.dsp.evidence import FEATURES

    parts = {k: [] for k in ("feature", "threshold", "missing_left", "left", "right", "is_leaf", "value")}
    roots, offset, depth = [], 0, 0
    for (pred,) in model._predictors:
        nodes = pred.nodes
        roots.append(offset)
        parts["feature"].append(nodes["feature_idx"].astype(np.int64))
        parts["threshold"].append(nodes["num_threshold"].astype(np.float64))
        parts["missing_left"].append(nodes["missing_go_to_left"].astype(bool))
        parts["left"].append(nodes["left"].astype(np.int64) + offset)
        parts["right"].append(nodes["right"].astype(np.int64) + offset)
        parts["is_leaf"].append(nodes["is_leaf"].astype(bool))
        parts["value"].append(nodes["value"].astype(np.float64))
        depth = max(depth, int(nodes["depth"].max()))
        offset += nodes.size
    out = {k: np.concatenate(v) for k, v in parts.items()}
    share = float(np.mean(y))
    out.update(roots=np.asarray(roots, np.int64), baseline=np.float64(np.ravel(model._baseline_prediction)[0]),
               prior_logit=np.float64(math.log(share / (1.0 - share))), depth=np.int64(depth),
               features=np.asarray(FEATURES))
    return out


class MemoisedRatios:
    """An ``llr(X)`` that computes each distinct feature block once (the ratios do not depend on the thresholds,
    so a sweep replays every session with the ratios of its first pass)."""

    def __init__(self, model=None, memo: dict | None = None):
        self.model = model
        self.memo = {} if memo is None else memo

    def llr(self, X: np.ndarray) -> np.ndarray:
        key = (X.shape, hash(X.tobytes()))
        if key not in self.memo:
            self.memo[key] = self.model.llr(X)
        return self.memo[key]


def sweep(data, grid: str, ratios) -> None:
    """Score every (learned_k, learned_h) of ``grid`` ("k,k,...:h,h,...") on the sessions and print them."""
    from attune_monitor.dsp.detector import get_preset

    ks, hs = ([float(v) for v in part.split(",")] for part in grid.split(":"))
    base = get_preset("balanced")
    for k, h in itertools.product(ks, hs):
        m, _ = score(data, replace(base, learned_k=k, learned_h=h), evidence_model=ratios)
        print(f"k {k} h {h}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} "
              f"FA/h {m['false_alarms_per_hour']:.2f} onset {m['median_onset_latency_s']:.1f}", flush=True)


def cross_validate(data, folds: int, grid: str) -> None:
    """Score threshold settings on out-of-fold ratios: every session's ratio from an ensemble not fitted on it."""
    from attune_monitor.dsp.detector import get_preset
    from attune_monitor.dsp.evidence import TreeEnsemble

    per = collect_sessions(data)
    fold = np.arange(len(data)) % folds
    memo: dict = {}
    for f in range(folds):
        Xf = np.vstack([x for (x, _), g in zip(per, fold) if g != f])
        yf = np.concatenate([y for (_, y), g in zip(per, fold) if g != f])
        ratios = MemoisedRatios(TreeEnsemble(export(fit(Xf, yf), yf)), memo)
        held = [d for d, g in zip(data, fold) if g == f]
        score(held, get_preset("balanced"), evidence_model=ratios)  # fills the memo with this fold's ratios
        print(f"fold {f + 1}/{folds}: fitted on {yf.size} rows, {len(held)} sessions held out", flush=True)
    sweep(data, grid, MemoisedRatios(None, memo))


def _family_folders(root: str) -> dict:
    """``family -> [cached sessions]`` of a family cache (``ROOT/<family>/*.pkl``, bench/families.py)."""
    return {f.name: load(f) for f in sorted(Path(root).iterdir()) if f.is_dir()}


def _choose(data, ratios, ks, hs, max_fa: float = 1.0):
    """The (learned_k, learned_h) of the grid with the best F1 at <= ``max_fa`` false alarms/h on ``data``."""
    from attune_monitor.dsp.detector import get_preset

    best = None
    for k, h in itertools.product(ks, hs):
        m, _ = score(data, replace(get_preset("balanced", "learned"), learned_k=k, learned_h=h), evidence_model=ratios)
        key = ((m["false_alarms_per_hour"] or 0) <= max_fa, m["f1"] or 0.0)
        if best is None or key > best[0]:
            best = (key, k, h)
    return best[1], best[2]


def _collect_family(folder: str) -> list:
    return collect_sessions(load(folder))


def _lofo_one(task: dict) -> tuple:
    """One family of :func:`leave_one_family_out` (in a worker process)."""
    from attune_monitor.dsp.detector import get_preset
    from attune_monitor.dsp.evidence import TreeEnsemble

    fam, per, held, ks, hs, max_fa, max_iter = (task[k] for k in ("fam", "per", "held", "ks", "hs", "max_fa",
                                                                  "max_iter"))
    X = np.vstack([x for f, xs in per.items() if f != fam for x, _ in xs])
    y = np.concatenate([y for f, xs in per.items() if f != fam for _, y in xs])
    ratios = MemoisedRatios(TreeEnsemble(export(fit(X, y, max_iter=max_iter), y)))
    held_sets = {f: load(d) for f, d in held.items()}
    others = [d for f, ds in held_sets.items() if f != fam for d in ds]
    k, h = _choose(others, ratios, ks, hs, max_fa)
    m, scores = score(held_sets[fam], replace(get_preset("balanced", "learned"), learned_k=k, learned_h=h),
                      evidence_model=ratios)
    return fam, k, h, m, scores, y.size


def leave_one_family_out(fit_root: str, heldout_root: str, grid: str, max_fa: float = 1.0, max_iter: int = 200,
                         jobs: int = 2):
    """LOFO: for each rupture family F, trees fitted on the *fit* sessions of the other families, thresholds
    chosen on the *held-out* sessions of the other families, scored on F's held-out sessions (never seen).

    Returns the per-family results and the pooled aggregate (``attune evaluate``'s metrics)."""
    from concurrent.futures import ProcessPoolExecutor

    from attune_monitor.evaluation import aggregate

    ks, hs = ([float(v) for v in part.split(",")] for part in grid.split(":"))
    fit_dirs = {f.name: str(f) for f in sorted(Path(fit_root).iterdir()) if f.is_dir()}
    held_dirs = {f.name: str(f) for f in sorted(Path(heldout_root).iterdir()) if f.is_dir()}
    with ProcessPoolExecutor(jobs) as ex:
        per = dict(zip(fit_dirs, ex.map(_collect_family, fit_dirs.values())))
        tasks = [dict(fam=f, per=per, held=held_dirs, ks=ks, hs=hs, max_fa=max_fa, max_iter=max_iter)
                 for f in held_dirs]
        pooled, out = [], {}
        for fam, k, h, m, scores, rows in ex.map(_lofo_one, tasks):
            pooled += scores
            out[fam] = (k, h, m)
            print(f"{fam:<14} k {k} h {h}: P {m['precision'] or 0:.2f} R {m['recall'] or 0:.2f} F1 {m['f1'] or 0:.2f} "
                  f"FA/h {m['false_alarms_per_hour'] or 0:.2f} signal loss {m['signal_loss_flagged']}/"
                  f"{m['signal_loss_periods']} ({rows} rows)", flush=True)
    agg = aggregate(pooled)
    print(f"pooled LOFO: P {agg['precision']:.3f} R {agg['recall']:.3f} F1 {agg['f1']:.3f} "
          f"FA/h {agg['false_alarms_per_hour']:.2f} signal loss "
          f"{agg['signal_loss_flagged']}/{agg['signal_loss_periods']}")
    return out, agg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cmd", choices=("fit", "sweep", "cv", "lofo"))
    ap.add_argument("--heldout", help="lofo: the held-out family cache (ROOT/<family>/*.pkl); 'cache' is the fit one")
    ap.add_argument("--max-fa", type=float, default=1.0, help="lofo: false alarms/h allowed when choosing thresholds")
    ap.add_argument("--folds", type=int, default=5, help="cv: folds over the sessions")
    ap.add_argument("--grid", default="2.5,3.0,3.5:7,10,14", help="cv, sweep: learned_k values:learned_h values")
    ap.add_argument("cache", help="comma-separated cache folders (tune split)")
    ap.add_argument("--val", type=int, default=80, help="sessions held out of the fit, scored by sweep")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "dsp" / "evidence_model.npz")
    ap.add_argument("--max-iter", type=int, default=200)
    args = ap.parse_args(argv)
    if args.cmd == "lofo":
        leave_one_family_out(args.cache, args.heldout, args.grid, args.max_fa, args.max_iter)
        return 0
    data = []
    for folder in args.cache.split(","):
        data += load(folder)
    fit_data, val = (data[: -args.val], data[-args.val:]) if args.val else (data, [])
    if args.cmd == "fit":
        X, y = collect(fit_data)
        print(f"{len(fit_data)} sessions, {y.size} rows, rupture share {y.mean():.3f}", flush=True)
        model = fit(X, y, max_iter=args.max_iter)
        arrays = export(model, y)
        from attune_monitor.dsp.evidence import TreeEnsemble

        check = TreeEnsemble(arrays).log_odds(X[:5000])
        err = float(np.max(np.abs(check - model.decision_function(X[:5000]))))
        if err > 1e-9:
            raise SystemExit(f"exported trees disagree with scikit-learn by {err}")
        np.savez_compressed(args.out, **arrays)
        print(f"wrote {args.out} ({arrays['roots'].size} trees, {arrays['feature'].size} nodes, depth "
              f"{arrays['depth']})")
    elif args.cmd == "cv":
        cross_validate(data, args.folds, args.grid)
    else:
        from attune_monitor.dsp.evidence import shipped_model

        sweep(val, args.grid, MemoisedRatios(shipped_model()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
