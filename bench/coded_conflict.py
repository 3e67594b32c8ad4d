"""Simulated dyads whose ruptures follow the timing of two real, behaviour-coded conflict discussions.

Every rupture family of ``bench/families.py`` places its ruptures at random. This bench takes the timing from
real people instead: ``../shared/realdata/conflict-codes`` holds per-second behaviour codes (SPAFF-style) of a
parent (``P``) and an adolescent (``A``) during a ~10-minute conflict discussion, one high- and one
low-satisfaction dyad (no physiology). Their negative codes become the simulated couple's ruptures; the
people, devices, coupling, noise and confounds are drawn per session as the family sets draw them. Nothing here
was fitted or chosen on: it scores the shipped presets on rupture timing nobody simulated.

From codes to ruptures (:func:`coded_ruptures`): a second is negative when either person's code is in
:data:`NEGATIVE`; negative seconds less than ``merge_gap_s`` (10 s) apart make one run (a dyad has one pair, so
both people's runs merge); a run becomes one rupture of the person negative for more of it, whose family is that
of the most severe kind of code filling at least a quarter of the run (hostile -> ``aversive``, withdrawal ->
``withdrawn``, tension or defensiveness -> ``partial``, in that order). Runs shorter than ``min_s`` (30 s, the
synchrony window) are left out of the truth (listed, not scored). The coded discussion starts after ``lead_in_s``
of ordinary, attuned conversation (default 300 s: arming needs about 2.5 minutes of measured attunement; 0 plays
the codes as they are).

What the two dyads give, with the defaults:

* high satisfaction (610 coded seconds): one run, 8:22-9:30 (tension and defensiveness of both): a *rupture* to
  flag;
* low satisfaction (604 coded seconds): negative from the first second to the last (the adolescent almost throughout,
  the parent in bursts): one 10-minute lapse, a *state* (a facilitator should get one prompt, then "out of tune
  since mm:ss", not a prompt that stays open or a stream of them).

Usage (a clone without ``../shared`` says so and exits 2)::

    python bench/coded_conflict.py make /tmp/coded --n 8 --jobs 2
    python bench/coded_conflict.py score /tmp/coded [--preset balanced] [--override '{"learned_k": 2}']
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_eval_set  # noqa: E402

CODES_DIR = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "conflict-codes"
DYADS = {"high": "high-satisfaction-dyad.txt", "low": "low-satisfaction-dyad.txt"}
#: Negative codes by kind, and the simulator's rupture family for each kind.
NEGATIVE = {
    "hostile": ("Anger", "Contempt", "Criticism", "Belligerence", "Disgust", "Domineering"),
    "withdrawal": ("Sadness", "Stonewalling"),
    "tension": ("Tension", "Defensiveness", "Whining"),
}
FAMILY_OF_KIND = {"hostile": "aversive", "withdrawal": "withdrawn", "tension": "partial"}  # most severe first
KIND_OF_CODE = {code: kind for kind, codes in NEGATIVE.items() for code in codes}
#: First seed; session i of dyad "high" is SEED_BASE + i, of "low" SEED_BASE + 500 + i (disjoint from the
#: family sets' 60000-76999 and make_eval_set's 10000-59999).
SEED_BASE = 80_000
PEOPLE = ("P", "A")


def read_codes(path: Path) -> list[tuple[int, str, str]]:
    """``[(second, parent's code, adolescent's code)]`` of one dyad's file (old-Mac line ends, tab-separated).

    Raises ``ValueError`` naming the file when it holds no coded seconds.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = [(int(t), p.strip(), a.strip())
            for t, p, a in re.findall(r"(\d+)\tP ([^\t]+?)\tA ([^\t]+?)(?=\d+\tP |\Z)", text, flags=re.S)]
    if not rows:
        raise ValueError(f"{path}: no coded seconds found (expected 'N<TAB>P code<TAB>A code' records).")
    return rows


