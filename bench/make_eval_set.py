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

Disjoint splits: ``--split tune`` (for choosing parameters, seeds
10000-49999) and ``--split eval`` (for the reported numbers, never used for
tuning, 50000-59999); ``fit`` (60000-69999) and ``heldout`` (70000-79999) are
the rupture-family sets of ``bench/families.py``. The session seeds of the
splits never overlap.

Rupture families (domain randomisation)
---------------------------------------
With ``--families f1,f2,...`` (names from
``acquisition.scenario.RUPTURE_FAMILIES``; ``all`` for every one) each
rupture's family is drawn from the list (``leave_group`` only in groups of
3+; a list of group-only families makes every session a group) and its
parameters by the simulator from the seed (the truth records ``family`` and
``params``). The session itself is randomised too (``--no-randomise`` keeps the
draws above):

* group size 2-8 (2: 30 %, 3: 25 %, 4: 20 %, 5-8: 25 %; 3-8 when every
  listed family needs a group), baseline coupling 0.4-0.85;
* devices per person: chest strap RR, wrist HR (1 Hz), both, or an E4 whose
  heart is its BVP only; EDA from an E4, EmotiBit, Shimmer (5 %: none);
  sensor noise x 0.5-3;
* slow drives band-limited to [0.003-0.01, 0.05-0.2] Hz; shared moments
  0 (15 %) or 0.5-6 per minute with salience x 0.5-1.5; own moments 0-3 per
  minute;
* sessions 10-15 min (unless ``--duration``), 1-3 ruptures of 30-180 s.

Without ``--families`` nothing changes: the same seeds give the same
scenario files as before families existed.

Usage::

    python bench/make_eval_set.py /tmp/eval --split eval -n 24
    python bench/make_eval_set.py /tmp/eval2 --split eval -n 24 --first 100   # a fresh eval set
    python bench/make_eval_set.py /tmp/fam --split heldout -n 12 --families all
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

SPLIT_BASE = {"tune": 10_000, "eval": 50_000, "fit": 60_000, "heldout": 70_000}
#: How many seeds each split owns from its base (the ranges never overlap).
SPLIT_SPAN = {"tune": 40_000, "eval": 10_000, "fit": 10_000, "heldout": 10_000}
#: Rupture families that need a group of three or more.
GROUP_FAMILIES = ("leave_group",)


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


def _draw_confounds(rng: np.random.Generator, ids: list, duration_s: float, events: list) -> list[dict]:
    """1-3 confounds in the gaps (>= 45 s away from every event of ``events``, which grows with them)."""
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
    return confounds


def _scenario_text(head: dict, people: list, ruptures: list, confounds: list) -> tuple[str, dict]:
    """The scenario as TOML text and as a dict."""
    text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in head.items()) + "\n"
    text += "\n".join(_table("participants", p) for p in people) + "\n"
    text += "\n".join(_table("ruptures", r) for r in ruptures) + "\n"
    text += "\n".join(_table("confounds", c) for c in confounds)
    return text, {**head, "participants": people, "ruptures": ruptures, "confounds": confounds}


def random_scenario(seed: int, duration_s: float = 900.0,
                    shared_events_per_min: float | None = None) -> tuple[str, dict]:
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
    confounds = _draw_confounds(rng, ids, duration_s, events)
    return _scenario_text(head, people, ruptures, confounds)


def parse_families(text: str) -> list[str]:
    """``"f1,f2"`` (or ``"all"``) -> a list of rupture families; ``ValueError`` naming the valid ones."""
    from attune_monitor.acquisition.scenario import RUPTURE_FAMILIES

    names = list(RUPTURE_FAMILIES) if text.strip() == "all" else [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in names if x not in RUPTURE_FAMILIES]
    if bad or not names:
        raise ValueError(f"Invalid value for 'families': expected a comma-separated list of "
                         f"{', '.join(RUPTURE_FAMILIES)} (or 'all'), but got {text!r}.")
    return names


