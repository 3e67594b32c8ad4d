"""bench/trace_misses.py: each missed rupture gets the cause its second-by-second trace shows (known-truth traces).

The traces are written by hand (what ``trace`` logs per pair and second: state, fused drop, learned ratio, evidence
added, evidence, threshold, blocked, modalities used), so each cause is known; ``classify`` must name it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from attune_monitor.dsp.detector import get_preset
from tests.helpers.bench import load_bench

tm = load_bench("trace_misses")
CFG = get_preset("balanced")
ON, OFF = 300.0, 360.0
PAIR = ("P1", "P2")


def _session(rows_of, shared=(), episodes=()):
    """One dyad, one rupture of P2 from ON to OFF; ``rows_of(t)`` gives the pair's logged row at second t."""
    truth = {"ruptures": [{"onset_s": ON, "offset_s": OFF, "who": "P2", "pairs": [list(PAIR)],
                           "family": "coupling_loss"}], "confounds": [], "duration_s": 600.0}
    d = {"truth": truth, "origin": 0.0, "duration_s": 600.0}
    rows = {PAIR: {float(t): rows_of(float(t)) for t in range(1, 600)}}
    det = SimpleNamespace(episodes=list(episodes), shared_events=[(te, "marker") for te in shared])
    rups = [dict(r, on=r["onset_s"], off=r["offset_s"]) for r in truth["ruptures"]]
    return det, rows, rups, d


def _row(state="attuned", drop=0.0, llr=-1.5):
    return (state, drop, llr, min(llr - CFG.learned_k, 0.0), 0.0, CFG.learned_h, False, 2)


def _in(t):
    return ON <= t <= OFF + 20


@pytest.mark.parametrize("name, rows_of, shared, cause", [
    # armed throughout, synchrony at chance inside, but a ratio of 1.5 (under learned_k): the evidence never grows
    ("evidence_low", lambda t: _row(drop=1.0 if _in(t) else 0.1, llr=1.5 if _in(t) else -1.5), (), "evidence_low"),
    # armed throughout, the drop stays under the gate however high the ratio
    ("gate", lambda t: _row(drop=0.2, llr=6.0 if _in(t) else -1.5), (), "gate"),
    # never measurably in tune
    ("never_armed", lambda t: _row(state="not_in_tune", drop=float("nan")), (), "never_armed"),
    # armed at the onset, disarmed 15 s in by a shared event
    ("disarmed_shared", lambda t: _row(state="not_in_tune" if t >= ON + 15 else "attuned", drop=1.0),
     (ON + 15,), "disarmed_shared"),
    # armed at the onset, disarmed 15 s in with nothing shared: a gap / loss / other
    ("disarmed_other", lambda t: _row(state="not_in_tune" if t >= ON + 15 else "attuned", drop=1.0),
     (), "disarmed_other"),
    # not armed at the onset, armed 20 s later
    ("armed_late", lambda t: _row(state="attuned" if t >= ON + 20 else "not_in_tune", drop=1.0), (), "armed_late"),
    # already in a prompt at the onset
    ("busy", lambda t: _row(state="possible_rupture", drop=1.0), (), "busy"),
])
def test_each_cause_is_named(name, rows_of, shared, cause):
    det, rows, rups, d = _session(rows_of, shared)
    (rec,) = tm.classify(det, rows, rups, d, CFG)
    assert rec["cause"] == cause, (name, rec)
    assert rec["detected"] is False


def test_a_matched_episode_is_detected_whatever_the_trace():
    ep = SimpleNamespace(pair=PAIR, people=["P2"], onset_s=ON + 5, flagged_s=ON + 30, offset_s=OFF, outcome="repaired",
                         repaired=True)
    det, rows, rups, d = _session(lambda t: _row(drop=0.2), episodes=[ep])
    (rec,) = tm.classify(det, rows, rups, d, CFG)
    assert rec["detected"] and rec["cause"] == "detected"
    # the same episode with its onset long after the rupture's window: flagged, but out of the window
    late = SimpleNamespace(**{**vars(ep), "onset_s": OFF + 40, "flagged_s": OFF + 50})
    det, rows, rups, d = _session(lambda t: _row(drop=0.2), episodes=[late])
    (rec,) = tm.classify(det, rows, rups, d, CFG)
    assert rec["cause"] == "flagged_out_of_window"


def test_armed_seconds_are_labelled_inside_near_and_away_from_the_rupture():
    det, rows, rups, d = _session(lambda t: _row(state="attuned" if t >= 100 else "not_in_tune", drop=0.5))
    lab = {t: x[3] for t, x in zip(sorted(t for t in rows[PAIR] if t >= 100), tm.armed_seconds(rows, rups, "f"))}
    assert len(lab) == 500                                  # unarmed seconds left out
    assert lab[ON + 20] == 1 and lab[OFF + 10] == 1         # inside: from 20 s after the onset to 10 s after the end
    assert lab[ON + 19] == -1 and lab[OFF + 11] == -1       # near it: left out of both
    assert lab[ON - 61] == 0 and lab[OFF + 61] == 0         # away from it: null
