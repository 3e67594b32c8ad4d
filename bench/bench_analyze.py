"""Cost of ``attune analyze`` relative to reading the file with pyxdf.

Simulates a 60-minute dyad (Polar H10 RR + E4 EDA each; ``--ecg`` adds the
130 Hz ECG streams a Polar H10 also sends), writes it as XDF, and times

* ``pyxdf.load_xdf`` alone (the reference),
* ``attune analyze`` in-process: load + the causal pipeline + JSON
  (:func:`attune_monitor.ui.commands.analyze.analyze_file`),
* the pipeline alone (:func:`attune_monitor.analysis.analyze_recording` on a loaded recording),

best of ``--repeat`` runs each, and prints the ratio analyse / load (target <= 3).
``--profile`` prints where the pipeline's time goes (cProfile, by cumulative
and by own time).

Usage::

    python bench/bench_analyze.py [--minutes 60] [--ecg] [--repeat 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIO = """
name = "bench-dyad"
description = "60-minute dyad for the analyze benchmark"
duration_s = {duration}
coupling = 0.7

[[participants]]
id = "P1"
heart = "rr"
eda = "e4"
ecg = {ecg}
hr_bpm = 66
eda_us = 3.0

[[participants]]
id = "P2"
heart = "rr"
eda = "e4"
ecg = {ecg}
hr_bpm = 74
eda_us = 5.0

[[ruptures]]
onset_s = 900
duration_s = 60
who = "P2"

[[ruptures]]
onset_s = 2400
duration_s = 45
who = "P1"
style = "withdrawn"
"""


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--ecg", action="store_true", help="also record 130 Hz ECG per person")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", metavar="FILE.xdf", help="write the simulated file here (default: a temp folder)")
    args = ap.parse_args(argv)

    import pyxdf

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.ui.commands.analyze import analyze_file

    with tempfile.TemporaryDirectory() as tmp:
        toml = Path(tmp) / "bench.toml"
        toml.write_text(SCENARIO.format(duration=args.minutes * 60, ecg="true" if args.ecg else "false"))
        xdf = Path(args.keep) if args.keep else Path(tmp) / "bench.xdf"
        subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", str(toml), "--seed",
                        "1", "--out", str(xdf)], check=True, capture_output=True, env=os.environ.copy())
        size = xdf.stat().st_size
        t_load, (streams, _) = best_of(lambda: pyxdf.load_xdf(str(xdf)), args.repeat)
        n_samples = sum(len(s["time_stamps"]) for s in streams)
        t_read, rec = best_of(lambda: load_recording(xdf), args.repeat)
        t_pipe, analysis = best_of(lambda: analyze_recording(load_recording(xdf)), 1)
        t_pipe, analysis = best_of(lambda: analyze_recording(rec), args.repeat)
        t_all, res = best_of(lambda: analyze_file(str(xdf)), args.repeat)
        if res.code:
            print(f"analysis failed: {res.message}")
            return 1
        print(f"file: {args.minutes:g} min dyad, RR + EDA{' + ECG' if args.ecg else ''}, {len(streams)} streams, "
              f"{n_samples} samples, {size / 1e6:.1f} MB")
        print(f"pyxdf.load_xdf               {t_load:7.3f} s   (reference)")
        print(f"load_recording (pyxdf + conv) {t_read:7.3f} s")
        print(f"pipeline (analyze_recording)  {t_pipe:7.3f} s")
        print(f"attune analyze (all, in-proc) {t_all:7.3f} s")
        print(f"ratio analyze / load_xdf      {t_all / t_load:7.2f}   (target <= 3)")
        print(f"episodes: {len(res.doc['episodes'])}; windows: "
              + ", ".join(f"{m} {analysis.sync[m]['t'].size}" for m in analysis.sync))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            analyze_file(str(xdf))
            prof.disable()
            for key in ("cumulative", "tottime"):
                buf = io.StringIO()
                pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(22)
                print(f"--- profile by {key} ---")
                print("\n".join(buf.getvalue().splitlines()[6:34]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