def coded_ruptures(rows, merge_gap_s: float = 10.0, min_s: float = 30.0,
                   families: dict | None = None) -> tuple[list[dict], list[dict]]:
    """Runs of negative seconds -> (ruptures to score, shorter runs left out), times from the first code.

    Each run: ``onset_s``, ``duration_s``, ``who`` ("P" or "A", negative for more of it), ``family``, ``kinds``
    (negative seconds per kind of code, both people). ``families``: kind of code -> family, instead of
    :data:`FAMILY_OF_KIND`.
    """
    runs: list[list[int]] = []
    for t, p, a in rows:
        if p in KIND_OF_CODE or a in KIND_OF_CODE:
            if runs and t - runs[-1][-1] <= merge_gap_s:
                runs[-1].append(t)
            else:
                runs.append([t])
    t0 = rows[0][0]
    by_t = {t: (p, a) for t, p, a in rows}
    keep, short = [], []
    for run in runs:
        kinds: Counter = Counter()
        people: Counter = Counter()
        for t in run:
            for who, code in zip(PEOPLE, by_t[t]):
                if code in KIND_OF_CODE:
                    kinds[KIND_OF_CODE[code]] += 1
                    people[who] += 1
        r = {"onset_s": float(run[0] - t0), "duration_s": float(run[-1] + 1 - run[0]),
             "who": people.most_common(1)[0][0], "family": _family(kinds, len(run), families or FAMILY_OF_KIND),
             "kinds": dict(kinds)}
        (keep if r["duration_s"] >= min_s else short).append(r)
    return keep, short


def _family(kinds: Counter, n_seconds: int, families: dict) -> str:
    """The family of the most severe kind of code filling at least a quarter of a run (else the most frequent)."""
    for kind in FAMILY_OF_KIND:
        if kinds[kind] >= 0.25 * n_seconds:
            return families[kind]
    return families[kinds.most_common(1)[0][0]]


def scenario(dyad: str, seed: int, lead_in_s: float = 300.0, tail_s: float = 30.0,
             tension_family: str = "partial") -> tuple[str, dict]:
    """A couple's scenario: a family-set background (seed), the dyad's coded ruptures after ``lead_in_s``."""
    rows = read_codes(CODES_DIR / DYADS[dyad])
    ruptures, _short = coded_ruptures(rows, families={**FAMILY_OF_KIND, "tension": tension_family})
    _text, bg = make_eval_set.random_family_scenario(seed, ["coupling_loss"])
    people = [dict(p, id=pid) for p, pid in zip(bg["participants"][:2], PEOPLE)]
    duration = lead_in_s + (rows[-1][0] - rows[0][0] + 1) + tail_s
    head = {k: v for k, v in bg.items() if k not in ("participants", "ruptures", "confounds")}
    head.update(name=f"coded-{dyad}-{seed}", duration_s=round(duration, 1),
                description=f"{dyad}-satisfaction dyad's coded conflict after a {lead_in_s:.0f}-s lead-in, "
                            f"background of family seed {seed}")
    rup = [{"onset_s": round(lead_in_s + r["onset_s"], 1),
            "duration_s": round(min(r["duration_s"], duration - lead_in_s - r["onset_s"] - 1.0), 1),
            "who": r["who"], "family": r["family"]} for r in ruptures]
    events = [(r["onset_s"], r["onset_s"] + r["duration_s"] + 15.0) for r in rup]
    confounds = make_eval_set._draw_confounds(np.random.default_rng([seed, 0xC0DE]), list(PEOPLE), duration, events)
    return make_eval_set._scenario_text(head, people, rup, confounds)


def make(out: Path, n: int, jobs: int = 2, lead_in_s: float = 300.0, tension_family: str = "partial") -> None:
    """``n`` sessions per dyad into ``out/<dyad>/s<seed>.{scenario.toml,xdf,truth.json}`` (existing kept)."""
    import os
    import subprocess

    todo = []
    for k, dyad in enumerate(DYADS):
        folder = out / dyad
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed = SEED_BASE + 500 * k + i
            if not (folder / f"s{seed}.truth.json").exists():
                todo.append((folder, dyad, seed))

    def one(job):
        folder, dyad, seed = job
        text, sc = scenario(dyad, seed, lead_in_s, tension_family=tension_family)
        toml = folder / f"s{seed}.scenario.toml"
        toml.write_text(text)
        cmd = [sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", str(toml), "--seed",
               str(seed), "--out", str(folder / f"s{seed}.xdf"), "--truth", str(folder / f"s{seed}.truth.json")]
        p = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if p.returncode:
            raise RuntimeError(f"simulate failed for {dyad} seed {seed}: {p.stderr.strip()}")
        return (f"{dyad} s{seed}: coupling {sc['coupling']:.2f}, "
                + ", ".join(f"{r['who']} {r['family']} {r['onset_s']:.0f}+{r['duration_s']:.0f} s"
                            for r in sc["ruptures"]))

    with ThreadPoolExecutor(jobs) as pool:
        for line in pool.map(one, todo):
            print(line, flush=True)


