"""Offline tuning of the rupture detector on simulated tune sessions (never on the eval split).

Step 1 caches, per session, the pipeline's grid (``attune_monitor.analysis.analyze_recording``), its signal-loss
periods, the truth and the engine's per-window metrics for some window lengths; step 2 replays the
detector on the cached windows in well under a second per session, so presets and metrics can be
compared quickly; ``sep`` prints how far attuned and ruptured windows lie apart per metric (d').

Usage::

    python bench/make_eval_set.py /tmp/tune --split tune -n 36
    python bench/tune_detector.py cache /tmp/tune /tmp/tune-cache --windows 20,30
    python bench/tune_detector.py score /tmp/tune-cache --window 20
    python bench/tune_detector.py sep /tmp/tune-cache
    python bench/tune_detector.py fit-arousal /tmp/tune-cache   # the model in dsp.divergence.LLR_MODEL

Final numbers come from ``attune evaluate`` on a fresh ``--split eval`` folder.
"""

from __future__ import annotations

import argparse
import glob
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np


def cache(folder: Path, out: Path, windows: list[float]) -> None:
    """Analyse every ``X.xdf`` with a truth beside it once; store grid, losses, truth and windows per length."""
    from dataclasses import replace

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.dsp.engine import RING_CHANCE_OF, SynchronyEngine
    from attune_monitor.dsp.pipeline import PipelineConfig, engine_config, windows_of

    out.mkdir(parents=True, exist_ok=True)
    for xdf in sorted(folder.glob("*.xdf")):
        f = out / (xdf.stem + ".pkl")
        if f.exists():
            continue
        t0 = time.time()
        truth = json.loads(xdf.with_name(xdf.stem + ".truth.json").read_text())
        ana = analyze_recording(load_recording(str(xdf)), config=PipelineConfig())
        d = dict(grid=ana.grid, participants=ana.participants, pairs=ana.pairs, modalities=ana.modalities,
                 origin=ana.origin, truth=truth, loss=ana.signal_loss, duration_s=ana.duration_s, fs=ana.fs, win={})
        for w in windows:
            # the pipeline's engine at window w, with every metric (lead-lag every second, all chance levels)
            cfg = replace(engine_config(PipelineConfig(window_s=w), d["modalities"]), wcc_step_s=1.0,
                          chance_of=RING_CHANCE_OF, chance_modalities=None)
            eng = SynchronyEngine(len(d["participants"]), d["fs"], cfg)
            res = eng.push(d["grid"])
            d["win"][w] = {m: windows_of(res[m], len(d["pairs"]), m) for m in d["modalities"]}
        pickle.dump(d, open(f, "wb"))
        print(f"{xdf.stem}: {time.time() - t0:.1f} s", flush=True)


def load(folder) -> list[dict]:
    return [pickle.load(open(f, "rb")) for f in sorted(glob.glob(str(Path(folder) / "*.pkl")))]


def replay(d: dict, config, window_s: float = 30.0, metric: str = "sync", arousal: bool = True, **detector_kw):
    """The detector run over one cached session as the pipeline feeds it (loss notes, windows, arousal); finished.

    ``metric`` "sync" follows what the pipeline follows per modality (``dsp.pipeline.detector_metric``),
    with its chance level; another engine metric name replaces it (with the same chance level). With
    ``arousal`` the person-level arousal divergence is computed from the cached grid (once, kept in ``d``) and
    fed too. ``detector_kw`` go to :class:`attune_monitor.dsp.detector.RuptureDetector` (``evidence_model``,
    ``collect_features``).
    """
    from attune_monitor.dsp.detector import RuptureDetector
    from attune_monitor.dsp.divergence import ArousalDivergence, SharedShift

    det = RuptureDetector(d["participants"], d["modalities"], 1.0, config, window_s=window_s, arousal=arousal,
                          **detector_kw)
    for x in d["loss"]:
        det.note_signal_loss(x["participant"], x["onset_s"], x["onset_s"] + 2.0, x["offset_s"])
    if "arousal" not in d or "shared" not in d:
        # the pipeline's arousal divergence and its shared events (everybody moving at once), once per session
        ad = ArousalDivergence(len(d["participants"]), d["fs"], d["modalities"])
        d["arousal"] = ad.push({m: d["grid"][m] for m in d["modalities"]})
        d["shared"] = SharedShift(len(d["participants"])).push(d["arousal"][0], ad.last_relative)
    for te in d["shared"]:
        det.note_shared_event(te, "everybody's arousal moved at once")
    for m in d["modalities"]:
        w = d["win"][window_s][m]
        det.update(m, w["t"], w.get(metric, w["sync"]), w["chance"], w.get("chance_sd"))
    if arousal:
        det.update_arousal(*d["arousal"])
    det.finish()
    return det


def score(data, config, window_s: float = 30.0, metric: str = "sync", arousal: bool = True, evidence_model=None):
    """Replay the detector (:func:`replay`) on cached sessions; ``attune evaluate``'s metrics.

    ``evidence_model``: the learned evidence's ratios (default: the shipped ensemble).
    """
    from attune_monitor.evaluation import Detection, aggregate, score_file

    scores = []
    for d in data:
        det = replay(d, config, window_s, metric, arousal, evidence_model=evidence_model)
        tr = d["truth"]
        shift = d["origin"] - float(tr.get("time_origin", d["origin"]))
        dets = [Detection(tuple(e.pair), tuple(e.people), e.onset_s + shift, e.flagged_s + shift,
                          None if e.offset_s is None else e.offset_s + shift, repaired=e.repaired)
                for e in det.episodes]
        scores.append(score_file(dets, tr, tr.get("scenario", ""),
                                 duration_s=float(tr.get("duration_s", d["duration_s"]))))
    return aggregate(scores), scores


