"""What a user waits for at the command line: ``attune --help``, and ``attune analyze`` of a 60-minute dyad
against a process that only loads the same file with pyxdf.

Every figure is a whole process (interpreter start, imports, work, exit), best of ``--repeat`` runs, wall clock
(CPU time, user + system, beside it: less sensitive to other load on the machine):

* ``help_s``: ``attune --help`` (target <= 0.3 s); ``help_max_command_s``: the slowest ``attune COMMAND --help``;
* ``analyze_60min_s``: ``attune analyze FILE --json OUT`` of the 60-minute dyad of ``bench/bench_analyze.py``
  (Polar H10 RR + E4 EDA per person, simulated, seed 1);
* ``pyxdf_load_60min_s``: ``python -c "import pyxdf; pyxdf.load_xdf(FILE)"``;
* ``analyze_over_pyxdf``: their ratio (target <= 3).

The last line printed is one JSON object with these keys. Usage::

    python bench/bench_startup.py [--repeat 3] [--keep dyad60.xdf]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_analyze import SCENARIO  # the 60-minute dyad (bench/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("demo", "simulate", "streams", "monitor", "analyze", "evaluate", "replay", "export", "bridge")


def _env() -> dict:
    """This environment, with byte-code caching on (as for an installed package) and LSL on loopback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("LSLAPICFG", str(ROOT / "acquisition" / "lsl_api.cfg"))
    return env


def _attune() -> list[str]:
    script = Path(sys.executable).with_name("attune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "attune_monitor.ui.cli"]


def best_process(cmd: list[str], repeat: int, cwd: Path = ROOT) -> tuple[float, float]:
    """(best wall s, best CPU s) of running ``cmd`` ``repeat`` times (after one untimed warm-up run)."""
    walls, cpus = [], []
    for i in range(repeat + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-2000:]}")
        if i:  # the first run fills the byte-code and numba caches
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(walls), min(cpus)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each process (best is kept)")
    ap.add_argument("--keep", metavar="FILE.xdf", help="write the simulated 60-min file here (default: a temp folder)")
    args = ap.parse_args(argv)

    attune = _attune()
    help_s, help_cpu = best_process([*attune, "--help"], max(args.repeat, 5))
    per_command = {c: best_process([*attune, c, "--help"], args.repeat)[0] for c in COMMANDS}
    print(f"attune --help                 {help_s:6.3f} s (CPU {help_cpu:.3f} s)   target <= 0.3 s")
    slowest = max(per_command, key=per_command.get)
    print(f"slowest attune COMMAND --help {per_command[slowest]:6.3f} s ({slowest})")

    with tempfile.TemporaryDirectory() as tmp:
        toml = Path(tmp) / "bench.toml"
        toml.write_text(SCENARIO.format(duration=3600.0, ecg="false"))
        xdf = Path(args.keep).resolve() if args.keep else Path(tmp) / "dyad60.xdf"
        subprocess.run([*attune, "simulate", "--scenario", str(toml), "--seed", "1", "--out", str(xdf)], check=True,
                       capture_output=True, env=_env())
        analyze_s, analyze_cpu = best_process([*attune, "analyze", str(xdf), "--json", str(Path(tmp) / "out.json")],
                                              args.repeat)
        load_s, load_cpu = best_process([sys.executable, "-c", f"import pyxdf; pyxdf.load_xdf({str(xdf)!r})"],
                                        args.repeat)
        size_mb = xdf.stat().st_size / 1e6
    ratio = analyze_s / load_s
    print(f"60-min dyad (RR + EDA, {size_mb:.1f} MB), whole processes, best of {args.repeat}:")
    print(f"  python -c 'pyxdf.load_xdf'  {load_s:6.3f} s (CPU {load_cpu:.3f} s)")
    print(f"  attune analyze --json       {analyze_s:6.3f} s (CPU {analyze_cpu:.3f} s)")
    print(f"  ratio                       {ratio:6.2f}   (target <= 3; CPU ratio {analyze_cpu / load_cpu:.2f})")
    print(json.dumps({
        "help_s": round(help_s, 4), "help_cpu_s": round(help_cpu, 4),
        "help_max_command_s": round(per_command[slowest], 4), "help_slowest_command": slowest,
        "analyze_60min_s": round(analyze_s, 4), "pyxdf_load_60min_s": round(load_s, 4),
        "analyze_over_pyxdf": round(ratio, 3),
        "analyze_60min_cpu_s": round(analyze_cpu, 4), "pyxdf_load_60min_cpu_s": round(load_cpu, 4),
        "analyze_over_pyxdf_cpu": round(analyze_cpu / load_cpu, 3),
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
