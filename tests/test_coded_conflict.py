"""Real rupture timing: two behaviour-coded conflict discussions (``../shared/realdata/conflict-codes``) as simulated
couples (``bench/coded_conflict.py``).

Known truth from the codes themselves: the high-satisfaction dyad is negative once, 8:22-9:30 (the parent's
defensiveness at 8:22-8:25 and 9:03-9:29, the adolescent's tension at 8:33-8:57); the low-satisfaction dyad is
negative from its first coded second to its last. A couple in that second state is the issue's "long lapse":
after an attuned lead-in a facilitator gets one prompt, closed as unrepaired ``lapse_s`` after its onset, then
"out of tune since" to the end; played from the first second, with nothing to lapse from, no prompt at all.
Skipped without the shared data.
"""

from __future__ import annotations

import pytest

from attune_monitor.dsp.detector import get_preset
from tests.helpers.bench import load_bench
from tests.helpers.sessions import simulate_and_analyze

cc = load_bench("coded_conflict")
LAPSE_S = get_preset("balanced").lapse_s


@pytest.fixture(scope="module")
def codes(realdata):
    folder = realdata / "conflict-codes"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return {dyad: cc.read_codes(folder / name) for dyad, name in cc.DYADS.items()}


def test_the_codes_give_the_dyads_negative_runs(codes):
    high, low = codes["high"], codes["low"]
    assert len(high) == 610 and len(low) == 604  # coded seconds (the high dyad's file skips 495-500)
    by_t = {t: (p, a) for t, p, a in high}
    assert by_t[502] == ("Defensiveness", "Affection") and by_t[513] == ("Neutral", "Tension")
    (run,), short = cc.coded_ruptures(high)
    assert short == []
    assert (run["onset_s"], run["duration_s"], run["who"], run["family"]) == (502, 68, "P", "partial")
    assert run["kinds"] == {"tension": 4 + 27 + 25}  # P 502-505 and 543-569, A 513-537
    (run,), short = cc.coded_ruptures(low)
    assert (run["onset_s"], run["duration_s"], run["who"], run["family"]) == (0, 604, "A", "aversive")
    # without merging across gaps, the parent's bursts are many short runs
    runs, _ = cc.coded_ruptures(low, merge_gap_s=0.0, min_s=0.0)
    assert len(runs) > 5


def _analyse(tmp_path, dyad, seed, lead_in_s):
    text, sc = cc.scenario(dyad, seed, lead_in_s)
    toml = tmp_path / f"{dyad}.toml"
    toml.write_text(text)
    return sc, simulate_and_analyze(tmp_path, toml, seed)[1]


def test_a_chronic_conflict_after_an_attuned_start_is_one_prompt_then_out_of_tune(codes, tmp_path):
    sc, doc = _analyse(tmp_path, "low", 80502, 300.0)
    (rup,) = sc["ruptures"]
    assert (rup["onset_s"], rup["duration_s"]) == (300.0, 604.0)
    (ep,) = doc["episodes"]  # one prompt, not a stream of them
    assert rup["onset_s"] - 20 <= ep["onset_s"] <= rup["onset_s"] + 60, ep
    assert ep["outcome"] == "unrepaired" and ep["offset_s"] == pytest.approx(ep["onset_s"] + LAPSE_S, abs=1.0)
    (att,) = doc["attunement"]
    ((since, until),) = att["out_of_tune_spans"]
    assert since == pytest.approx(ep["offset_s"], abs=1.0) and until >= doc["duration_s"] - 1.0


def test_a_conflict_from_the_first_second_raises_nothing(codes, tmp_path):
    _sc, doc = _analyse(tmp_path, "low", 80502, 0.0)
    assert doc["episodes"] == []
    (att,) = doc["attunement"]
    assert att["armed_fraction"] < 0.05 and att["verdict"] != "in tune", att
