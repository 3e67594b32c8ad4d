"""Where the live tick's CPU goes, per phase (issue 21): the tick of ``bench_scale.py ticks`` with a few methods timed.

The session of :func:`bench_scale.pipeline_ticks` (heart rate at 1 Hz and skin conductance at 4 Hz per person,
one grid sample per tick, the heap frozen as the headless monitor runs it), with the thread CPU time of each
phase summed per tick: the new samples handed to the pipeline (``SessionPipeline.push``), then the phases of
``SessionPipeline.advance`` in its order: the pulls of every stream's grid sample (``_pull_streams``: the
preprocessors' ``pull_scalar`` or the stream banks, :mod:`attune_monitor.dsp.stream_bank`), taking every
person's sample into the grid, the signal-loss tracker, the grid-level history ring,
the synchrony engine, the person-level arousal divergence (``ArousalDivergence.push``), the shared-shift check,
the arousal reading (``ArousalTracker.push``), the arousal-state history, ``windows_of`` and the chance level per
modality, the detector's ``update`` / ``update_arousal`` (which steps every pair: within it the learned evidence,
its feature rows and tree sum, and the pair bank's step); then ``pair_table()`` (the pair states the runner hands
the view model), ``SessionModel.apply``, and the garbage collector's collections by generation (``gc.callbacks``).
``other`` is the tick less its top-level phases (the rest of ``advance`` and of the tick loop). Ticks of the first
``--warmup-s`` seconds are left out. Printed per phase (nested phases indented, part of the phase above): the mean
over light ticks, the mean over heavy ticks (the quarter with the longest whole tick: those where a synchrony window
completes) and the p99 over all.

Usage::

    python bench/tick_phases.py --people 64 --seconds 220
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from bench_scale import FS, group_session, load, push_until

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("samples push", "pulls", "grid take", "loss tracker", "levels ring", "engine", "arousal.push",
          "shared_shift.push", "reading.push", "arousal ring", "windows_of", "chance level", "detector.update",
          "detector.update_arousal",
          "  learned evidence", "    feature rows", "    tree sum", "  pair bank step", "pair_table", "model.apply",
          "gc gen 0", "gc gen 1", "gc gen 2")
#: Top-level phases: what they do not cover of a tick is ``other`` (nested phases and the collector's, which runs
#: within some phase, are not counted twice).
TOP = tuple(p for p in PHASES if not p.startswith(" ") and not p.startswith("gc "))


def _timed(cls, name: str, label: str, acc: dict) -> None:
    """Replace ``cls.name`` by a wrapper adding its thread CPU seconds to ``acc[label]``."""
    inner = getattr(cls, name)

    def wrapper(*args, **kwargs):
        c0 = time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            acc[label] += time.thread_time() - c0

    setattr(cls, name, wrapper)


def tick_phases(n_people: int, seconds: float, warmup_s: float, seed: int = 1) -> dict:
    """Per-phase CPU ms of each tick after warm-up.

    Returns
    -------
    dict
        ``phase -> ndarray, shape (n_ticks,)`` (ms), with ``"tick"`` the whole tick.
    """
    from attune_monitor.dsp import detector, divergence, engine, evidence, pipeline
    from attune_monitor.ui.model import SessionModel
    from attune_monitor.ui.runner import session_heap_frozen

    acc: dict = defaultdict(float)
    timed = [(pipeline.SessionPipeline, "push", "samples push"),
             (pipeline.SessionPipeline, "_pull_streams", "pulls"),
             (pipeline.SessionPipeline, "_take_scalars", "grid take"), (pipeline.SessionPipeline, "_take", "grid take"),
             (detector.SignalLossTracker, "update_rows", "loss tracker"),
             (pipeline.SessionPipeline, "_remember_levels", "levels ring"),
             (engine.SynchronyEngine, "push", "engine"),
             (divergence.ArousalDivergence, "push", "arousal.push"),
             (divergence.SharedShift, "push", "shared_shift.push"),
             (divergence.ArousalTracker, "push", "reading.push"),
             (pipeline.SessionPipeline, "_remember_arousal", "arousal ring"),
             (pipeline, "windows_of", "windows_of"),
             (pipeline.ChanceLevel, "update", "chance level"),
             (detector.RuptureDetector, "update", "detector.update"),
             (detector.RuptureDetector, "update_arousal", "detector.update_arousal"),
             (detector.RuptureDetector, "_learned_llr", "  learned evidence"),
             (evidence.PairFeatures, "push", "    feature rows"),
             (evidence.TreeEnsemble, "llr", "    tree sum"),
             (detector.RuptureDetector, "pair_table", "pair_table"),
             (SessionModel, "apply", "model.apply")]
    if detector._bank_available():  # the pair bank needs numba
        from attune_monitor.dsp import pair_bank

        timed.append((pair_bank.PairBank, "step", "  pair bank step"))
    for cls, name, label in timed:
        _timed(cls, name, label, acc)
    started = [0.0]

    def on_gc(phase, info):
        if phase == "start":
            started[0] = time.thread_time()
        else:
            acc[f"gc gen {info['generation']}"] += time.thread_time() - started[0]

    pipe, model, signals = group_session(n_people, seconds, seed)
    rows = []
    gc.callbacks.append(on_gc)
    try:
        with session_heap_frozen():
            cursor = (0, 0)
            for k in range(1, int(seconds * FS) + 1):
                until = k / FS
                acc.clear()
                c0 = time.thread_time()
                cursor = push_until(pipe, n_people, signals, cursor, until)
                upd = pipe.advance(until)
                model.apply(upd, pipe.detector.pair_table(), {}, ties=pipe.detector.person_ties)
                acc["tick"] = time.thread_time() - c0
                if until > warmup_s:
                    rows.append(dict(acc))
    finally:
        gc.callbacks.remove(on_gc)
    out = {key: np.array([r.get(key, 0.0) for r in rows]) * 1e3 for key in ("tick", *PHASES)}
    out["other"] = out["tick"] - sum(out[key] for key in TOP)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--people", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=220.0, help="session seconds")
    ap.add_argument("--warmup-s", type=float, default=150.0, help="session seconds left out at the start")
    ap.add_argument("--per-stream", action="store_true",
                    help="pull every stream on its own (no stream banks: dsp.stream_bank), for comparison")
    args = ap.parse_args(argv)
    if args.per_stream:
        from attune_monitor.dsp.pipeline import SessionPipeline

        SessionPipeline.stream_bank_min = None
    l0 = load()
    ph = tick_phases(args.people, args.seconds, args.warmup_s)
    l1 = load()
    tick = ph["tick"]
    heavy = tick >= np.percentile(tick, 75)
    print(f"{args.people} people, CPU ms per tick: p50 {np.median(tick):.1f}, p99 {np.percentile(tick, 99):.1f}, "
          f"max {tick.max():.1f} ({tick.size} ticks; load {l0} -> {l1})")
    print(f"  {'phase':26s} {'light mean':>10s} {'heavy mean':>10s} {'p99':>8s}")
    for key in ("tick", *PHASES, "other"):
        v = ph[key]
        print(f"  {key:26s} {v[~heavy].mean():10.2f} {v[heavy].mean():10.2f} {np.percentile(v, 99):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
