"""Rupture-family sets: make them, cache their analyses, score a detector per family, leave one family out.

A *family set* is one folder per rupture family (``acquisition.scenario.RUPTURE_FAMILIES``) of sessions made
by ``bench/make_eval_set.py --families F`` (domain-randomised sessions, every rupture of family F). Fitting
the detector's thresholds on some families and scoring it on the one left out (LOFO) says how it does on a
rupture model it was not chosen on.

Seeds (disjoint from make_eval_set's tune 10000-49999 and eval 50000-59999, and from each other): session
``i`` of the family numbered ``k`` in ``RUPTURE_FAMILIES`` (coupling_loss 0, aversive 1, withdrawn 2,
partial 3, drift 4, sudden 5, leave_group 6) is

* ``fit``: ``60000 + 1000 k + i`` (60000-66999), for choosing thresholds;
* ``heldout``: ``70000 + 1000 k + i`` (70000-76999), for reported numbers.

No two families share a session background (people, devices, drives, confounds), so LOFO never scores a
session whose twin it was fitted on.

Scoring is ``attune evaluate``'s: each cached session is replayed through
:class:`attune_monitor.dsp.detector.RuptureDetector` (``bench/tune_detector.py`` ``replay``/``score``) and matched with
``attune_monitor.evaluation.score_file``/``aggregate``. The detector is reached only through
``DetectorConfig``/``get_preset`` and the replay, so the harness keeps working while its internals change.

Layout: ``SETS/<family>/s<seed>.{scenario.toml,xdf,truth.json}``, ``CACHE/<family>/s<seed>.pkl``.

Usage::

    python bench/families.py make /tmp/families/heldout --set heldout -n 6 --duration 600 --jobs 2
    python bench/families.py cache /tmp/families/heldout /tmp/families/heldout-cache --jobs 2
    python bench/families.py score /tmp/families/heldout-cache --preset balanced --jobs 2
    python bench/families.py lofo /tmp/families/fit-cache --preset balanced \\
        --grid '{"learned_k": [2.5, 3, 3.5], "learned_h": [7, 10, 14]}' --jobs 2
    python bench/families.py score CACHE --config-module mypkg.candidate:CONFIG   # a config not in the presets
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_eval_set  # noqa: E402
import tune_detector  # noqa: E402

#: First seed of each set; family k uses ``base + SEEDS_PER_FAMILY * k + i``.
SET_BASE = {"fit": 60_000, "heldout": 70_000}
SEEDS_PER_FAMILY = 1000
#: The LOFO choice's false-alarm ceiling (per hour) unless ``--max-fa`` says otherwise.
MAX_FALSE_ALARMS_PER_H = 1.0


def families() -> tuple[str, ...]:
    """Every rupture family, in the order that numbers their seed ranges."""
    from attune_monitor.acquisition.scenario import RUPTURE_FAMILIES

    return tuple(RUPTURE_FAMILIES)


def family_seeds(split: str, family: str, n: int, first: int = 0) -> list[int]:
    """Seeds of sessions ``first .. first + n - 1`` of ``family`` in set ``split`` ("fit" or "heldout")."""
    if split not in SET_BASE:
        raise ValueError(f"Invalid value for 'set': expected one of {', '.join(SET_BASE)}, but got {split!r}.")
    if family not in families():
        raise ValueError(f"Invalid value for 'family': expected one of {', '.join(families())}, but got {family!r}.")
    if not (0 <= first and first + n <= SEEDS_PER_FAMILY):
        raise ValueError(f"Invalid value for 'first'/'n': expected 0 <= first and first + n <= {SEEDS_PER_FAMILY}, "
                         f"but got first {first}, n {n}.")
    base = SET_BASE[split] + SEEDS_PER_FAMILY * families().index(family)
    return [base + first + i for i in range(n)]


# -- make ------------------------------------------------------------------------------------------------------
def make(out: Path, split: str, n: int, fams, duration_s: float | None = None, first: int = 0, jobs: int = 2,
         randomise: bool = True, lead_in_s: float | None = None) -> None:
    """Simulate ``n`` sessions per family into ``out/<family>/`` (``make_eval_set.make_one``; existing skipped)."""
    todo = []
    for fam in fams:
        folder = out / fam
        folder.mkdir(parents=True, exist_ok=True)
        for seed in family_seeds(split, fam, n, first):
            if not (folder / f"s{seed}.truth.json").exists():
                todo.append((folder, seed, fam))

    def one(job):
        folder, seed, fam = job
        t0 = time.time()
        line = make_eval_set.make_one(folder, seed, duration_s, None, [fam], randomise, lead_in_s)
        return f"{fam:13s} {line}  [{time.time() - t0:.1f} s]"

    with ThreadPoolExecutor(jobs) as pool:  # each job is an `attune simulate` subprocess
        for line in pool.map(one, todo):
            print(line, flush=True)


# -- cache -----------------------------------------------------------------------------------------------------
def _cache_one(xdf: str, out: str, window_s: float) -> str:
    """Cache one session with ``tune_detector.cache`` (which takes a folder: a folder of links to this one)."""
    src = Path(xdf)
    with tempfile.TemporaryDirectory(prefix="famcache-") as tmp:
        for name in (src.name, src.stem + ".truth.json"):
            os.symlink(src.with_name(name), Path(tmp) / name)
        t0 = time.time()
        tune_detector.cache(Path(tmp), Path(out), [window_s])
    return f"{src.parent.name:13s} {src.stem}: cached in {time.time() - t0:.1f} s"


def cache(sets: Path, out: Path, jobs: int = 2, window_s: float | None = None) -> None:
    """Analyse every session of every family folder in ``sets`` once into ``out/<family>/`` (existing kept)."""
    window_s = _window(window_s)
    todo = []
    for fam in families():
        for xdf in sorted((sets / fam).glob("*.xdf")):
            dest = out / fam
            if not (dest / (xdf.stem + ".pkl")).exists():
                dest.mkdir(parents=True, exist_ok=True)
                todo.append((str(xdf), str(dest), window_s))
    with ProcessPoolExecutor(jobs) as pool:
        for line in pool.map(_cache_one, *zip(*todo)) if todo else ():
            print(line, flush=True)


def _window(window_s: float | None) -> float:
    """The synchrony window the pipeline uses (what ``attune analyze`` / ``evaluate`` replay at)."""
    if window_s is not None:
        return float(window_s)
    from attune_monitor.dsp.pipeline import PipelineConfig

    return float(PipelineConfig().window_s)


# -- detector configurations ---------------------------------------------------------------------------------
def base_config(preset: str = "balanced", evidence: str | None = None, config_module: str | None = None,
                override: dict | None = None):
    """The detector configuration to score or to grid around.

    ``config_module`` "MODULE[:NAME]": NAME (default ``CONFIG``) in MODULE is a ``DetectorConfig``, a dict of
    them (``preset`` picks one) or a callable returning either; otherwise ``get_preset(preset, evidence)``.
    ``override`` replaces fields (``dataclasses.replace``).
    """
    from attune_monitor.dsp.detector import DetectorConfig, get_preset

    if config_module:
        mod_name, _, attr = config_module.partition(":")
        obj = getattr(importlib.import_module(mod_name), attr or "CONFIG")
        obj = obj() if callable(obj) and not isinstance(obj, DetectorConfig) else obj
        if isinstance(obj, dict):
            if preset not in obj:
                raise ValueError(
                    f"Invalid value for 'preset': {config_module} has {', '.join(obj)}, but got {preset!r}.")
            obj = obj[preset]
        if not isinstance(obj, DetectorConfig):
            raise ValueError(f"Invalid value for 'config-module': expected {config_module} to give a DetectorConfig "
                             f"(or a dict of them), but got {type(obj).__name__}.")
        cfg = obj
    else:
        cfg = get_preset(preset, evidence)
    return _replace(cfg, override or {})


def _replace(cfg, params: dict):
    names = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(params) - names)
    if bad:
        raise ValueError(f"Invalid detector field(s) {', '.join(bad)}: expected fields of DetectorConfig such as "
                         f"{', '.join(sorted(names)[:12])}, ...")
    return dataclasses.replace(cfg, **params).validate()


def grid_points(base, grid: dict) -> list[tuple[dict, object]]:
    """Every combination of ``grid`` (``{"field": [values, ...]}``) applied to ``base``: ``[(params, config)]``.

    Combinations the detector rejects (``DetectorConfig.validate``) are left out.
    """
    if not grid or not all(isinstance(v, list) and v for v in grid.values()):
        raise ValueError(f"Invalid value for 'grid': expected a JSON object of non-empty lists such as "
                         f"{{\"learned_k\": [2.5, 3], \"learned_h\": [7, 10]}}, but got {grid!r}.")
    out = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        try:
            out.append((params, _replace(base, params)))
        except ValueError as exc:
            if "Invalid detector field" in str(exc):
                raise
    if not out:
        raise ValueError(f"Invalid value for 'grid': no combination of {grid} is a valid detector configuration.")
    return out


# -- scoring ---------------------------------------------------------------------------------------------------
def load_sets(cache_dir: Path) -> dict[str, list[Path]]:
    """``{family: [cached session .pkl, ...]}`` for the families with a folder in ``cache_dir``."""
    sets = {f: sorted((cache_dir / f).glob("*.pkl")) for f in families() if (cache_dir / f).is_dir()}
    sets = {f: p for f, p in sets.items() if p}
    if not sets:
        raise SystemExit(f"{cache_dir}: no cached family sessions (<family>/*.pkl); run 'families.py cache' first.")
    return sets


def _score_session(path: str, configs: list, window_s: float) -> tuple[list, float]:
    """One cached session replayed with every config: ``([FileScore per config], seconds)``."""
    import pickle

    with open(path, "rb") as f:
        d = pickle.load(f)
    t0 = time.time()
    out = [tune_detector.score([d], cfg, window_s)[1][0] for cfg in configs]
    for s in out:
        s.name = Path(path).stem
    return out, time.time() - t0


def score_sets(sets: dict, configs: list, window_s: float, jobs: int = 2) -> tuple[dict, list[float]]:
    """Replay every session of every family with every config.

    Returns
    -------
    scores : dict
        ``{family: [[FileScore per session] per config]}``.
    seconds : list of float
        Replay time per session (all configs).
    """
    jobs_list = [(f, p) for f, ps in sets.items() for p in ps]
    scores = {f: [[] for _ in configs] for f in sets}
    secs = []
    with ProcessPoolExecutor(jobs) as pool:
        futs = [pool.submit(_score_session, str(p), configs, window_s) for _, p in jobs_list]
        for (fam, _), fut in zip(jobs_list, futs):
            per_cfg, s = fut.result()
            secs.append(s)
            for k, fs in enumerate(per_cfg):
                scores[fam][k].append(fs)
    return scores, secs


def choose(scores: dict, fams, n_configs: int, max_fa: float = MAX_FALSE_ALARMS_PER_H) -> tuple[int, dict, bool]:
    """The config with the best pooled F1 on ``fams`` among those with at most ``max_fa`` false alarms per hour
    (ties: fewer false alarms, then the earlier grid point); when none qualifies, the fewest false alarms.

    Returns ``(index, pooled metrics of that config on fams, whether it met the false-alarm ceiling)``.
    """
    from attune_monitor.evaluation import aggregate

    ms = [aggregate([s for f in fams for s in scores[f][k]]) for k in range(n_configs)]
    fa = [m["false_alarms_per_hour"] if m["false_alarms_per_hour"] is not None else math.inf for m in ms]
    ok = [k for k in range(n_configs) if fa[k] <= max_fa]
    if ok:
        k = max(ok, key=lambda k: (ms[k]["f1"] or 0.0, -fa[k], -k))
    else:
        k = min(range(n_configs), key=lambda k: (fa[k], -(ms[k]["f1"] or 0.0), k))
    return k, ms[k], bool(ok)


def _row(label: str, m: dict, extra: str = "") -> str:
    f = lambda x: "  n/a" if x is None else f"{x:5.2f}"  # noqa: E731
    return (f"{label:14s} {m['files']:3d} {m['hours']:5.2f} {m['truth_ruptures']:4d} {m['detected']:4d}  "
            f"{f(m['precision'])} {f(m['recall'])} {f(m['f1'])} {f(m['false_alarms_per_hour'])}  "
            f"{m['signal_loss_flagged']:2d}/{m['signal_loss_periods']:<2d}{extra}")


HEADER = "family         ses     h  rup  det      P     R    F1  FA/h  loss"


def score_preset(cache_dir: Path, config, window_s: float | None = None, jobs: int = 2) -> dict:
    """Score one configuration per family (no fitting); print a table; return ``{family: metrics, "pooled": ...}``."""
    from attune_monitor.evaluation import aggregate

    sets = load_sets(cache_dir)
    scores, secs = score_sets(sets, [config], _window(window_s), jobs)
    print(HEADER)
    out = {}
    for fam in sets:
        out[fam] = aggregate(scores[fam][0])
        print(_row(fam, out[fam]))
    out["pooled"] = aggregate([s for fam in sets for s in scores[fam][0]])
    print(_row("pooled", out["pooled"]))
    print(f"replay: {sum(secs) / len(secs):.2f} s per session ({len(secs)} sessions, {jobs} processes)")
    return out


def lofo(cache_dir: Path, base, grid: dict, max_fa: float = MAX_FALSE_ALARMS_PER_H, window_s: float | None = None,
         jobs: int = 2) -> dict:
    """Leave one family out: for each family F choose the grid point on the other families (best F1 with at most
    ``max_fa`` false alarms per hour), score it on F; print per family and the pooled LOFO scores.

    Returns
    -------
    result : dict
        ``{family: {"params":, "fit":, "held_out":, "fa_ok":}, "pooled": metrics over every held-out family}``.
    """
    from attune_monitor.evaluation import aggregate

    sets = load_sets(cache_dir)
    if len(sets) < 2:
        raise SystemExit(f"{cache_dir}: LOFO needs at least two families, but found {', '.join(sets)}.")
    points = grid_points(base, grid)
    scores, secs = score_sets(sets, [c for _, c in points], _window(window_s), jobs)
    print(f"{len(points)} grid points x {sum(len(v) for v in sets.values())} sessions; replay "
          f"{sum(secs) / len(secs):.2f} s per session for all points")
    print(HEADER + "   chosen on the other families (their F1, FA/h)")
    out, held = {}, []
    for fam in sets:
        others = [f for f in sets if f != fam]
        k, fit_m, ok = choose(scores, others, len(points), max_fa)
        m = aggregate(scores[fam][k])
        held.extend(scores[fam][k])
        out[fam] = {"params": points[k][0], "fit": fit_m, "held_out": m, "fa_ok": ok}
        note = "" if ok else f" (none <= {max_fa:g}/h: fewest false alarms)"
        print(_row(fam, m, f"   {json.dumps(points[k][0])} ({fit_m['f1'] or 0:.2f}, "
                               f"{fit_m['false_alarms_per_hour'] or 0:.2f}/h){note}"))
    out["pooled"] = aggregate(held)
    print(_row("pooled LOFO", out["pooled"]))
    return out


def _dump(path: str | None, result: dict) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=1, default=lambda o: None if isinstance(o, float)
                                         and math.isnan(o) else str(o)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="simulate N sessions per family into SETS/<family>/")
    mk.add_argument("sets", type=Path)
    mk.add_argument("--set", dest="split", choices=list(SET_BASE), default="heldout")
    mk.add_argument("-n", type=int, default=6, help="sessions per family (default 6)")
    mk.add_argument("--first", type=int, default=0, help="index of the first session within each family's range")
    mk.add_argument("--duration", type=float, default=None, help="seconds per session (default: drawn 600-900)")
    mk.add_argument("--families", default="all", help="comma-separated families (default all)")
    mk.add_argument("--no-randomise", dest="randomise", action="store_false")
    mk.add_argument("--lead-in", type=float, default=None, metavar="S",
                    help="first rupture 0-90 s after S seconds (default: 110-200 s into the session)")
    mk.add_argument("--jobs", type=int, default=2)
    ca = sub.add_parser("cache", help="analyse every session once (tune_detector's cache) into CACHE/<family>/")
    ca.add_argument("sets", type=Path)
    ca.add_argument("cache", type=Path)
    ca.add_argument("--window", type=float, default=None, help="synchrony window (default: the pipeline's)")
    ca.add_argument("--jobs", type=int, default=2)
    for name, text in (("score", "score a detector configuration per family (no fitting)"),
                       ("lofo", "leave-one-family-out: choose thresholds on the other families, score on each")):
        p = sub.add_parser(name, help=text)
        p.add_argument("cache", type=Path)
        p.add_argument("--preset", default="balanced", help="preset name (default balanced)")
        p.add_argument("--evidence", choices=("learned", "analytic"), default=None,
                       help="the preset with this evidence (default: the preset's own)")
        p.add_argument("--config-module", default=None, metavar="MODULE[:NAME]",
                       help="take the config from NAME (default CONFIG) in MODULE instead of the presets")
        p.add_argument("--override", default=None, metavar="JSON",
                       help="replace config fields, e.g. '{\"learned_h\": 12}'")
        p.add_argument("--window", type=float, default=None)
        p.add_argument("--jobs", type=int, default=2)
        p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
        if name == "lofo":
            p.add_argument("--grid", required=True, metavar="JSON",
                           help="fields to grid, e.g. '{\"learned_k\":[2.5,3,3.5],\"learned_h\":[7,10,14]}' "
                                "(analytic evidence: cusum_k, cusum_h)")
            p.add_argument("--max-fa", type=float, default=MAX_FALSE_ALARMS_PER_H,
                           help=f"false alarms per hour the chosen point may have on the fit families "
                                f"(default {MAX_FALSE_ALARMS_PER_H:g})")
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.jobs > 2:
        print(f"note: --jobs {args.jobs} (this machine is shared: 2 at most is polite)", file=sys.stderr)
    t0 = time.time()
    try:
        if args.cmd == "make":
            fams = make_eval_set.parse_families(args.families)
            make(args.sets, args.split, args.n, fams, args.duration, args.first, args.jobs, args.randomise,
                 args.lead_in)
        elif args.cmd == "cache":
            cache(args.sets, args.cache, args.jobs, args.window)
        else:
            cfg = base_config(args.preset, args.evidence, args.config_module,
                              json.loads(args.override) if args.override else None)
            if args.cmd == "score":
                _dump(args.json, score_preset(args.cache, cfg, args.window, args.jobs))
            else:
                _dump(args.json, lofo(args.cache, cfg, json.loads(args.grid), args.max_fa, args.window, args.jobs))
    except (ValueError, json.JSONDecodeError) as exc:
        raise SystemExit(f"families.py {args.cmd}: error: {exc}") from None
    print(f"{args.cmd}: {time.time() - t0:.0f} s wall clock", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