def random_family_scenario(seed: int, families, duration_s: float | None = None,
                           shared_events_per_min: float | None = None, randomise: bool = True,
                           lead_in_s: float | None = None) -> tuple[str, dict]:
    """A random scenario whose ruptures' families are drawn from ``families`` (TOML text and dict).

    ``randomise`` draws the session as the module docstring says (group size 2-8, device mix, noise, drive
    band, moments); without it, people and coupling are drawn as :func:`random_scenario` draws them.
    ``duration_s`` None draws 600-900 s. ``lead_in_s``: the first rupture starts 0-90 s after it (a detector
    that needs a measured attunement first cannot flag a rupture in the session's first minutes; None: 110-200 s,
    as before). Deterministic per (seed, families, duration_s, randomise, lead_in_s).
    """
    families = list(families)
    rng = np.random.default_rng([seed, 0xFA51])  # not random_scenario's stream: a family set is its own draw
    group_only = all(f in GROUP_FAMILIES for f in families)
    if randomise:
        sizes, p = [2, 3, 4, 5, 6, 7, 8], [0.30, 0.25, 0.20, 0.0625, 0.0625, 0.0625, 0.0625]
        if group_only:
            sizes, p = [3, 4, 5, 6, 7, 8], [0.30, 0.30, 0.10, 0.10, 0.10, 0.10]
        n = int(rng.choice(sizes, p=p))
    else:
        n = int(rng.choice([3, 3, 4] if group_only else [2, 2, 3, 4]))
    duration_s = float(rng.uniform(600, 900) if duration_s is None else duration_s)
    ids = [f"P{i + 1}" for i in range(n)]
    people = []
    for pid in ids:
        if randomise:
            heart = str(rng.choice(["rr", "hr", "both", "bvp"], p=[0.35, 0.25, 0.15, 0.25]))
            if heart == "bvp":  # an E4 alone: its BVP is the heart signal
                person = {"heart": "none", "eda": "e4", "ecg": False, "ppg": True}
            else:
                eda = str(rng.choice(["e4", "emotibit", "shimmer", "none"], p=[0.35, 0.30, 0.30, 0.05]))
                person = {"heart": heart, "eda": eda, "ecg": bool(rng.random() < 0.15 and heart != "hr"),
                          "ppg": bool(rng.random() < 0.15)}
            person.update(hr_bpm=float(rng.uniform(55, 90)),
                          eda_us=float(np.exp(rng.uniform(np.log(1.0), np.log(12.0)))),
                          resp_hz=float(rng.uniform(0.15, 0.35)),
                          noise=float(np.exp(rng.uniform(np.log(0.5), np.log(3.0)))))
        else:
            heart = str(rng.choice(["rr", "rr", "hr", "both"]))
            person = {"heart": heart, "eda": str(rng.choice(["e4", "emotibit", "shimmer"])),
                      "ecg": bool(rng.random() < 0.25 and heart != "hr"), "ppg": bool(rng.random() < 0.25),
                      "hr_bpm": float(rng.uniform(58, 82)), "eda_us": float(rng.uniform(1.5, 8.0)),
                      "resp_hz": float(rng.uniform(0.18, 0.32))}
        people.append({"id": pid, **person})
    head = {"name": f"fam-{seed}", "description": f"random rupture-family scenario, seed {seed}, families "
                                                    f"{','.join(families)}",
            "duration_s": round(duration_s, 1),
            "coupling": float(rng.uniform(0.4, 0.85) if randomise else rng.uniform(0.5, 0.85)),
            "repair_s": float(rng.uniform(4, 12))}
    if randomise:
        head["shared_events_per_min"] = float(0.0 if rng.random() < 0.15 else rng.uniform(0.5, 6.0))
        head["shared_salience"] = float(rng.uniform(0.5, 1.5))
        head["own_events_per_min"] = float(rng.uniform(0.0, 3.0))
        head["drive_band_hz"] = [round(float(rng.uniform(0.003, 0.01)), 4), round(float(rng.uniform(0.05, 0.2)), 3)]
    if shared_events_per_min is not None:
        head["shared_events_per_min"] = float(shared_events_per_min)
    usable = [f for f in families if n >= 3 or f not in GROUP_FAMILIES]
    events, t = [], float(rng.uniform(110, 200))
    if lead_in_s is not None:
        t = float(lead_in_s) + (t - 110.0)  # the same draw, shifted: 0-90 s after the lead-in
    n_rup = int(rng.integers(1, 4))
    ruptures = []
    while len(ruptures) < n_rup:
        dur = float(rng.uniform(30, 180))
        fam = str(rng.choice(usable))
        tail = 100.0 if fam == "drift" else 15.0  # the return (drift: up to 90 s) before anything else happens
        if t + dur + tail > duration_s:
            if ruptures or duration_s - tail - t < 30:
                break
            dur = duration_s - tail - t  # a short session still gets its one rupture
        ruptures.append({"onset_s": round(t, 1), "duration_s": round(dur, 1), "who": str(rng.choice(ids)),
                         "family": fam})
        events.append((t, t + dur + tail))
        t += dur + tail + float(rng.uniform(120, 250))
    confounds = _draw_confounds(rng, ids, duration_s, events)
    return _scenario_text(head, people, ruptures, confounds)


