"""Does the synchrony engine tell real dyads from pseudo-dyads on a second real data set (motion, not physiology)?

``../shared/realdata/rMEA``: 20 real therapist-patient intake interviews (10 min each; 10 patients who carried on
therapy, 10 who dropped out), motion energy of each person at 25 frames/s (rMEA's example data, Kleinbub &
Ramseyer). A *pseudo-dyad* is the patient of one interview with the therapist of another (380 of them): they never
met, so whatever synchrony they show is what two people in the same kind of situation reach by chance.

Preprocessing as rMEA's example (``MEAsmooth`` then ``MEAscale``): 5-Hz block means, a 1-s moving average, each
person z-scored. Then :class:`attune_monitor.dsp.engine.SynchronyEngine` with 30-s windows every 5 s and lags up to
+-5 s (rMEA's example: ``MEAccf(lagSec = 5, winSec = 30, incSec = 10)``), and each dyad's mean Fisher z per metric.
AUC = P(a real dyad's mean > a pseudo-dyad's).

Attune reads heart rate and skin conductance, not motion: this checks the engine's windowed metrics on real
interaction, where the E4 recordings (``bench/realdata_controls.py``) give little to find.

Usage::

    python bench/realdata_motion.py [--data ../shared/realdata/rMEA]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from realdata_controls import auc  # noqa: E402  (P(real > pseudo), ties half)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "realdata" / "rMEA"
#: Frames per second of the motion energy files, and the rate the engine runs at.
FS_IN, FS = 25, 5
METRICS = ("pearson", "synchrony", "wcc_r0", "wcc_rmax")


def load(path: Path) -> np.ndarray:
    """One interview: shape (n, 2), columns patient, therapist; 5-Hz, smoothed over 1 s, z-scored per person."""
    a = np.loadtxt(path, skiprows=1)
    k = FS_IN // FS
    a = a[: a.shape[0] // k * k].reshape(-1, k, 2).mean(axis=1)
    kernel = np.ones(FS) / FS
    a = np.column_stack([np.convolve(a[:, j], kernel, mode="same") for j in range(2)])
    return (a - a.mean(axis=0)) / a.std(axis=0)


def dyad_means(patient: np.ndarray, therapist: np.ndarray) -> dict[str, float]:
    """Mean Fisher z over the session's windows, per engine metric, of one (real or pseudo) dyad."""
    from attune_monitor.dsp.engine import EngineConfig, SynchronyEngine
    from attune_monitor.dsp.pipeline import windows_of

    n = min(len(patient), len(therapist))
    cfg = EngineConfig(window_s=30.0, step_s=5.0, wcc_window_s=30.0, wcc_step_s=5.0, max_lag_s=5.0,
                       modalities=("motion",), concordance_modalities=())
    res = windows_of(SynchronyEngine(2, float(FS), cfg).push({"motion": np.vstack([patient[:n], therapist[:n]])})
                     ["motion"], 1, "motion")
    return {m: float(np.nanmean(np.arctanh(np.clip(res[m], -0.999, 0.999)))) for m in METRICS}


def run(data: Path = DATA) -> dict:
    """``{metric: {"real": [...], "pseudo": [...], "auc": float}}``; raises FileNotFoundError without the data."""
    files = sorted(data.glob("*/*.txt"))
    if not files:
        raise FileNotFoundError(f"no rMEA interviews under {data}")
    sessions = {f.stem: load(f) for f in files}
    ids = sorted(sessions)
    real = [dyad_means(sessions[i][:, 0], sessions[i][:, 1]) for i in ids]
    pseudo = [dyad_means(sessions[i][:, 0], sessions[j][:, 1]) for i, j in itertools.permutations(ids, 2)]
    out = {}
    for m in METRICS:
        r, p = [x[m] for x in real], [x[m] for x in pseudo]
        out[m] = {"real": r, "pseudo": p, "auc": auc(r, p)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    try:
        res = run(args.data)
    except FileNotFoundError as exc:
        print(f"skipped: {exc}")
        return 0
    n_real, n_pseudo = len(res[METRICS[0]]["real"]), len(res[METRICS[0]]["pseudo"])
    print(f"{n_real} real dyads, {n_pseudo} pseudo-dyads; mean Fisher z per dyad; AUC = P(real > pseudo)")
    for m, r in res.items():
        real, pseudo = np.array(r["real"]), np.array(r["pseudo"])
        print(f"{m:10s} real {real.mean():+.3f} (sd {real.std():.3f})  pseudo {pseudo.mean():+.3f} "
              f"(sd {pseudo.std():.3f})  AUC {r['auc']:.2f}  real above the pseudo 95th pct "
              f"{np.mean(real > np.percentile(pseudo, 95)):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
