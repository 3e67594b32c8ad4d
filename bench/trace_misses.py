"""Why are ruptures missed? Trace every rupture of a family cache second by second through the detector.

For each cached session (``bench/families.py cache``) the detector is replayed (``tune_detector.replay``, the
per-pair machines) with :class:`attune_monitor.dsp.detector.PairMachine`'s ``step`` and the detector's
person-to-group ties hooked, and for every truth rupture the pairs of the rupturing person are followed from 60 s
before its onset to ``LATE_S`` after its offset: state, fused drop, the learned ratio, the evidence added and held,
the threshold, shared events and signal losses. Each rupture gets one *cause*, the first that applies:

* ``detected``: matched by ``attune evaluate``'s rules;
* ``flagged_out_of_window``: a pair of the person was flagged around it, but the onset fell outside the window;
* ``busy``: every armed pair was already in a possible rupture / repairing / out of tune at the onset;
* ``never_armed``: no pair of the person was armed at any second of the rupture;
* ``disarmed_shared``: pairs armed at the onset were disarmed during it by a shared event ...
* ``disarmed_loss``: ... by a signal loss or a gap ... ``disarmed_other``: ... by something else;
* ``gate``: armed throughout, but the fused drop stayed under ``learned_sync_gate`` (the evidence could not grow);
* ``evidence_low``: the drop passed the gate, but the learned ratio less ``learned_k`` did not add up to the
  threshold (times the group factor).

Then the count of causes per family, and the learned ratio per armed pair-second: its percentiles where the pair
is in no rupture (all, and with the drop past the gate) and its median inside each family's ruptures.

Usage::

    python bench/trace_misses.py /tmp/families/fit-cache [--family sudden] [--show 3] [--override JSON]
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import math
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tune_detector  # noqa: E402

from attune_monitor.dsp import detector as D  # noqa: E402
from attune_monitor.evaluation import EARLY_S, LATE_S, Detection, score_file  # noqa: E402

ACTIVE = ("possible_rupture", "repairing")


def trace(d: dict, config) -> tuple[object, dict, dict, list]:
    """Replay one session; ``(detector, {pair: {t: row}}, {person: {t: tie evidence}}, ruptures in session time)``."""
    log: dict = collections.defaultdict(dict)
    ties: dict = collections.defaultdict(dict)
    orig_step, orig_ties = D.PairMachine.step, D.RuptureDetector._ties
    owner: dict = {}

    def step(self, t, values, blocked=False, arousal=math.nan, llr=math.nan):
        ev = orig_step(self, t, values, blocked, arousal, llr)
        log[id(self)][t] = (str(self.state), self.drop, llr, self.last_inc, self.evidence,
                            self.h_scale * self.cfg.threshold, bool(blocked), len(self.used))
        return ev

    def tie_hook(self, t):
        out = orig_ties(self, t)
        if self._tie_ev is not None:
            for i, p in enumerate(self.participants):
                ties[p][t] = float(self._tie_ev[i])
        return out

    D.PairMachine.step, D.RuptureDetector._ties = step, tie_hook
    try:
        det = tune_detector.replay(d, config, pair_bank=False)
    finally:
        D.PairMachine.step, D.RuptureDetector._ties = orig_step, orig_ties
    for p, m in zip(det.pairs, det.machines):
        owner[p] = log.get(id(m), {})
    tr = d["truth"]
    shift = d["origin"] - float(tr.get("time_origin", d["origin"]))
    rups = [dict(r, on=r["onset_s"] - shift, off=r["offset_s"] - shift) for r in tr["ruptures"]]
    return det, owner, ties, rups


def classify(det, rows: dict, rups: list, d: dict, config) -> list[dict]:
    """One record per rupture: its cause (see the module docstring) and the numbers behind it."""
    tr = d["truth"]
    shift = d["origin"] - float(tr.get("time_origin", d["origin"]))
    dets = [Detection(tuple(e.pair), tuple(e.people), e.onset_s + shift, e.flagged_s + shift,
                      None if e.offset_s is None else e.offset_s + shift, repaired=e.repaired) for e in det.episodes]
    fs = score_file(dets, tr, "", duration_s=float(tr.get("duration_s", d["duration_s"])))
    shared = [te for te, _ in det.shared_events]
    out = []
    for k, r in enumerate(rups):
        on, off = r["on"], r["off"]
        pairs = [tuple(p) for p in r["pairs"]]
        rec = {"family": r.get("family"), "who": r["who"], "on": on, "dur": off - on, "n_pairs": len(pairs),
               "detected": fs.detected[k]}
        armed0, busy0, n_dis, dis_why, gate_frac, llr_pass, ev_max = [], [], 0, [], [], [], []
        armed_any = False
        for p in pairs:
            row = rows.get(p, {})
            ts = sorted(t for t in row if on - 1 <= t <= off + LATE_S)
            if not ts:
                continue
            s0 = row[ts[0]][0]
            is_armed0 = s0 not in D.UNARMED_STATES
            armed_any |= any(row[t][0] not in D.UNARMED_STATES for t in ts)
            armed0.append(is_armed0 and s0 not in ACTIVE)
            busy0.append(s0 in ACTIVE or s0 == "out_of_tune")
            if is_armed0 and s0 not in ACTIVE:
                # disarmed during the rupture?
                for t in ts:
                    if row[t][0] in D.UNARMED_STATES:
                        n_dis += 1
                        if any(t - 2 <= te <= t + 1 for te in shared):
                            dis_why.append("shared")
                        elif row[t][6]:
                            dis_why.append("loss")
                        else:
                            prev = [x for x in ts if x < t]
                            dis_why.append("gap" if prev and t - prev[-1] > 2 else "other:" + row[t][0])
                        break
                # from REACH on: the drop against the gate, the learned ratio, the evidence
                sel = [t for t in ts if t >= on + 20 and t <= off and row[t][0] not in D.UNARMED_STATES]
                drops = np.array([row[t][1] for t in sel], float)
                if drops.size:
                    gate_frac.append(float(np.mean(np.nan_to_num(drops, nan=-9) >= config.learned_sync_gate)))
                    llrs = np.array([row[t][2] for t in sel], float)
                    ok = np.nan_to_num(drops, nan=-9) >= config.learned_sync_gate
                    llr_pass.append(float(np.nanmedian(llrs[ok])) if ok.any() else math.nan)
                    ev_max.append(max(row[t][4] / row[t][5] for t in sel))
        rec.update(armed0=sum(armed0), busy0=sum(busy0), disarmed=n_dis, dis_why=dis_why,
                   gate_frac=round(float(np.mean(gate_frac)), 2) if gate_frac else math.nan,
                   llr_med=round(float(np.nanmedian(llr_pass)), 2) if any(np.isfinite(llr_pass)) else math.nan,
                   ev_max=round(max(ev_max), 2) if ev_max else math.nan,
                   shared_in=[round(te - on) for te in shared if on - 30 <= te <= off + LATE_S])
        near = [e for e in det.episodes if (r["who"] in e.pair) and on - 120 <= e.onset_s <= off + 120]
        if rec["detected"]:
            cause = "detected"
        elif any(on - EARLY_S - 60 <= e.flagged_s <= off + LATE_S + 60 for e in near):
            cause = "flagged_out_of_window"
        elif not armed_any:
            cause = "never_armed"
        elif not any(armed0) and any(busy0):
            cause = "busy"
        elif n_dis and sum(armed0) and n_dis >= sum(armed0):
            cause = "disarmed_" + ("shared" if "shared" in dis_why else "loss" if "loss" in dis_why or "gap" in
                                   dis_why else "other")
        elif not any(armed0):
            cause = "armed_late"
        elif gate_frac and max(gate_frac) < 0.3:
            cause = "gate"
        else:
            cause = "evidence_low"
        rec["cause"] = cause
        rec["episodes_near"] = [(round(e.onset_s - on), round(e.flagged_s - on), e.outcome) for e in near]
        out.append(rec)
    return out


def show(rows: dict, ties: dict, r: dict, config, every: int = 5) -> None:
    """Print the rupturing person's pairs second by second (every ``every`` s) around one rupture."""
    on, off = r["on"], r["off"]
    pairs = [tuple(p) for p in r["pairs"]]
    print(f"--- {r.get('family')} who {r['who']} onset {on:.0f} s, {off - on:.0f} s long")
    print("   t  " + "  ".join(f"{'-'.join(p):>34s}" for p in pairs[:4]) + "   tie")
    anyrow = next((rows[p] for p in pairs if rows.get(p)), {})
    times = [t for t in sorted(anyrow) if on - 40 <= t <= off + LATE_S][::every]
    for t in times:
        cells = []
        for p in pairs[:4]:
            row = rows.get(p, {}).get(t)
            if row is None:
                cells.append(f"{'':>34s}")
                continue
            st, drop, llr, inc, ev, h, bl, nu = row
            cells.append(f"{st[:9]:>9s} d{drop:5.2f} l{llr:6.1f} e{ev:5.1f}/{h:4.1f}{'B' if bl else ' '}")
        tie = ties.get(r["who"], {}).get(t, math.nan)
        print(f"{t - on:+5.0f}  " + "  ".join(cells) + f"  {tie:5.1f}")