def score(out: Path, preset: str = "balanced", override: dict | None = None) -> dict:
    """Score each dyad's sessions (``attune evaluate``'s matching) and say what a facilitator saw in each."""
    import dataclasses

    import realdata_controls as rc

    from attune_monitor.dsp.detector import get_preset
    from attune_monitor.evaluation import aggregate, armed_spans_from_result, detections_from_result, score_file
    from attune_monitor.ui.commands.analyze import analyze_file

    cfg = dataclasses.replace(get_preset(preset), **(override or {}))
    result = {}
    for dyad in DYADS:
        scores, sessions = [], []
        for xdf in sorted((out / dyad).glob("*.xdf")):
            truth = json.loads(xdf.with_suffix(".truth.json").read_text())
            with rc._detector_config(cfg):
                res = analyze_file(str(xdf))
            s = score_file(detections_from_result(res, truth), truth, xdf.name, res.doc["duration_s"],
                           armed_spans=armed_spans_from_result(res, truth))
            scores.append(s)
            shift = res.origin - float(truth.get("time_origin", res.origin))
            att = res.doc["attunement"][0] if res.doc["attunement"] else {}
            sessions.append({
                "session": xdf.stem,
                "ruptures": [(r["onset_s"], r["offset_s"], r["family"]) for r in truth["ruptures"]],
                "prompts": [(round(e["onset_s"] + shift, 1), None if e["offset_s"] is None
                             else round(e["offset_s"] + shift, 1), e["outcome"]) for e in res.doc["episodes"]],
                "armed_fraction": att.get("armed_fraction"),
                "out_of_tune_spans": [[round(a + shift, 1), None if b is None else round(b + shift, 1)]
                                      for a, b in att.get("out_of_tune_spans", [])],
                "detected": list(s.detected), "false_alarms": len(s.false_alarms)})
        result[dyad] = {"metrics": aggregate(scores), "sessions": sessions}
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="simulate the sessions")
    mk.add_argument("out", type=Path)
    mk.add_argument("--n", type=int, default=8, help="sessions per dyad (default 8)")
    mk.add_argument("--lead-in", type=float, default=300.0, help="seconds of attuned talk before the codes")
    mk.add_argument("--tension-family", default="partial",
                    help="family of a run of tension / defensiveness (default partial; e.g. coupling_loss)")
    mk.add_argument("--jobs", type=int, default=2)
    sc = sub.add_parser("score", help="score the shipped detector on them")
    sc.add_argument("out", type=Path)
    sc.add_argument("--preset", default="balanced")
    sc.add_argument("--override", default=None, help="JSON of DetectorConfig fields")
    sc.add_argument("--json", default=None, help="write the per-session listing here")
    args = ap.parse_args(argv)
    if not CODES_DIR.is_dir():
        print(f"{CODES_DIR} is absent (a clone without ../shared): nothing to do.", file=sys.stderr)
        return 2
    if args.cmd == "make":
        for dyad, name in DYADS.items():
            keep, short = coded_ruptures(read_codes(CODES_DIR / name))
            runs = ", ".join(f"{r['who']} {r['family']} {r['onset_s']:.0f}+{r['duration_s']:.0f} s {r['kinds']}"
                             for r in keep)
            print(f"{dyad}: scored {runs or 'none'}; shorter runs left out: {len(short)}")
        make(args.out, args.n, args.jobs, args.lead_in, args.tension_family)
        return 0
    missing = [d for d in DYADS if not any((args.out / d).glob("*.xdf"))]
    if missing:
        print(f"{args.out}: no sessions of {', '.join(missing)} (<dyad>/*.xdf); make them first: "
              f"python bench/coded_conflict.py make {args.out}", file=sys.stderr)
        return 2
    res = score(args.out, args.preset, json.loads(args.override) if args.override else None)
    for dyad, r in res.items():
        m = r["metrics"]
        print(f"{dyad}: ruptures {m['truth_ruptures']}, detected {m['detected']}, prompts {m['episodes']}, "
              f"false alarms {m['false_alarms']} ({m['false_alarms_per_hour']:.2f}/h), "
              f"median detection latency {m['median_detection_latency_s']} s")
        for s in r["sessions"]:
            print(f"  {s['session']}: truth {s['ruptures']} prompts {s['prompts']} armed "
                  f"{(s['armed_fraction'] or 0):.0%} out of tune {s['out_of_tune_spans']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
