"""Soak benchmark (`make bench`; issues 18 and 21): a live monitor recording hours of a simulated group.

Runs, as subprocesses with ``LSLAPICFG=acquisition/lsl_api.cfg`` (LSL on loopback):

* ``attune simulate --scenario group-withdrawal --participants N --duration H*3600 --speed X
  --source-prefix soak-<random> --truth truth.json`` (4 people: 9 streams, RR / HR / EDA at 4-32 Hz);
* ``attune monitor --headless --record soak.xdf --match 'soak-<random>*' --tick-log ticks.jsonl`` against it
  (the unique prefix keeps other LSL streams on the machine out of the session; ``--tick-log`` is the monitor's
  hidden probe, :class:`attune_monitor.ui.runner.TickLog`: every worker tick's wall duration, per 5-s interval, with the
  session time).

While they run, every ``--sample-s`` seconds: the monitor's resident memory (RSS) and CPU (psutil; 100 % = one
core) and the 1-minute load average. Samples are placed in *simulated* time by the tick log's session times
(``time.monotonic`` is one clock for every process on Linux). When the simulator has published everything the
monitor gets SIGINT (Ctrl-C: it closes the recording), and the recording is checked against the simulator's own
data, regenerated from the same seed (the simulator is deterministic): every stream present, each one's samples
between its first and last recorded timestamp all there (counts and values equal), no gap longer than
``--tolerance-s`` wall seconds (x speed in simulated time), and each starting and ending within that tolerance of
the session's start and end (the monitor opens its streams one after another: at 32x the last one starts some
100-200 simulated seconds after the first).

Reported (printed as one JSON object, last line; also written to ``--json PATH``):

* ``simulated_hours`` (the monitor's session time when the simulator ended), ``wall_s``;
* ``rss_mb_start`` (first sample once the monitor is monitoring) / ``rss_mb_end`` / ``rss_mb_max``;
* ``rss_slope_mb_per_sim_hour`` (also ``rss_slope_mb_per_h``): least-squares slope of RSS over simulated hours,
  samples after the first 5 %;
  ``rss_mb_by_sim_hour``: the mean RSS of each simulated hour (a leak climbs on; buffers filling level off);
  ``rss_slope_mb_per_wall_h``: the same samples against wall time (what grows with rescans and ticks, not with
  data, shows here at its 1x size); ``rss_slope_mb_per_h_after_1h``: the slope over the samples after the first
  simulated hour (the start-up climb, ~0.15 simulated h at 32x, can outlast the first 5 % and tilt the slope of a
  short run); ``rss_mb_samples``: every sample as ``[simulated h, MB]``;
* ``heap_in_use_slope_mb_per_wall_h`` / ``heap_in_use_slope_mb_per_sim_hour`` and ``heap_in_use_mb_by_sim_hour``,
  ``heap_free_mb_by_sim_hour``, ``py_blocks_slope_per_wall_h``: the same from inside the monitor, from the tick
  log's lines (:func:`attune_monitor.ui.runner.process_memory`, every 5 s; after the first 5 %): what malloc has
  handed out and not had back, the free space its arenas keep, and the Python allocator's blocks. The resident
  set hides growth while the heap's free space is being reused; the heap's in-use bytes do not (null where the
  monitor's C library has no ``mallinfo2``);
* ``cpu_pct_first_hour`` / ``cpu_pct_last_hour``: the monitor's mean CPU in the first and last simulated hour;
* ``tick_ms_first_hour`` / ``tick_ms_last_hour``: p50 / p99 / max / count of the worker's tick durations in the
  first and last simulated hour (ticks are 50 ms apart in wall time; each processes ``speed`` x 50 ms of session);
* ``recording``: size, whether :func:`attune_monitor.acquisition.files.load_recording` loads it, streams found vs
published,
  per stream samples recorded vs published in its span, largest gap, and ``spans_whole_session``;
* ``load_avg_mean``: the machine's load during the run (2 cores here; other work inflates CPU and ticks).

Samples and ticks after the simulator ended (idle ticks, closing the recording) are left out. With fewer than 2
simulated hours the first and last hour overlap (said in ``notes``).

Usage::

    python bench/bench_soak.py                       # 8 simulated hours at 32x: ~15 min
    python bench/bench_soak.py --hours 2 --json soak.json
    python bench/bench_soak.py --hours 4 --no-record # the monitor alone, without --record (recording = null)

The slope is per *simulated* hour: memory the monitor takes per *wall* second (rescans, ticks) shows ``speed``
times smaller than in a session at 1x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SCENARIO = "group-withdrawal"
SEED = 3


def positive(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, but got {text!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, but got {text!r}")
    return v


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=positive, default=8.0, help="simulated hours (default 8)")
    ap.add_argument("--people", type=int, default=4, help="participants, 2-16 (default 4)")
    ap.add_argument("--speed", type=positive, default=32.0, help="simulator speed-up (default 32)")
    ap.add_argument("--sample-s", type=positive, default=2.0, help="wall seconds between RSS/CPU samples (default 2)")
    ap.add_argument("--tolerance-s", type=positive, default=10.0,
                    help="wall seconds a stream may start late, end early or pause (default 10; x speed in "
                         "simulated time: 320 s at 32x)")
    ap.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    ap.add_argument("--keep", action="store_true", help="keep the working folder (recording, tick log, outputs)")
    ap.add_argument("--no-record", dest="record", action="store_false",
                    help="run the monitor without --record (memory and ticks of the monitor alone; no recording "
                         "to check)")
    args = ap.parse_args(argv)
    if not 2 <= args.people <= 16:
        ap.error(f"argument --people: expected 2..16 participants (synchrony needs 2), but got {args.people}")
    return args


def lsl_env() -> dict:
    env = dict(os.environ)
    env["LSLAPICFG"] = str(ROOT / "acquisition" / "lsl_api.cfg")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("DISPLAY", None)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def read_tick_log(path: Path) -> list:
    """The tick log's lines so far (a half-written last line is skipped)."""
    out = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def session_time(mono: np.ndarray, ticks: list, start_mono: float, speed: float) -> np.ndarray:
    """Simulated session seconds at monotonic times ``mono``, shape like ``mono``: interpolated between the
    tick log's (monotonic, session_s) points, from (monitoring start, 0); past the last point at ``speed``."""
    xs = np.array([start_mono] + [t["monotonic"] for t in ticks])
    ys = np.array([0.0] + [t["session_s"] for t in ticks])
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], np.maximum.accumulate(ys[order])
    s = np.interp(mono, xs, ys)
    after = mono > xs[-1]
    s[after] = ys[-1] + (mono[after] - xs[-1]) * speed
    return s