def make_one(folder: Path, seed: int, duration_s: float | None, shared_events_per_min: float | None = None,
             families=None, randomise: bool = True, lead_in_s: float | None = None) -> str:
    """Write ``s<seed>.scenario.toml`` and simulate it to ``s<seed>.xdf`` + ``.truth.json``; one listing line.

    ``families`` None: :func:`random_scenario` (``duration_s`` None is 900 s); else
    :func:`random_family_scenario`.
    """
    if families is None:
        text, sc = random_scenario(seed, 900.0 if duration_s is None else duration_s, shared_events_per_min)
    else:
        text, sc = random_family_scenario(seed, families, duration_s, shared_events_per_min, randomise, lead_in_s)
    stem = f"s{seed}"
    toml = folder / f"{stem}.scenario.toml"
    toml.write_text(text)
    cmd = [sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", str(toml), "--seed", str(seed),
           "--out", str(folder / f"{stem}.xdf"), "--truth", str(folder / f"{stem}.truth.json")]
    p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if p.returncode:
        raise RuntimeError(f"simulate failed for seed {seed}: {p.stderr.strip()}")
    kinds = ",".join(c["kind"] for c in sc["confounds"]) or "-"
    fams = "" if families is None else " (" + ",".join(r["family"] for r in sc["ruptures"]) + ")"
    return (f"{stem}: {len(sc['participants'])} people, coupling {sc['coupling']:.2f}, "
            f"{len(sc['ruptures'])} ruptures{fams}, confounds {kinds}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write into (created)")
    ap.add_argument("--split", choices=list(SPLIT_BASE), default="eval")
    ap.add_argument("-n", type=int, default=24, help="number of sessions (default 24)")
    ap.add_argument("--first", type=int, default=0, metavar="K",
                    help="index of the first session within the split (default 0); a fresh set of the same split "
                         "that shares no session with an earlier one: --first 100")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds per session (default 900; with --families drawn 600-900)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shared-events-per-min", type=float, default=None, metavar="R",
                    help="rate of shared moments in every session (default: the simulator's; 0 = slow drive only)")
    ap.add_argument("--families", default=None, metavar="F1,F2",
                    help="draw each rupture's family from this list ('all': every family) and randomise the "
                         "sessions (see the module docstring); default: the aversive/withdrawn sessions as before")
    ap.add_argument("--no-randomise", dest="randomise", action="store_false",
                    help="with --families: draw people and coupling as without it (no device/noise/drive "
                         "randomisation)")
    args = ap.parse_args(argv)
    families = None
    if args.families is not None:
        try:
            families = parse_families(args.families)
        except ValueError as exc:
            raise SystemExit(str(exc)) from None
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    span = SPLIT_SPAN[args.split]
    if not (0 <= args.first and args.first + args.n <= span):
        raise SystemExit(f"Invalid value for '--first': expected 0 <= K and K + n <= {span} for split "
                         f"{args.split!r}, but got {args.first}.")
    seeds = [SPLIT_BASE[args.split] + args.first + k for k in range(args.n)]
    with ThreadPoolExecutor(args.jobs) as pool:
        for line in pool.map(lambda s: make_one(folder, s, args.duration, args.shared_events_per_min, families,
                                                args.randomise), seeds):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
