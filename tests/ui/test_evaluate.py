"""Evaluation: matching of flagged episodes with scripted ruptures, on hand-made lists, and end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attune_monitor.evaluation import (
    Detection,
    aggregate,
    detections_from_result,
    find_cases,
    format_metrics,
    score_file,
)

TRUTH = {
    "schema": "attune.truth/1", "duration_s": 600.0, "participants": ["P1", "P2", "P3"],
    "ruptures": [
        {"onset_s": 100.0, "offset_s": 150.0, "repair_s": 156.0, "who": "P2",
         "pairs": [["P1", "P2"], ["P2", "P3"]]},
        {"onset_s": 400.0, "offset_s": 440.0, "repair_s": 446.0, "who": "P1",
         "pairs": [["P1", "P2"], ["P1", "P3"]]},
    ],
    "confounds": [
        {"kind": "electrode_loss", "participants": ["P3"], "onset_s": 250.0, "offset_s": 270.0},
        {"kind": "strap_dropout", "participants": ["P1"], "onset_s": 500.0, "offset_s": 520.0},
        {"kind": "shared_stressor", "participants": ["P1", "P2", "P3"], "onset_s": 300.0, "offset_s": 330.0},
    ],
}


def D(pair, onset, flagged=None):
    return Detection(tuple(pair), tuple(pair), float(onset), float(onset + 8 if flagged is None else flagged))


def test_perfect_detection():
    s = score_file([D(("P1", "P2"), 104, 112), D(("P1", "P3"), 398, 415)], TRUTH)
    assert s.detected == [True, True]
    assert s.true_positives == 2 and s.duplicates == 0 and s.false_alarms == []
    assert s.detection_latency_s == [12.0, 15.0]
    assert s.onset_latency_s == [4.0, -2.0]
    m = aggregate([s])
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["f1"] == 1.0
    assert m["false_alarms_per_hour"] == 0.0 and m["signal_loss_flagged"] == 0 and m["signal_loss_periods"] == 2
    assert m["median_detection_latency_s"] == 13.5 and m["median_onset_latency_s"] == 1.0
    assert all(m["meets_targets"].values())


@pytest.mark.parametrize("onset,ok", [(89.9, False), (90.0, True), (170.0, True), (170.1, False)])
def test_window_edges(onset, ok):
    """Onset must be within [truth onset - 10 s, truth offset + 20 s] = [90, 170]."""
    s = score_file([D(("P2", "P3"), onset)], TRUTH)
    assert s.detected[0] is ok
    assert len(s.false_alarms) == (0 if ok else 1)


def test_pair_must_involve_who():
    # P1-P3 does not involve P2 (who of rupture 1): a false alarm even at the right time
    s = score_file([D(("P1", "P3"), 105)], TRUTH)
    assert s.detected == [False, False] and len(s.false_alarms) == 1


def test_duplicates_and_group_pairs():
    dets = [D(("P1", "P2"), 105), D(("P2", "P3"), 107),  # two pairs of one group rupture: both true positives
            D(("P1", "P2"), 130)]  # the same pair split in two prompts: a duplicate
    s = score_file(dets, TRUTH)
    assert s.true_positives == 2 and s.duplicates == 1 and s.false_alarms == []
    assert s.truth_pairs == 4 and s.truth_pairs_detected == 2
    m = aggregate([s])
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == 0.5
    assert m["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["false_alarms_per_hour"] == 0.0


def test_latency_uses_earliest_flag_and_earliest_onset():
    s = score_file([D(("P2", "P3"), 120, 125), D(("P1", "P2"), 95, 140)], TRUTH)
    assert s.detection_latency_s == [25.0]  # earliest flag (P2-P3 at 125)
    assert s.onset_latency_s == [-5.0]      # earliest estimated onset (P1-P2 at 95)


def test_onset_and_detection_latency_targets_are_separate():
    """The issue's target is on the estimated onset; the (later) flag time is checked on its own line."""
    s = score_file([D(("P1", "P2"), 112, 135), D(("P1", "P3"), 415, 436)], TRUTH)
    m = aggregate([s])
    assert m["median_onset_latency_s"] == 13.5 and m["median_detection_latency_s"] == 35.5
    assert m["meets_targets"]["median_onset_latency_s"] is True
    assert m["meets_targets"]["median_detection_latency_s"] is False
    from attune_monitor.evaluation import format_metrics

    text = format_metrics(m)
    assert "median onset latency (estimated onset - truth onset) 13.5 s (target <= 20 s: ok)" in text
    assert "35.5 s (<= 20 s: MISSED)" in text