def tick_stats(ticks: list, lo: float, hi: float) -> dict:
    """p50 / p99 / max (ms) and count of the ticks of the lines whose interval's middle is in [lo, hi] session s."""
    durs = []
    prev = 0.0
    for t in ticks:
        mid = 0.5 * (prev + t["session_s"])
        prev = t["session_s"]
        if lo <= mid <= hi:
            durs.extend(t["ticks_ms"])
    if not durs:
        return {"n": 0}
    d = np.asarray(durs)
    p50, p99 = np.percentile(d, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2), "max": round(float(d.max()), 2), "n": int(d.size)}


def check_recording(path: Path, truth_path: Path, people: int, hours: float, tolerance_s: float) -> dict:
    """Load the recording with Attune's reader and compare it with the simulator's data (same seed)."""
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario

    out = {"path": str(path), "bytes": path.stat().st_size if path.exists() else 0}
    out["mb"] = round(out["bytes"] / 1e6, 2)
    try:
        rec = load_recording(path)
    except Exception as exc:  # noqa: BLE001 - the report says what failed
        out.update(loads=False, error=f"{type(exc).__name__}: {exc}")
        return out
    out.update(loads=True, problems=list(rec.problems), notes=list(rec.notes))
    origin = json.loads(truth_path.read_text())["time_origin"]
    scenario = load_scenario(SCENARIO)
    if people != len(scenario.participants):
        scenario = scenario.with_participants(people)
    sim = simulate_session(scenario, SEED, hours * 3600.0, source_prefix="x")
    published = {(s.participant, s.type): s for s in sim.streams}
    recorded = {}
    for s in rec.physio_streams():
        name = s.descriptor.name
        match = [k for k, p in published.items() if p.name == name]
        if match:
            recorded[match[0]] = s
    out["streams_published"] = len(published)
    out["streams_recorded"] = len(recorded)
    if not recorded:
        out.update(spans_whole_session=False, complete=False)
        return out
    start = min(float(s.timestamps[0]) for s in recorded.values())
    end = max(float(s.timestamps[-1]) for s in recorded.values())
    out["session_span_h"] = round((end - start) / 3600.0, 3)
    per = []
    spans = complete = len(recorded) == len(published)
    for key, s in sorted(recorded.items()):
        p = published[key]
        ts = np.asarray(s.timestamps, float)
        pts = p.timestamps + origin
        # the reader's clock-offset correction moves stamps by well under a millisecond: 5 ms (< a sample) slack
        sel = (pts >= ts[0] - 5e-3) & (pts <= ts[-1] + 5e-3)
        pv = np.asarray(p.values, float).reshape(len(pts), -1)[sel]
        rv = np.asarray(s.values, float).reshape(len(ts), -1)
        same_values = rv.shape == pv.shape and bool(np.allclose(rv, pv, rtol=1e-6, atol=1e-6, equal_nan=True))
        gap = float(np.max(np.diff(ts))) if ts.size > 1 else float("inf")
        row = {"stream": s.descriptor.name, "recorded": int(ts.size), "published_in_span": int(sel.sum()),
               "values_equal": same_values, "late_start_s": round(float(ts[0] - start), 2),
               "early_end_s": round(float(end - ts[-1]), 2), "max_gap_s": round(gap, 2)}
        per.append(row)
        complete = complete and row["recorded"] == row["published_in_span"] and same_values
        spans = spans and row["late_start_s"] <= tolerance_s and row["early_end_s"] <= tolerance_s \
            and row["max_gap_s"] <= tolerance_s
    out.update(spans_whole_session=spans, complete=complete, tolerance_sim_s=tolerance_s, per_stream=per)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="attune-soak-"))
    prefix = f"soak-{uuid.uuid4().hex[:10]}"
    duration_s = args.hours * 3600.0
    env = lsl_env()
    cli = [sys.executable, "-m", "attune_monitor.ui.cli"]
    sim_cmd = cli + ["simulate", "--scenario", SCENARIO, "--participants", str(args.people), "--duration",
                     f"{duration_s:g}", "--speed", f"{args.speed:g}", "--seed", str(SEED), "--source-prefix", prefix,
                     "--truth", str(work / "truth.json")]
    mon_cmd = cli + ["monitor", "--headless", *(["--record", str(work / "soak.xdf")] if args.record else []),
                     "--match", f"{prefix}*", "--wait", "60", "--tick-log", str(work / "ticks.jsonl")]
    print(f"soak: {args.hours:g} simulated h x {args.people} people at {args.speed:g}x "
          f"(~{duration_s / args.speed / 60:.1f} min wall); working folder {work}", file=sys.stderr)
    sim = mon = None
    sim_out = open(work / "simulate.out", "w")
    mon_out, mon_err = open(work / "monitor.out", "w"), open(work / "monitor.err", "w")
    samples = []  # (monotonic, rss MB, cpu %, load)
    t_wall0 = time.monotonic()
    mon_start = sim_end = None
    try:
        sim = subprocess.Popen(sim_cmd, stdout=sim_out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while "publishing at" not in (work / "simulate.out").read_text():
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench_soak: the simulator did not start: "
                                 f"{(work / 'simulate.out').read_text()[-500:]}")
            time.sleep(0.2)
        mon = subprocess.Popen(mon_cmd, stdout=mon_out, stderr=mon_err, env=env, cwd=work)
        proc = psutil.Process(mon.pid)
        proc.cpu_percent(None)
        while True:
            time.sleep(args.sample_s)
            if mon.poll() is not None:
                raise SystemExit(f"bench_soak: the monitor exited early ({mon.returncode}): "
                                 f"{(work / 'monitor.err').read_text()[-1500:]}")
            now = time.monotonic()
            try:
                rss = proc.memory_info().rss / 1e6
                cpu = proc.cpu_percent(None)
            except psutil.Error:
                break
            if mon_start is None and "monitoring " in (work / "monitor.err").read_text():
                mon_start = now
            if mon_start is not None:
                samples.append((now, rss, cpu, os.getloadavg()[0]))
            if sim_end is None and sim.poll() is not None:
                sim_end = now
            if sim_end is not None and now - sim_end > 3.0:  # the last chunks drained
                break
        mon.send_signal(signal.SIGINT)
        mon_rc = mon.wait(120)
    finally:
        for p in (mon, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        for f in (sim_out, mon_out, mon_err):
            f.close()
    wall_s = time.monotonic() - t_wall0
    # what the monitor did once the simulator had ended (idle ticks, the recording's close) is not the soak
    ticks = [t for t in read_tick_log(work / "ticks.jsonl") if t["monotonic"] <= sim_end + 1.0]
    samples = [s for s in samples if s[0] <= sim_end]
    if not ticks or not samples:
        raise SystemExit(f"bench_soak: no tick log or no samples; see {work}")
    mono = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    cpu = np.array([s[2] for s in samples])
    load = np.array([s[3] for s in samples])
    sess = session_time(mono, ticks, mon_start, args.speed)
    total_s = float(ticks[-1]["session_s"])
    first = (0.0, min(3600.0, total_s))
    last = (max(0.0, total_s - 3600.0), total_s)
    late = sess >= 0.05 * total_s
    slope = float(np.polyfit(sess[late] / 3600.0, rss[late], 1)[0]) if late.sum() >= 3 else float("nan")
    wall_slope = float(np.polyfit(mono[late] / 3600.0, rss[late], 1)[0]) if late.sum() >= 3 else float("nan")
    settled = sess >= 3600.0  # start-up (imports, the first windows' buffers) is over well within the first hour
    slope_1h = float(np.polyfit(sess[settled] / 3600.0, rss[settled], 1)[0]) if settled.sum() >= 3 else float("nan")

    heap = [t for t in ticks if "heap_in_use_mb" in t]
    heap_report: dict = {"heap_in_use_slope_mb_per_wall_h": None, "heap_in_use_slope_mb_per_sim_hour": None,
                         "heap_in_use_mb_by_sim_hour": None, "heap_free_mb_by_sim_hour": None,
                         "py_blocks_slope_per_wall_h": None}
    if len(heap) >= 3:
        h_sess = np.array([t["session_s"] for t in heap])
        h_mono = np.array([t["monotonic"] for t in heap])
        in_use = np.array([t["heap_in_use_mb"] for t in heap])
        free = np.array([t["heap_free_mb"] for t in heap])
        blocks = np.array([t["py_blocks"] for t in heap], dtype=float)
        h_late = h_sess >= 0.05 * total_s
        if h_late.sum() >= 3:
            heap_report["heap_in_use_slope_mb_per_wall_h"] = round(float(
                np.polyfit(h_mono[h_late] / 3600.0, in_use[h_late], 1)[0]), 2)
            heap_report["heap_in_use_slope_mb_per_sim_hour"] = round(float(
                np.polyfit(h_sess[h_late] / 3600.0, in_use[h_late], 1)[0]), 3)
            heap_report["py_blocks_slope_per_wall_h"] = round(float(
                np.polyfit(h_mono[h_late] / 3600.0, blocks[h_late], 1)[0]))

        def heap_mean(x, lo, hi):
            m = (h_sess >= lo) & (h_sess <= hi)
            return round(float(x[m].mean()), 1) if m.any() else None

        hours = range(int(np.ceil(total_s / 3600.0)))
        heap_report["heap_in_use_mb_by_sim_hour"] = [heap_mean(in_use, h * 3600.0, (h + 1) * 3600.0) for h in hours]
        heap_report["heap_free_mb_by_sim_hour"] = [heap_mean(free, h * 3600.0, (h + 1) * 3600.0) for h in hours]

    def mean_in(x, lo, hi):
        m = (sess >= lo) & (sess <= hi)
        return round(float(x[m].mean()), 1) if m.any() else None

    report = {
        "command": " ".join(["python", "bench/bench_soak.py", "--hours", f"{args.hours:g}", "--people",
                             str(args.people), "--speed", f"{args.speed:g}",
                             *([] if args.record else ["--no-record"])]),
        "scenario": SCENARIO, "people": args.people, "speed": args.speed,
        "simulated_hours": round(total_s / 3600.0, 3), "wall_s": round(wall_s, 1),
        "rss_mb_start": round(float(rss[0]), 1), "rss_mb_end": round(float(rss[-1]), 1),
        "rss_mb_max": round(float(rss.max()), 1), "rss_slope_mb_per_sim_hour": round(slope, 3),
        "rss_slope_mb_per_h": round(slope, 3),  # issue 21's name for the same slope
        "rss_slope_mb_per_wall_h": round(wall_slope, 2),
        "rss_slope_mb_per_h_after_1h": round(slope_1h, 3),
        "rss_mb_samples": [[round(float(h), 4), round(float(m), 2)] for h, m in zip(sess / 3600.0, rss)],
        "rss_mb_by_sim_hour": [mean_in(rss, h * 3600.0, min((h + 1) * 3600.0, total_s))
                               for h in range(int(np.ceil(total_s / 3600.0)))],
        **heap_report,
        "cpu_pct_first_hour": mean_in(cpu, *first), "cpu_pct_last_hour": mean_in(cpu, *last),
        "tick_ms_first_hour": tick_stats(ticks, *first), "tick_ms_last_hour": tick_stats(ticks, *last),
        "ticks_dropped": int(sum(t["dropped"] for t in ticks)),
        "load_avg_mean": round(float(load.mean()), 2), "samples": int(len(samples)),
        "monitor_exit": mon_rc,
        "recording": (check_recording(work / "soak.xdf", work / "truth.json", args.people, args.hours,
                                      args.tolerance_s * args.speed) if args.record else None),
        "notes": [],
    }
    errors = (work / "monitor.out").read_text().count("Processing error")
    report["monitor_processing_errors"] = errors
    if total_s < 7200.0:
        report["notes"].append(f"{total_s / 3600.0:.2f} simulated hours: the first and last hour overlap by "
                               f"{min(3600.0, 7200.0 - total_s):.0f} s")
    if args.keep:
        report["working_folder"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(text)
    r = report["recording"]
    ok = (r is None or (r.get("loads") and r.get("spans_whole_session") and r.get("complete"))) and not errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
