"""Scale benchmark (issue 21): large groups live, many recordings in a batch.

Two measurements, each printed as one JSON object on the last line (``--json PATH`` also writes it):

``ticks``
    The live tick of ``attune monitor --headless`` for 8, 16, 32 and 64 people: what the runner's worker does
    once per tick after polling its source (:meth:`attune_monitor.ui.runner.Runner.step`): the new samples
    pushed into the :class:`~attune_monitor.dsp.pipeline.SessionPipeline` (heart rate at 1 Hz and skin
    conductance at 4 Hz per person: a shared slow component plus each person's own random walk and noise),
    ``advance`` (preprocessing, the synchrony engine with every metric the pipeline asks for, arousal
    divergence, the rupture detector), and the Qt-free :class:`~attune_monitor.ui.model.SessionModel`
    taking the update with the detector's pair states and person ties. One grid sample (0.25 s of session)
    per tick, as a live session at 1x with the runner's 50-ms tick produces them: a synchrony window
    completes every 4th tick, lead-lag windows every 20th, the phasic chance level every 40th. Ticks of the
    first ``--warmup-s`` seconds of session (the engine's surrogate history of 120 s filling) are left out.
    The ticks run with the session's heap frozen out of the garbage collector's scans, as the headless
    monitor runs them (:func:`attune_monitor.ui.runner.session_heap_frozen`).
    Reported per group size: p50 / p99 / max wall ms and the p99 of this thread's CPU time
    (``tick_ms_p99_{n}p``, ``tick_ms_p99_{n}p_cpu_time``, ...), with the load average before and after.

``snapshot``
    What a view pays per redraw for ``--snapshot-groups`` people (default 64): the session of ``ticks`` run for
    ``--seconds``, and after each tick past ``--warmup-s`` the view model's ``snapshot(30)`` (what the terminal view
    takes per redraw) timed twice in this thread's CPU time: the first after the tick, and again (a redraw with
    nothing new). Reported: the median and max of the first snapshot after a tick that brought a synchrony window
    (``snapshot_ms_window_{n}p``, ``snapshot_ms_window_max_{n}p``), of the first after the other ticks
    (``snapshot_ms_tick_{n}p``) and of the repeats (``snapshot_ms_again_{n}p``), with the load average.

``throughput``
    ``attune analyze`` over ``--dyads`` one-hour dyad recordings (XDF, RR + EDA per person, written by the
    simulator's offline writer, ``attune_monitor.acquisition.simulator.write_xdf``, into ``--cache DIR``
    once; a later run reuses the files) with ``--jobs 1`` and ``--jobs 2`` (and ``--dask 1`` / ``--dask 2``
    when ``attune analyze`` has that option): recording-hours analysed per wall second
    (``throughput_rec_h_per_s_1worker`` / ``_2workers``), each a subprocess as a user runs it, the load
    average noted before and after each.

Usage::

    python bench/bench_scale.py ticks                       # 8/16/32/64 people, ~3 min
    python bench/bench_scale.py snapshot --seconds 220      # 64 people, ~1 min
    python bench/bench_scale.py throughput --cache /tmp/attune-dyads   # first run writes 100 files (~6 min)
    python bench/bench_scale.py all --cache /tmp/attune-dyads
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_analyze import SCENARIO  # the 60-minute dyad (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS = (8, 16, 32, 64)
FS = 4.0


def load() -> float:
    """The 1-minute load average (2 cores here: above ~1.5 other work competes with the measurement)."""
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------------------------- ticks
def _group_signals(n_people: int, seconds: float, rng):
    """Heart rate (1 Hz) and skin conductance (4 Hz) of ``n_people``: a shared slow component (the group
    moving together, so pairs arm and the detector works) plus each person's own walk and noise.

    Returns
    -------
    t_hr : ndarray, shape (n_hr,); hr : ndarray, shape (n_people, n_hr)
    t_eda : ndarray, shape (n_eda,); eda : ndarray, shape (n_people, n_eda)
    """
    def walks(n, fs, scale):
        shared = np.cumsum(rng.standard_normal(n)) * scale / np.sqrt(fs)
        own = np.cumsum(rng.standard_normal((n_people, n)), 1) * 0.5 * scale / np.sqrt(fs)
        return shared + own + 0.1 * scale * rng.standard_normal((n_people, n))

    n_hr, n_eda = int(seconds), int(seconds * 4)
    hr = 70 + 5 * np.tanh(walks(n_hr, 1.0, 1.0) / 5)
    eda = 5 + np.abs(walks(n_eda, 4.0, 0.02))
    return np.arange(n_hr) + 0.5, hr, np.arange(n_eda) / 4 + 0.125, eda


def group_session(n_people: int, seconds: float, seed: int = 1):
    """The ticks' session: a pipeline and a view model for ``n_people`` (heart rate 1 Hz, skin conductance 4 Hz
    each), and their signals for ``seconds`` (+10 s): ``(pipe, model, (t_hr, hr, t_eda, eda))``."""
    from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot
    from attune_monitor.ui.model import SessionModel

    rng = np.random.default_rng(seed)
    people = [f"P{k + 1}" for k in range(n_people)]
    slots = [Slot(p, "hr", 1.0, f"{p}-hr") for p in people] + [Slot(p, "eda", 4.0, f"{p}-eda") for p in people]
    cfg = PipelineConfig()
    pipe = SessionPipeline(slots, 0.0, cfg)
    model = SessionModel(pipe.participants, pipe.modalities, pipe.pairs, cfg.fs, cfg.step_s, cfg.history_s,
                         preset=cfg.preset)
    return pipe, model, _group_signals(n_people, seconds + 10, rng)


def pipeline_ticks(n_people: int, seconds: float = 300.0, warmup_s: float = 150.0, seed: int = 1) -> dict:
    """Wall and CPU ms per live tick of the headless monitor's worker for ``n_people`` (see the module notes).

    Returns
    -------
    dict with ``p50``, ``p99``, ``max``, ``cpu_p99`` (ms), ``n_ticks`` and ``advance_p99`` (the pipeline's
    ``advance`` alone).
    """
    from attune_monitor.ui.runner import session_heap_frozen

    pipe, model, (t_hr, hr, t_eda, eda) = group_session(n_people, seconds, seed)
    walls, cpus, adv = [], [], []
    with session_heap_frozen():  # as `attune monitor --headless` runs its session (ui.headless.run_headless)
        _ticks(pipe, model, n_people, seconds, warmup_s, t_hr, hr, t_eda, eda, walls, cpus, adv)
    w, c, a = (np.asarray(v) * 1e3 for v in (walls, cpus, adv))
    return {"p50": float(np.median(w)), "p99": float(np.percentile(w, 99)), "max": float(w.max()),
            "cpu_p99": float(np.percentile(c, 99)), "advance_p99": float(np.percentile(a, 99)), "n_ticks": len(w)}


def push_until(pipe, n_people: int, signals: tuple, cursor: tuple[int, int], until: float) -> tuple[int, int]:
    """Push every person's heart-rate and skin samples stamped after ``cursor`` and up to ``until`` s.

    ``signals`` is :func:`group_session`'s ``(t_hr, hr, t_eda, eda)``; ``cursor`` the (heart, skin) sample indices
    pushed so far. Returns the new cursor.
    """
    t_hr, hr, t_eda, eda = signals
    i_hr, i_eda = cursor
    j_hr, j_eda = np.searchsorted(t_hr, until, "right"), np.searchsorted(t_eda, until, "right")
    for p in range(n_people):
        if j_hr > i_hr:
            pipe.push(p, t_hr[i_hr:j_hr], hr[p, i_hr:j_hr])
        if j_eda > i_eda:
            pipe.push(n_people + p, t_eda[i_eda:j_eda], eda[p, i_eda:j_eda])
    return int(j_hr), int(j_eda)


def _ticks(pipe, model, n_people, seconds, warmup_s, t_hr, hr, t_eda, eda, walls, cpus, adv) -> None:
    """The ticks of :func:`pipeline_ticks`, appending wall, CPU and advance seconds of those after warm-up."""
    cursor = (0, 0)
    for k in range(1, int(seconds * FS) + 1):
        until = k / FS
        c0, w0 = time.thread_time(), time.perf_counter()
        cursor = push_until(pipe, n_people, (t_hr, hr, t_eda, eda), cursor, until)
        a0 = time.perf_counter()
        upd = pipe.advance(until)
        a1 = time.perf_counter()
        model.apply(upd, pipe.detector.pair_table(), {}, ties=pipe.detector.person_ties)
        w1, c1 = time.perf_counter(), time.thread_time()
        if until > warmup_s:
            walls.append(w1 - w0)
            cpus.append(c1 - c0)
            adv.append(a1 - a0)


def run_ticks(args) -> dict:
    out = {"tick_bench": "headless worker tick (pipeline advance + model), 1 grid sample per tick",
           "tick_groups": list(args.groups)}
    if getattr(args, "no_stagger", False):
        from attune_monitor.dsp.pipeline import SessionPipeline

        SessionPipeline.stagger_min_people = None
        out["tick_stagger"] = False
    for n in args.groups:
        l0 = load()
        r = pipeline_ticks(n, args.seconds, args.warmup_s)
        l1 = load()
        print(f"{n:3d} people ({n * (n - 1) // 2:4d} pairs): tick p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
              f"max {r['max']:.1f} ms, CPU p99 {r['cpu_p99']:.2f} ms, advance p99 {r['advance_p99']:.2f} ms "
              f"({r['n_ticks']} ticks; load {l0} -> {l1})", flush=True)
        out[f"tick_ms_p50_{n}p"] = round(r["p50"], 3)
        out[f"tick_ms_p99_{n}p"] = round(r["p99"], 3)
        out[f"tick_ms_max_{n}p"] = round(r["max"], 2)
        out[f"tick_ms_p99_{n}p_cpu_time"] = round(r["cpu_p99"], 3)
        out[f"advance_ms_p99_{n}p"] = round(r["advance_p99"], 3)
        out[f"load_avg_1min_ticks_{n}p"] = [l0, l1]
    return out


def snapshot_costs(n_people: int, seconds: float = 220.0, warmup_s: float = 150.0, seed: int = 1) -> dict:
    """CPU ms of the view model's ``snapshot(30)`` after each tick past ``warmup_s`` (see the module notes).

    Returns
    -------
    dict with ``window``, ``tick``, ``again`` (ndarray of ms each) and ``n_ticks``.
    """
    from attune_monitor.ui.runner import session_heap_frozen

    pipe, model, signals = group_session(n_people, seconds, seed)
    window, tick, again = [], [], []
    cursor = (0, 0)
    with session_heap_frozen():
        for k in range(1, int(seconds * FS) + 1):
            until = k / FS
            cursor = push_until(pipe, n_people, signals, cursor, until)
            upd = pipe.advance(until)
            model.apply(upd, pipe.detector.pair_table(), {}, ties=pipe.detector.person_ties)
            if until <= warmup_s:
                continue
            c0 = time.thread_time()
            model.snapshot(30.0)
            c1 = time.thread_time()
            model.snapshot(30.0)
            c2 = time.thread_time()
            (window if any(w["t"].size for w in upd.windows.values()) else tick).append(c1 - c0)
            again.append(c2 - c1)
    return {"window": np.asarray(window) * 1e3, "tick": np.asarray(tick) * 1e3, "again": np.asarray(again) * 1e3,
            "n_ticks": len(again)}


def run_snapshot(args) -> dict:
    out: dict = {"snapshot_bench": "SessionModel.snapshot(30) CPU ms after each live tick, and again"}
    for n in args.snapshot_groups:
        l0 = load()
        r = snapshot_costs(n, args.seconds, args.warmup_s)
        l1 = load()
        w, t, a = r["window"], r["tick"], r["again"]
        print(f"{n:3d} people: snapshot(30) after a window median {np.median(w):.2f} ms (max {w.max():.2f}), "
              f"after another tick {np.median(t):.2f} ms, again {np.median(a):.2f} ms ({r['n_ticks']} ticks; "
              f"load {l0} -> {l1})", flush=True)
        out[f"snapshot_ms_window_{n}p"] = round(float(np.median(w)), 3)
        out[f"snapshot_ms_window_max_{n}p"] = round(float(w.max()), 3)
        out[f"snapshot_ms_tick_{n}p"] = round(float(np.median(t)), 3)
        out[f"snapshot_ms_again_{n}p"] = round(float(np.median(a)), 3)
        out[f"load_avg_1min_snapshot_{n}p"] = [l0, l1]
    return out


# ----------------------------------------------------------------------------------------------- throughput
#: The one-hour dyad of the throughput run (the 60-minute dyad of bench/bench_analyze.py: Polar H10 RR and E4 EDA
#: per person, two scripted ruptures); each file has its own seed.
DYAD_SCENARIO = SCENARIO.format(duration=3600.0, ecg="false")


def dyad_cache(folder: Path, n: int) -> list[Path]:
    """``n`` one-hour dyad XDFs in ``folder`` (``dyad-001.xdf`` ...), written once by the simulator's offline
    writer (no LSL, no real time); files already there (complete: written to a temporary name, then renamed)
    are reused."""
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import XDF_TIME_ORIGIN, write_session_xdf

    folder.mkdir(parents=True, exist_ok=True)
    toml = folder / "scale-dyad.toml"
    if not toml.exists() or toml.read_text() != DYAD_SCENARIO:
        toml.write_text(DYAD_SCENARIO)
    scenario = None
    paths = []
    t0, made = time.perf_counter(), 0
    for k in range(1, n + 1):
        path = folder / f"dyad-{k:03d}.xdf"
        if not path.exists():
            scenario = scenario or load_scenario(toml)
            tmp = path.with_suffix(".xdf.part")
            write_session_xdf(simulate_session(scenario, 1000 + k), tmp, time_origin=XDF_TIME_ORIGIN)
            tmp.replace(path)
            made += 1
        paths.append(path)
    if made:
        print(f"wrote {made} one-hour dyads into {folder} in {time.perf_counter() - t0:.0f} s", flush=True)
    return paths


def _analyze_has(option: str) -> bool:
    """``attune analyze`` knows ``option`` (e.g. ``--dask``, added by another part of issue 21)."""
    from attune_monitor.ui.commands import analyze

    return option in Path(analyze.__file__).read_text()


def run_throughput(args) -> dict:
    if args.cache is None:
        raise SystemExit("throughput needs --cache DIR: the folder for the one-hour dyads (written once, ~0.5 GB "
                         "free space for 100 files; e.g. --cache /tmp/attune-dyads)")
    paths = dyad_cache(args.cache, args.dyads)
    rec_h = len(paths) * 1.0  # one hour each
    out = {"throughput_files": len(paths), "throughput_recording_hours": rec_h}
    modes = [("jobs", 1), ("jobs", 2)]
    if not args.no_dask and _analyze_has('"--dask"'):
        modes += [("dask", 1), ("dask", 2)]
    env = dict(os.environ, LSLAPICFG=str(ROOT / "acquisition" / "lsl_api.cfg"))
    for mode, n in modes:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "attune_monitor.ui.cli", "analyze", *map(str, paths), f"--{mode}", str(n),
                   "--json", str(Path(tmp) / "{stem}.json")]
            l0 = load()
            t0 = time.perf_counter()
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            l1 = load()
            n_json = len(list(Path(tmp).glob("*.json")))
        if res.returncode != 0 or n_json != len(paths):
            print(f"--{mode} {n}: exit {res.returncode}, {n_json} of {len(paths)} results: "
                  f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}", flush=True)
            out[f"throughput_{mode}{n}_error"] = (res.stderr or res.stdout).strip()[-300:]
            continue
        rate = rec_h / wall
        workers = "1worker" if n == 1 else f"{n}workers"
        key = f"throughput_rec_h_per_s_{workers}" + ("" if mode == "jobs" else "_dask")
        print(f"attune analyze --{mode} {n}: {len(paths)} one-hour dyads in {wall:.1f} s = {rate:.2f} recording-hours "
              f"per second (load {l0} -> {l1})", flush=True)
        out[key] = round(rate, 3)
        out[f"throughput_wall_s_{mode}{n}"] = round(wall, 1)
        out[f"load_avg_1min_throughput_{mode}{n}"] = [l0, l1]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("ticks", "snapshot", "throughput", "all"))
    ap.add_argument("--groups", type=int, nargs="+", default=list(GROUPS), help="group sizes for 'ticks'")
    ap.add_argument("--snapshot-groups", type=int, nargs="+", default=[64], help="group sizes for 'snapshot'")
    ap.add_argument("--seconds", type=float, default=300.0,
                    help="session seconds per group size for 'ticks' and 'snapshot'")
    ap.add_argument("--warmup-s", type=float, default=150.0, help="session seconds left out at the start")
    ap.add_argument("--cache", type=Path, help="folder for the throughput run's dyad XDFs (written once, reused)")
    ap.add_argument("--dyads", type=int, default=100, help="one-hour dyads for 'throughput' (default 100)")
    ap.add_argument("--no-dask", action="store_true", help="measure only --jobs 1 / 2, even when --dask exists")
    ap.add_argument("--no-stagger", action="store_true",
                    help="'ticks': the detector's part of a window on the window's own tick (SessionPipeline."
                         "stagger_min_people None), for before/after figures on one commit")
    ap.add_argument("--json", type=Path, help="also write the JSON object here")
    args = ap.parse_args(argv)
    res = {}
    if args.what in ("ticks", "all"):
        res.update(run_ticks(args))
    if args.what in ("snapshot", "all"):
        res.update(run_snapshot(args))
    if args.what in ("throughput", "all"):
        res.update(run_throughput(args))
    print(json.dumps(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