def arousal_labels(d: dict, t: np.ndarray) -> dict:
    """Per person: each second's label, "in_tune" (away from ruptures and confounds), "aversive" / "withdrawn"
    (from 10 s after the onset of that person's rupture to its offset) or "" (neither), shape (n_sec,)."""
    tr = d["truth"]
    shift = d["origin"] - float(tr.get("time_origin", d["origin"]))
    tt = t + shift
    out = {}
    for p in d["participants"]:
        lab = np.full(t.size, "in_tune", dtype=object)
        for r in tr["ruptures"]:
            lab[(tt > r["onset_s"] - 10) & (tt < r.get("repair_s", r["offset_s"]) + 30)] = ""
        for c in tr.get("confounds", []):
            if p in c.get("participants", d["participants"]):
                lab[(tt > c["onset_s"] - 5) & (tt < c["offset_s"] + 30)] = ""
        for r in tr["ruptures"]:
            if r["who"] == p:
                lab[(tt >= r["onset_s"] + 10) & (tt <= r["offset_s"])] = r["style"]
        out[p] = lab
    return out


def fit_arousal(data, config=None) -> dict:
    """Fit :data:`~attune_monitor.dsp.divergence.LLR_MODEL` (means per label, covariance in tune) on cached sessions."""
    from attune_monitor.dsp.divergence import ArousalDivergence

    rows: dict = {"in_tune": [], "aversive": [], "withdrawn": []}
    for d in data:
        ad = ArousalDivergence(len(d["participants"]), d["fs"], d["modalities"], config)
        t, _, div = ad.push({m: d["grid"][m] for m in d["modalities"]})
        labels = arousal_labels(d, t)
        for i, p in enumerate(d["participants"]):
            x = div[i].T
            ok = np.isfinite(x).all(axis=1)
            for k in rows:
                rows[k].append(x[ok & (labels[p] == k)])
    r = {k: np.vstack(v) for k, v in rows.items()}
    mu0 = r["in_tune"].mean(axis=0)
    return {"in_tune": tuple(np.round(mu0, 2).tolist()),
            "aversive": tuple(np.round(r["aversive"].mean(axis=0), 2).tolist()),
            "withdrawn": tuple(np.round(r["withdrawn"].mean(axis=0), 2).tolist()),
            "cov": tuple(tuple(row) for row in np.round(np.cov(r["in_tune"].T), 2).tolist()),
            "n": {k: len(v) for k, v in r.items()}}


def separation(data, window_s: float, modality: str, metric: str) -> tuple[float, float, float]:
    """(attuned mean, ruptured mean, d') of a metric's Fisher z over windows fully inside / outside ruptures."""
    att, rup = [], []
    for d in data:
        ws = d["win"][window_s].get(modality, {})
        if metric not in ws:
            continue
        t = ws.get(metric + "_t", ws["t"])
        tr = d["truth"]
        tt = t + d["origin"] - float(tr.get("time_origin", d["origin"]))
        for p, pair in enumerate(d["pairs"]):
            lab = np.zeros(t.size, int)  # 0 attuned, 1 fully ruptured, 2 neither
            for r in tr["ruptures"]:
                if r["who"] in pair:
                    lab[(tt >= r["onset_s"]) & (tt < r["repair_s"] + window_s + 5)] = 2
                    lab[(tt >= r["onset_s"] + window_s) & (tt <= r["offset_s"])] = 1
            for c in tr["confounds"]:
                lab[(tt >= c["onset_s"] - 5) & (tt < c["offset_s"] + window_s + 5) & (lab == 0)] = 2
            lab[tt < 40 + window_s] = 2
            z = np.arctanh(np.clip(ws[metric][p], -0.999, 0.999))
            att.append(z[(lab == 0) & np.isfinite(z)])
            rup.append(z[(lab == 1) & np.isfinite(z)])
    if not att:
        return float("nan"), float("nan"), float("nan")
    a, r = np.concatenate(att), np.concatenate(rup)
    return float(a.mean()), float(r.mean()), float((a.mean() - r.mean()) / a.std())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("folder", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--windows", default="20,30")
    s = sub.add_parser("score")
    s.add_argument("cache", type=Path)
    s.add_argument("--window", type=float, default=20.0)
    s.add_argument("--metric", default="sync")
    p = sub.add_parser("sep")
    p.add_argument("cache", type=Path)
    f = sub.add_parser("fit-arousal", help="fit the arousal divergence model (dsp.divergence.LLR_MODEL)")
    f.add_argument("cache", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "cache":
        cache(args.folder, args.out, [float(x) for x in args.windows.split(",")])
    elif args.cmd == "score":
        from attune_monitor.dsp.detector import PRESETS
        from attune_monitor.evaluation import format_metrics

        data = load(args.cache)
        for name, cfg in PRESETS.items():
            m, _ = score(data, cfg, args.window, args.metric)
            print(f"== {name} (window {args.window:g} s, {args.metric})\n{format_metrics(m)}")
    elif args.cmd == "fit-arousal":
        print(fit_arousal(load(args.cache)))
    else:
        data = load(args.cache)
        for w in sorted(data[0]["win"]):
            for mod in ("hr", "eda"):
                for metric in ("sync", "pearson", "pearson_diff", "wcc_rmax", "concordance", "phasic"):
                    a, r, dp = separation(data, w, mod, metric)
                    if np.isfinite(dp):
                        print(f"window {w:g} s {mod:3s} {metric:13s} attuned z {a:.2f} ruptured z {r:.2f} d' {dp:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