def test_closest_truth_wins():
    truth = {"duration_s": 300.0, "confounds": [], "ruptures": [
        {"onset_s": 100.0, "offset_s": 130.0, "who": "P1", "pairs": [["P1", "P2"]]},
        {"onset_s": 140.0, "offset_s": 170.0, "who": "P1", "pairs": [["P1", "P2"]]}]}
    s = score_file([D(("P1", "P2"), 138)], truth)
    assert s.detected == [False, True]


def test_signal_loss_and_confounds_counted_from_false_alarms():
    dets = [D(("P1", "P3"), 255),   # during P3's electrode loss -> mistaken signal loss
            D(("P2", "P3"), 310),   # during the shared stressor (P2 is not who of any rupture then)
            D(("P1", "P2"), 530)]   # P1's strap dropout ended at 520: within +20 s
    s = score_file(dets, TRUTH)
    assert len(s.false_alarms) == 3
    assert s.signal_loss_flagged == 2 and s.signal_loss_periods == 2
    assert s.confounds_flagged == {"electrode_loss": [1, 1], "strap_dropout": [1, 1], "shared_stressor": [1, 1]}
    m = aggregate([s])
    assert m["false_alarms_per_hour"] == pytest.approx(3 / (600 / 3600))
    assert m["meets_targets"]["signal_loss_flagged"] is False
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_aggregate_is_micro_averaged():
    a = score_file([D(("P1", "P2"), 104)], TRUTH, duration_s=600)       # 1 of 2, no FA
    b = score_file([D(("P1", "P2"), 10)], {"duration_s": 1200, "ruptures": [], "confounds": []})  # 1 FA
    m = aggregate([a, b])
    assert m["truth_ruptures"] == 2 and m["detected"] == 1 and m["episodes"] == 2 and m["true_positives"] == 1
    assert m["hours"] == 0.5 and m["false_alarms_per_hour"] == 2.0
    assert m["precision"] == 0.5 and m["recall"] == 0.5


def test_no_truth_no_episodes_is_perfect_precision_undefined_recall():
    m = aggregate([score_file([], {"duration_s": 3600, "ruptures": [], "confounds": []})])
    assert m["precision"] == 1.0 and m["recall"] is None and m["f1"] is None
    assert m["false_alarms_per_hour"] == 0.0


def test_time_shift_from_file_origin_to_truth():
    class R:
        origin = 1003.5  # the file's earliest timestamp
        doc = {"episodes": [{"pair": ["P1", "P2"], "people": ["P2"], "onset_s": 56.5}]}
        flagged_s = [66.5]

    d = detections_from_result(R, {"time_origin": 1000.0})[0]
    assert d.onset_s == 60.0 and d.flagged_s == 70.0 and d.people == ("P2",)


def test_find_cases(tmp_path):
    for name in ("a.xdf", "a.truth.json", "b.xdf", "c.truth.json", "d.csv", "d.truth.json"):
        (tmp_path / name).write_text("x")
    assert [(r.name, t.name) for r, t in find_cases(tmp_path)] == [("a.xdf", "a.truth.json"), ("d.csv", "d.truth.json")]


def test_cli_bad_dir(tmp_path):
    p = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "evaluate", str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "no recording with a truth file" in p.stderr


