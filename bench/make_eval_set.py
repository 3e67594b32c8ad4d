"""Generate an evaluation set of simulated sessions with ground truth for ``attune evaluate``.

Each session is a random scenario (TOML) written next to its recording and
simulated with ``attune simulate --scenario S.toml --seed N --out S.xdf --truth
S.truth.json``. What varies, drawn from a generator seeded by ``--split`` and
the session number:

* group size 2-4, and each person's devices: heart from a chest strap (RR),
  a wrist HR (1 Hz) or both; EDA from an E4 (4 Hz), EmotiBit (15 Hz) or
  Shimmer (32 Hz); sometimes raw ECG / PPG streams as well;
* baseline coupling 0.5-0.85, repair time 4-12 s;
* shared conversational moments: the simulator default (3/min) unless
  ``--shared-events-per-min`` is given (``0``: slow shared drive only, the
  hard case for a detector);
* 1-3 ruptures per session (aversive or withdrawn, 30-75 s, any person),
  at least 130 s apart;
* confounds between the ruptures that must **not** be flagged: electrode
  loss (zero or gap), chest-strap dropout, shared stressors, ectopic beats,
  motion artefacts.

Two disjoint splits: ``--split tune`` (for choosing parameters) and
``--split eval`` (for the reported numbers, never used for tuning); the
session seeds of the splits never overlap.

Usage::

    python bench/make_eval_set.py /tmp/eval --split eval -n 24
    python bench/make_eval_set.py /tmp/eval2 --split eval -n 24 --first 100   # a fresh eval set
    attune evaluate /tmp/eval --jobs 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SPLIT_BASE = {"tune": 10_000, "eval": 50_000}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(round(float(v), 3)) if isinstance(v, float) else str(v)


def _table(name: str, d: dict) -> str:
    return f"[[{name}]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())


def random_scenario(seed: int, duration_s: float = 900.0, shared_events_per_min: float | None = None) -> tuple[str, dict]:
    """A random scenario as TOML text (and the same as a dict, for the listing).

    ``shared_events_per_min`` None keeps the simulator's default rate of shared moments.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.choice([2, 2, 3, 4]))
    ids = [f"P{i + 1}" for i in range(n)]
    people = []
    for pid in ids:
        heart = str(rng.choice(["rr", "rr", "hr", "both"]))
        eda = str(rng.choice(["e4", "emotibit", "shimmer"]))
        people.append({"id": pid, "heart": heart, "eda": eda, "ecg": bool(rng.random() < 0.25 and heart != "hr"),
                       "ppg": bool(rng.random() < 0.25), "hr_bpm": float(rng.uniform(58, 82)),
                       "eda_us": float(rng.uniform(1.5, 8.0)), "resp_hz": float(rng.uniform(0.18, 0.32))})
    head = {"name": f"eval-{seed}", "description": f"random evaluation scenario, seed {seed}",
            "duration_s": float(duration_s), "coupling": float(rng.uniform(0.5, 0.85)),
            "repair_s": float(rng.uniform(4, 12))}
    if shared_events_per_min is not None:
        head["shared_events_per_min"] = float(shared_events_per_min)
    # events on a timeline: ruptures first, confounds in the gaps (>= 45 s away from any rupture)
    events, t = [], float(rng.uniform(110, 200))
    n_rup = int(rng.integers(1, 4))
    ruptures = []
    while len(ruptures) < n_rup and t + 80 < duration_s:
        dur = float(rng.uniform(30, 75))
        ruptures.append({"onset_s": round(t, 1), "duration_s": round(dur, 1), "who": str(rng.choice(ids)),
                         "style": str(rng.choice(["aversive", "withdrawn"]))})
        events.append((t, t + dur + 12))
        t += dur + float(rng.uniform(130, 260))
    confounds = []
    kinds = ["electrode_loss", "strap_dropout", "shared_stressor", "ectopic", "motion"]
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(30):
            kind = str(rng.choice(kinds))
            dur = float(rng.uniform(10, 35))
            on = float(rng.uniform(60, duration_s - dur - 10))
            if all(on + dur + 45 < a or on - 45 > b for a, b in events):
                break
        else:
            continue
        c = {"kind": kind, "onset_s": round(on, 1), "duration_s": round(dur, 1)}
        if kind == "shared_stressor":
            c["hr_bpm"], c["eda_us"] = float(rng.uniform(8, 18)), float(rng.uniform(0.5, 2.0))
        else:
            c["participants"] = [str(rng.choice(ids))]
            if kind == "electrode_loss":
                c["mode"] = str(rng.choice(["zero", "gap"]))
            if kind in ("ectopic", "motion"):
                c["count"] = int(rng.integers(3, 8))
        confounds.append(c)
        events.append((on, on + dur))
    text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in head.items()) + "\n"
    text += "\n".join(_table("participants", p) for p in people) + "\n"
    text += "\n".join(_table("ruptures", r) for r in ruptures) + "\n"
    text += "\n".join(_table("confounds", c) for c in confounds)
    return text, {**head, "participants": people, "ruptures": ruptures, "confounds": confounds}


def make_one(folder: Path, seed: int, duration_s: float, shared_events_per_min: float | None = None) -> str:
    text, sc = random_scenario(seed, duration_s, shared_events_per_min)
    stem = f"s{seed}"
    toml = folder / f"{stem}.scenario.toml"
    toml.write_text(text)
    cmd = [sys.executable, "-m", "ui.cli", "simulate", "--scenario", str(toml), "--seed", str(seed),
           "--out", str(folder / f"{stem}.xdf"), "--truth", str(folder / f"{stem}.truth.json")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if p.returncode:
        raise RuntimeError(f"simulate failed for seed {seed}: {p.stderr.strip()}")
    kinds = ",".join(c["kind"] for c in sc["confounds"]) or "-"
    return (f"{stem}: {len(sc['participants'])} people, coupling {sc['coupling']:.2f}, "
            f"{len(sc['ruptures'])} ruptures, confounds {kinds}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write into (created)")
    ap.add_argument("--split", choices=list(SPLIT_BASE), default="eval")
    ap.add_argument("-n", type=int, default=24, help="number of sessions (default 24)")
    ap.add_argument("--first", type=int, default=0, metavar="K",
                    help="index of the first session within the split (default 0); a fresh set of the same split "
                         "that shares no session with an earlier one: --first 100")
    ap.add_argument("--duration", type=float, default=900.0, help="seconds per session (default 900)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shared-events-per-min", type=float, default=None, metavar="R",
                    help="rate of shared moments in every session (default: the simulator's; 0 = slow drive only)")
    args = ap.parse_args(argv)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    if not (0 <= args.first and args.first + args.n <= 40_000):
        raise SystemExit(f"Invalid value for '--first': expected 0 <= K and K + n <= 40000, but got {args.first}.")
    seeds = [SPLIT_BASE[args.split] + args.first + k for k in range(args.n)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda s: make_one(folder, s, args.duration, args.shared_events_per_min), seeds):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