def armed_seconds(rows: dict, rups: list, family: str) -> list[tuple]:
    """Every armed pair-second: ``(family, drop, ratio, label)``; label 1 inside a rupture of the pair (from 20 s
    after its onset to 10 s after its offset), 0 no rupture of the pair within 60 s, -1 otherwise."""
    out = []
    for p, row in rows.items():
        mine = [r for r in rups if tuple(p) in {tuple(x) for x in r["pairs"]}]
        for t, (st, drop, llr, *_rest) in row.items():
            if st in D.UNARMED_STATES:
                continue
            lab = 0
            for r in mine:
                if r["on"] + 20 <= t <= r["off"] + 10:
                    lab = 1
                elif lab == 0 and r["on"] - 60 <= t <= r["off"] + 60:
                    lab = -1
            out.append((family, drop, llr, lab))
    return out


def ratio_summary(secs: list[tuple], gate: float) -> None:
    """Print the learned ratio's percentiles in null seconds (all, and with the drop past ``gate``) and its median
    inside each family's ruptures."""
    fam = np.array([x[0] for x in secs])
    drop, llr, lab = (np.array([x[k] for x in secs], float) for k in (1, 2, 3))
    ok = np.isfinite(drop) & np.isfinite(llr)
    null, past = ok & (lab == 0), ok & (lab == 0) & (drop >= gate)
    print(f"\narmed pair-seconds: {int(ok.sum())}, null {int(null.sum())}")
    print("null ratio, percentiles 50/90/99/99.9:", np.round(np.percentile(llr[null], [50, 90, 99, 99.9]), 2))
    if past.any():
        print(f"null ratio with the drop >= {gate:g}, percentiles 50/90/99:",
              np.round(np.percentile(llr[past], [50, 90, 99]), 2))
    for f in sorted(set(fam.tolist())):
        inside = ok & (lab == 1) & (fam == f)
        if inside.any():
            print(f"  {f:14s} ratio inside ruptures: median {np.median(llr[inside]):.2f} ({int(inside.sum())} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("caches", type=Path, nargs="+")
    ap.add_argument("--family", action="append")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--override", default="{}", help="JSON of DetectorConfig fields")
    ap.add_argument("--show", type=int, default=0, help="print this many missed ruptures of each cause")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    cfg = replace(D.get_preset(args.preset), **json.loads(args.override))
    recs, shown, secs = [], collections.Counter(), []
    for cache in args.caches:
        for fam in sorted(glob.glob(str(cache / "*"))):
            if args.family and Path(fam).name not in args.family:
                continue
            for f in sorted(glob.glob(fam + "/*.pkl")):
                with open(f, "rb") as fh:
                    d = pickle.load(fh)
                det, rows, ties, rups = trace(d, cfg)
                secs += armed_seconds(rows, rups, Path(fam).name)
                for r, rec in zip(rups, classify(det, rows, rups, d, cfg)):
                    rec["session"] = f"{cache.name}/{Path(fam).name}/{Path(f).stem}"
                    recs.append(rec)
                    print(json.dumps(rec, default=str), flush=True)
                    if args.show and rec["cause"] != "detected" and shown[rec["cause"]] < args.show:
                        shown[rec["cause"]] += 1
                        show(rows, ties, r, cfg)
    print("\ncause counts per family")
    fams = sorted({r["family"] for r in recs})
    causes = sorted({r["cause"] for r in recs})
    print(f"{'family':14s} " + " ".join(f"{c[:12]:>12s}" for c in causes))
    for fam in fams:
        c = collections.Counter(r["cause"] for r in recs if r["family"] == fam)
        print(f"{fam:14s} " + " ".join(f"{c[x]:12d}" for x in causes))
    c = collections.Counter(r["cause"] for r in recs)
    print(f"{'all':14s} " + " ".join(f"{c[x]:12d}" for x in causes))
    ratio_summary(secs, cfg.learned_sync_gate)
    if args.json:
        args.json.write_text(json.dumps(recs, default=str, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