@pytest.mark.timeout(180)
def test_evaluate_end_to_end(tmp_path):
    """Simulated rupture/repair + confound couples: evaluate's counts agree with analyze's own episodes.

    (Whether the detector meets its targets is measured by bench/make_eval_set.py + attune evaluate, not here.)
    """
    cli = [sys.executable, "-m", "attune_monitor.ui.cli"]
    for scen, name in (("couple-rupture-repair", "crr"), ("couple-confounds", "conf")):
        subprocess.run([*cli, "simulate", "--scenario", scen, "--seed", "11", "--out", str(tmp_path / f"{name}.xdf"),
                        "--truth", str(tmp_path / f"{name}.truth.json")], check=True, capture_output=True, timeout=60)
    out = tmp_path / "scores.json"
    p = subprocess.run([*cli, "evaluate", str(tmp_path), "--json", str(out), "--jobs", "2"], capture_output=True,
                       text=True, timeout=170)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    scores = json.loads(out.read_text())
    m = scores["overall"]
    assert m["files"] == 2 and m["truth_ruptures"] == 2 and m["signal_loss_periods"] == 3
    assert "precision" in p.stdout and "median detection latency" in p.stdout
    # independent check: analyze's documents, matched by hand with the documented rule
    (tmp_path / "docs").mkdir()
    subprocess.run([*cli, "analyze", str(tmp_path / "crr.xdf"), str(tmp_path / "conf.xdf"), "--json",
                    str(tmp_path / "docs") + "/"], check=True, capture_output=True, timeout=120)
    n_eps = fa = detected = 0
    for name in ("crr", "conf"):
        doc = json.loads((tmp_path / "docs" / f"{name}.analysis.json").read_text())
        truth = json.loads((tmp_path / f"{name}.truth.json").read_text())
        n_eps += len(doc["episodes"])
        # simulated regular streams start at session 0, so file time == truth time here
        hits = [[r["who"] in e["pair"] and r["onset_s"] - 10 <= e["onset_s"] <= r["offset_s"] + 20
                 for r in truth["ruptures"]] for e in doc["episodes"]]
        fa += sum(not any(h) for h in hits)
        detected += sum(any(h[k] for h in hits) for k in range(len(truth["ruptures"])))
    assert m["episodes"] == n_eps and m["false_alarms"] == fa and m["detected"] == detected
    assert m["recall"] == detected / 2


def test_breakdown_counts_each_rupture_once_per_axis():
    """Recall per style / group size / duration and false alarms per group size, from hand-made scores."""
    truth = {**TRUTH, "ruptures": [{**TRUTH["ruptures"][0], "style": "aversive"},      # 50 s
                                   {**TRUTH["ruptures"][1], "style": "withdrawn"}]}    # 40 s
    a = score_file([D(("P1", "P2"), 104)], truth)                                 # 3 people: 1 of 2, no FA
    couple = {"duration_s": 1800.0, "participants": ["P1", "P2"], "confounds": [],
              "ruptures": [{"onset_s": 100.0, "offset_s": 170.0, "who": "P1", "style": "withdrawn",
                            "pairs": [["P1", "P2"]]}]}
    b = score_file([D(("P1", "P2"), 105), D(("P1", "P2"), 900)], couple)          # 2 people: 1 of 1, 1 FA
    m = aggregate([a, b])
    br = m["breakdown"]
    assert br["recall"]["style"] == {"aversive": [1, 1], "withdrawn": [1, 2]}
    assert br["recall"]["group_size"] == {"2 people": [1, 1], "3 people": [1, 2]}
    assert list(br["recall"]["duration"].items()) == [("< 45 s", [0, 1]), ("45-60 s", [1, 1]), (">= 60 s", [1, 1])]
    assert br["false_alarms_per_hour"] == {"2 people": [1, 0.5], "3 people": [0, pytest.approx(600 / 3600)]}
    # every axis adds up to the overall counts
    for axis in br["recall"].values():
        assert sum(d for d, _ in axis.values()) == m["detected"]
        assert sum(t for _, t in axis.values()) == m["truth_ruptures"]
    text = format_metrics(m)
    assert "recall by style: aversive 1/1 (1.00), withdrawn 1/2 (0.50)" in text
    assert "false alarms by group size: 2 people 2.00/h (1 in 0.50 h), 3 people 0.00/h" in text
    assert json.loads(json.dumps(m))["breakdown"] == json.loads(json.dumps(br))


