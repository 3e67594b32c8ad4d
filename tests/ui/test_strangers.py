"""Simulated strangers (the built-in ``group-strangers``: four people in one room who never interact, with shared
stressors, motion and ectopic beats): every prompt is false by construction, the simulated counterpart of the
real pseudo-pairs. Through the user's commands: ``attune simulate --out`` then ``attune analyze --json``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attune_monitor.ui.cli import main

SEEDS = range(6)


@pytest.fixture(scope="module")
def analyses(tmp_path_factory):
    folder = tmp_path_factory.mktemp("strangers")
    for seed in SEEDS:
        assert main(["simulate", "--scenario", "group-strangers", "--seed", str(seed),
                     "--out", str(folder / f"s{seed}.xdf"), "--truth", str(folder / f"s{seed}.truth.json")]) == 0
    out = folder / "json"
    assert main(["analyze", *(str(folder / f"s{s}.xdf") for s in SEEDS), "--json", f"{out}/"]) == 0
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    truths = [json.loads((folder / f"s{s}.truth.json").read_text()) for s in SEEDS]
    return docs, truths


def test_strangers_are_prompted_at_most_the_issues_pseudo_pair_rate(analyses):
    docs, truths = analyses
    assert all(t["ruptures"] == [] and t["coupling"] == 0.0 for t in truths)
    assert len(docs) == 6 and all(len(d["attunement"]) == 6 for d in docs)  # 4 people: 6 pairs each
    pair_hours = sum(len(d["attunement"]) * d["duration_s"] / 3600.0 for d in docs)
    prompts = sum(len(d["episodes"]) for d in docs)
    # target <= 0.5 prompts per paired hour (issue 16, pseudo-pairs); measured 0 in 18 pair-hours (2 before the
    # arming threshold was corrected for the spans tested)
    assert prompts / pair_hours <= 0.5, (prompts, pair_hours)


def test_strangers_are_shown_not_measurably_in_tune_nearly_all_the_time(analyses):
    docs, _ = analyses
    armed = np.array([a["armed_fraction"] for d in docs for a in d["attunement"]])
    # the arming test runs all session long, so a fixed threshold let strangers pass it by chance (8 of 36 pairs
    # at some time, 4.4 % of the pair-time); corrected for the spans tested: 3 of 36, 0.9 %
    assert armed.mean() <= 0.03, armed
    assert np.mean(armed == 0) >= 0.85, armed
