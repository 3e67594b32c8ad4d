"""Try a change of the detector's input on the family sets: variant caches, trees fitted on them, choose, score.

The detector follows one engine metric per modality, with its chance level (``dsp.pipeline.DETECTOR_METRICS``);
its learned evidence is fitted on what it follows. A variant rewrites the cached windows the detector replays
(``bench/families.py cache`` output), so the whole chain can be re-run without re-analysing a session:

- ``eda-level``: skin conductance's level r (``pearson``, with its own surrogate chance) instead of phasic
  synchrony;
- ``chance-ewma``: the chance level and its spread smoothed causally per pair (EWMA, ``--half-life`` s) instead
  of each window's own surrogate estimate.

Then trees are fitted on the variant's fit sets (``fit`` + ``fit2``, as the shipped trees), ``learned_k`` x
``learned_h`` chosen on the choose set (best F1 at <= 1 false alarm/h for balanced, <= 2 for sensitive) and scored
once on held-out-li. ``--variant none`` is the control (today's input, trees refitted the same way).

Usage::

    python bench/detector_variants.py make eda-level /tmp/families /tmp/fam-eda-level
    python bench/detector_variants.py fit /tmp/fam-eda-level /tmp/trees/eda-level-s0.npz --seed 0
    python bench/detector_variants.py score /tmp/fam-eda-level /tmp/trees/eda-level-s0.npz
"""

from __future__ import annotations

import argparse
import glob
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: The cached sets a variant is made of (``ROOT/<set>-cache/<family>/*.pkl``).
SETS = ("fit", "fit2", "choose", "heldout-li")
#: The grid the thresholds are chosen on.
GRID = {"learned_k": [2, 2.5, 3, 3.5], "learned_h": [7, 10, 14, 20]}


def ewma(x: np.ndarray, t: np.ndarray, half_life_s: float) -> np.ndarray:
    """Causal exponentially weighted mean of each row of ``x`` (n_pairs, n_windows) at times ``t`` (n_windows,);
    NaNs are skipped (the mean holds), a row starts at its first finite value."""
    out = np.full(x.shape, np.nan)
    m = np.full(x.shape[0], np.nan)
    for j in range(x.shape[1]):
        a = 1.0 if j == 0 else 1.0 - 0.5 ** ((t[j] - t[j - 1]) / half_life_s)
        v = x[:, j]
        ok = np.isfinite(v)
        first = ok & ~np.isfinite(m)
        m[first] = v[first]
        upd = ok & ~first
        m[upd] += a * (v[upd] - m[upd])
        out[:, j] = m
    return out


def make(variant: str, src: Path, dst: Path, half_life_s: float = 60.0) -> None:
    """Write ``dst/<set>-cache/...`` from ``src/<set>-cache/...`` with the detector's input changed."""
    for s in SETS:
        for f in sorted(glob.glob(str(src / f"{s}-cache" / "*" / "*.pkl"))):
            out = dst / Path(f).relative_to(src)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "rb") as fh:
                d = pickle.load(fh)
            for win in d["win"].values():
                for modality, w in win.items():
                    if variant == "eda-level" and modality == "eda":
                        w["sync"], w["chance"] = w["pearson"], w["surrogate_pearson_mean"]
                        w["chance_sd"] = w["surrogate_pearson_sd"]
                    elif variant == "chance-ewma":
                        t = np.asarray(w["t"], float)
                        for k in ("chance", "chance_sd"):
                            w[k] = ewma(np.asarray(w[k], float), t, half_life_s)
            with open(out, "wb") as fh:
                pickle.dump(d, fh)


def fit(root: Path, out: Path, seed: int) -> None:
    """Trees fitted on ``root``'s fit and fit2 caches (every family), as the shipped ones."""
    import families
    import train_evidence as T

    data = [d for s in ("fit", "fit2") for fam in families.families() for d in T.load(root / f"{s}-cache" / fam)]
    X, y = T.collect(data)
    print(f"{len(data)} sessions, {y.size} rows", flush=True)
    np.savez_compressed(out, **T.export(T.fit(X, y, seed=seed), y))
    print(f"wrote {out}")


def score(root: Path, trees: str, jobs: int = 2) -> None:
    """Thresholds chosen on ``root``'s choose set with ``trees`` (a .npz, or "shipped"), scored on held-out-li."""
    import families as F

    from attune_monitor.dsp import detector, evidence
    from attune_monitor.evaluation import aggregate

    if trees != "shipped":
        model = evidence.TreeEnsemble.load(trees)
        detector.shipped_model = evidence.shipped_model = lambda *a, **k: model  # the worker processes fork
    for preset, max_fa in (("balanced", 1.0), ("sensitive", 2.0)):
        points = F.grid_points(F.base_config(preset), GRID)
        sets = F.load_sets(root / "choose-cache")
        scores, _ = F.score_sets(sets, [c for _, c in points], 30.0, jobs)
        k, chosen, _ = F.choose(scores, list(sets), len(points), max_fa)
        held = F.load_sets(root / "heldout-li-cache")
        hs, _ = F.score_sets(held, [points[k][1]], 30.0, jobs)
        m = aggregate([s for fam in held for s in hs[fam][0]])

        def g(m):
            return (f"P {m['precision'] or 0:.2f} R {m['recall'] or 0:.2f} F1 {m['f1'] or 0:.2f} "
                    f"FA/h {m['false_alarms_per_hour'] or 0:.2f}")

        detected = {fam: aggregate(hs[fam][0])["detected"] for fam in held}
        print(f"{preset}: chosen {points[k][0]}; choose set {g(chosen)}; held-out-li {g(m)}; detected {detected}",
              flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make", help="write a variant's caches")
    p.add_argument("variant", choices=("eda-level", "chance-ewma", "none"))
    p.add_argument("src", type=Path, help="folder of the original <set>-cache folders (e.g. /tmp/families)")
    p.add_argument("dst", type=Path)
    p.add_argument("--half-life", type=float, default=60.0, help="chance-ewma: half-life (s)")
    p = sub.add_parser("fit", help="fit trees on a variant's fit sets")
    p.add_argument("root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("score", help="choose thresholds on the choose set, score held-out-li once")
    p.add_argument("root", type=Path)
    p.add_argument("trees", help="a trees .npz, or 'shipped'")
    p.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if args.cmd == "make":
        make(args.variant, args.src, args.dst, args.half_life)
    elif args.cmd == "fit":
        fit(args.root, args.out, args.seed)
    else:
        score(args.root, args.trees, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