def test_repair_latency_from_the_first_flagged_matched_episode():
    """Repair latency = shown-repaired time of the earliest-flagged matched episode - truth repair_s."""
    dets = [Detection(("P1", "P2"), ("P2",), 104.0, 115.0, 170.0),   # rupture 1 (repair_s 156): +14 s
            Detection(("P2", "P3"), ("P2",), 106.0, 118.0, 150.0),   # same rupture, flagged later: not used
            Detection(("P1", "P3"), ("P1",), 402.0, 420.0, None)]    # rupture 2: never shown repaired
    s = score_file(dets, TRUTH)
    assert s.repair_latency_s == [14.0] and s.unrepaired == 1
    no_repair_s = {**TRUTH, "ruptures": [{k: v for k, v in TRUTH["ruptures"][0].items() if k != "repair_s"}]}
    assert score_file(dets[:1], no_repair_s).repair_latency_s == [20.0]   # falls back to offset_s (150)
    m = aggregate([s, score_file([Detection(("P1", "P2"), ("P1",), 405.0, 425.0, 440.0)], TRUTH)])
    assert m["shown_repaired"] == 2 and m["never_shown_repaired"] == 1
    assert m["median_repair_latency_s"] == pytest.approx((14.0 + (440.0 - 446.0)) / 2)
    assert "repair: 2 of 3 detected ruptures shown repaired; median repair latency" in format_metrics(m)
    assert s.to_dict()["repair_latency_s"] == [14.0] and s.to_dict()["unrepaired"] == 1


def test_detections_carry_the_episode_end_in_truth_time():
    class R:
        origin = 1003.5
        doc = {"episodes": [{"pair": ["P1", "P2"], "people": ["P2"], "onset_s": 56.5, "offset_s": 96.5},
                            {"pair": ["P1", "P2"], "people": ["P1"], "onset_s": 156.5, "offset_s": None}]}
        flagged_s = [66.5, 170.0]

    a, b = detections_from_result(R, {"time_origin": 1000.0})
    assert a.offset_s == 100.0 and b.offset_s is None


def test_a_prompt_closed_without_a_repair_is_not_counted_as_repaired():
    """A long lapse closes its prompt as not repaired (it has an end, but no repair): `attune evaluate` counted it as
    shown repaired, with a repair latency of minutes before the truth's repair (13 of 13 on a chronic conflict
    whose prompts had all lapsed but 3)."""
    lapsed = Detection(("P1", "P2"), ("P2",), 104.0, 115.0, 344.0, repaired=False)   # closed 240 s after its onset
    s = score_file([lapsed], TRUTH)
    assert s.detected == [True, False] and s.unrepaired == 1 and s.repair_latency_s == []
    assert score_file([Detection(("P1", "P2"), ("P2",), 104.0, 115.0, 170.0, repaired=True)],
                      TRUTH).repair_latency_s == [14.0]


def test_recall_is_broken_down_by_whether_a_pair_was_armed_at_the_onset():
    """A rupture needs an attunement to lapse from: given the pairs' armed spans, each truth rupture is labelled by
    whether one of its pairs was armed at its onset (rupture 1 at 100 s: P1-P2 armed from 150 s, P2-P3 never; rupture
    2 at 400 s: P1-P2 armed)."""
    armed = {frozenset(("P1", "P2")): [(150.0, 600.0)], frozenset(("P1", "P3")): [(420.0, 600.0)]}
    s = score_file([D(("P1", "P3"), 398, 415)], TRUTH, armed_spans=armed)
    assert [k["armed"] for k in s.rupture_kinds] == ["not measurably in tune at the onset", "armed at the onset"]
    m = aggregate([s])
    assert m["breakdown"]["recall"]["armed"] == {"armed at the onset": [1, 1],
                                                 "not measurably in tune at the onset": [0, 1]}
    assert ("recall by attunement (a rupture needs one to lapse from): armed at the onset 1/1 (1.00), "
            "not measurably in tune at the onset 0/1 (0.00)") in format_metrics(m)
    assert "armed" not in aggregate([score_file([], TRUTH)])["breakdown"]["recall"]  # no spans given: no axis
