"""How much can the synchrony drop tell, even to a detector that knows when each rupture happened?

An upper bound on rupture detection from the detector's own input, per rupture family. For every session of a
family cache (``bench/families.py cache``) the shipped detector is replayed (``tune_detector.replay``) and the
fused synchrony ``drop`` of every armed pair is logged each second (from
:class:`attune_monitor.dsp.detector.PairMachine`'s
``step``). A *person's* drop is the mean over their armed pairs (the rupture families always take one person
away from all their pairs).

The *interval oracle* is told each rupture's exact interval (its onset + 20 s, the window's reach, to its
offset) and scores it by the person's mean drop over it. The null scores are the same statistic over intervals
of the same length at random places where nobody was in a rupture (40 draws per person and session). If even
this oracle cannot separate ruptures from their nulls, no causal detector on the same drop can: it would have
to pick the interval too, and stay under one false alarm per hour, i.e. above the null's 99th percentile or so.

Usage::

    python bench/oracle_bound.py /tmp/families/heldout-li-cache
"""

from __future__ import annotations

import argparse
import collections
import glob
import math
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tune_detector  # noqa: E402
from realdata_controls import auc  # noqa: E402  (P(ruptures > nulls), ties half)

from attune_monitor.dsp import detector as D  # noqa: E402

#: Seconds after a rupture's onset before the 30-s windows can show it (they must reach into it).
REACH_S = 20.0
#: Null intervals drawn per person and session.
NULL_DRAWS = 40


def person_drops(d: dict, config) -> tuple[dict, list]:
    """Replay one cached session; ``{person: (t, mean drop over armed pairs, label)}`` and the truth ruptures.

    ``label`` per second: 1 every pair of the person is inside a rupture (past ``REACH_S``), 0 none of them is
    within 60 s of one, -1 otherwise (left out).
    """
    log: list = []
    orig = D.PairMachine.step

    def step(self, t, values, *a, **k):
        ev = orig(self, t, values, *a, **k)
        if self.state not in D.UNARMED_STATES and math.isfinite(self.drop):
            log.append((id(self), t, self.drop))
        return ev

    D.PairMachine.step = step
    try:
        det = tune_detector.replay(d, config, pair_bank=False)  # (the per-pair machines: their step is hooked)
    finally:
        D.PairMachine.step = orig
    truth = d["truth"]
    shift = d["origin"] - float(truth.get("time_origin", d["origin"]))
    rups = [(r["onset_s"] - shift, r["offset_s"] - shift, {tuple(p) for p in r["pairs"]}) for r in truth["ruptures"]]
    pair_of = {id(m): p for p, m in zip(det.pairs, det.machines)}
    per = collections.defaultdict(lambda: collections.defaultdict(list))
    for mid, t, drop in log:
        pair = pair_of[mid]
        lab = 0
        for on, off, pairs in rups:
            if pair in pairs and on + REACH_S <= t <= off:
                lab = 1
            elif pair in pairs and on - 60.0 <= t <= off + 60.0:
                lab = -1
        for who in pair:
            per[who][t].append((drop, lab))
    out = {}
    for who, ser in per.items():
        ts = np.array(sorted(ser))
        v = np.array([np.mean([x[0] for x in ser[t]]) for t in ts])
        labs = [[x[1] for x in ser[t]] for t in ts]
        y = np.array([1 if all(x == 1 for x in ls) else 0 if all(x == 0 for x in ls) else -1 for ls in labs])
        out[who] = (ts, v, y)
    return out, rups


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cache", type=Path, help="a family cache: CACHE/<family>/s<seed>.pkl")
    ap.add_argument("--preset", default="balanced")
    ap.add_argument("--seed", type=int, default=0, help="seed of the null intervals' draw")
    args = ap.parse_args(argv)
    cfg = D.get_preset(args.preset)
    rng = np.random.default_rng(args.seed)
    print(f"{'family':14s} {'ruptures':>8s} {'nulls':>6s} {'AUC':>5s} {'recall@null95':>13s} {'recall@null99':>13s}")
    for fam in sorted(glob.glob(str(args.cache / "*"))):
        pos, neg = [], []
        for f in sorted(glob.glob(fam + "/*.pkl")):
            with open(f, "rb") as fh:
                d = pickle.load(fh)
            people, _ = person_drops(d, cfg)
            for ts, v, y in people.values():
                inside = y == 1
                if inside.sum() >= 10:
                    pos.append(v[inside].mean())
                    n = int(inside.sum())
                else:
                    n = 60
                for _ in range(NULL_DRAWS):
                    if len(ts) <= n:
                        break
                    s = int(rng.integers(0, len(ts) - n))
                    if (y[s:s + n] == 0).all() and ts[s + n - 1] - ts[s] < n + 5:
                        neg.append(v[s:s + n].mean())
        pos_a, neg_a = np.array(pos), np.array(neg)
        r95 = float(np.mean(pos_a > np.percentile(neg_a, 95))) if pos and neg else math.nan
        r99 = float(np.mean(pos_a > np.percentile(neg_a, 99))) if pos and neg else math.nan
        print(f"{Path(fam).name:14s} {len(pos):8d} {len(neg):6d} {auc(pos_a, neg_a):5.2f} {r95:13.2f} {r99:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
