"""A conflict that lasts (the built-in ``couple-lasting-conflict``): a couple in tune, then from 4:30 their coupling
is lost for 8 minutes while P2's arousal climbs; at 16:00 P1 withdraws for 60 s.

Known truth of the design: a long lapse is a state, not a prompt that stays open. The facilitator gets one prompt
near 4:30, closed as not repaired ``lapse_s`` (4 minutes) after its onset; the pair then reads "out of tune since"
that onset until it is measurably in tune again, which can only be after the coupling is back at 12:30 (measured,
seeds 1-5: re-armed 13:37-15:30; seed 0 showed a repair at 7:43, mid-conflict, when heart synchrony came back part
of the way: docs/validation.md). The rupture at 16:00, once re-armed, is flagged and repaired (seed 3 here).
Through the user's commands: ``attune simulate --out`` then ``attune analyze --json``.
"""

from __future__ import annotations

import pytest

from attune_monitor.dsp.detector import get_preset
from tests.helpers.sessions import simulate_and_analyze

CONFLICT, BACK, WITHDRAWAL = 270.0, 750.0, 960.0  # truth: onsets and the coupling's return


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    truth, doc = simulate_and_analyze(tmp_path_factory.mktemp("lasting"), "couple-lasting-conflict", 3)
    assert [(r["onset_s"], r["offset_s"]) for r in truth["ruptures"]] == [(CONFLICT, BACK),
                                                                          (WITHDRAWAL, WITHDRAWAL + 60)]
    return doc


def test_a_lasting_conflict_is_one_prompt_closed_unrepaired_then_a_state(doc):
    first = doc["episodes"][0]
    assert CONFLICT - 20 <= first["onset_s"] <= CONFLICT + 60, first
    assert first["outcome"] == "unrepaired" and not first["repaired"]
    assert first["offset_s"] == pytest.approx(first["onset_s"] + get_preset("balanced").lapse_s, abs=1.0)
    assert not [e for e in doc["episodes"][1:] if e["onset_s"] < BACK]  # no stream of prompts during it
    (att,) = doc["attunement"]
    (since, until), *_ = att["out_of_tune_spans"]
    assert since == pytest.approx(first["offset_s"], abs=1.0)
    assert BACK < until <= BACK + 180, att  # measurably in tune again only once the coupling is back


def test_the_rupture_after_the_pair_is_back_in_tune_is_flagged_and_repaired(doc):
    later = [e for e in doc["episodes"] if e["onset_s"] > BACK]
    assert len(later) == 1, doc["episodes"]
    assert WITHDRAWAL - 20 <= later[0]["onset_s"] <= WITHDRAWAL + 60 and later[0]["outcome"] == "repaired"
