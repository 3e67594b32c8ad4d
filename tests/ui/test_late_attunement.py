"""A couple that comes into tune late (the built-in ``couple-late-attunement``): their coupling is lost for the first
10 minutes (0:05-10:05) and back after that; at 20:00 P2's arousal climbs alone for 90 s.

Arming's threshold rises with the time a pair has been tested without passing, so a pair that comes into tune late
is armed later than one that starts in tune. Known truth here: never armed before the coupling is back (there is
nothing to be in tune with), armed within 3 minutes of its return (measured, seeds 0-5: 1.6-2.1 min, against 0.9-2.0
with a fixed threshold and 1.8-5.6 with the first, log2 rise), and the rupture at 20:00 flagged. Through the user's
commands: ``attune simulate --out`` then ``attune analyze --json``.
"""

from __future__ import annotations

import pytest

from tests.helpers.sessions import simulate_and_analyze

BACK_S = 605.0  # the coupling returns (truth: the first scripted span ends)


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    truth, doc = simulate_and_analyze(tmp_path_factory.mktemp("late"), "couple-late-attunement", 0)
    assert [(r["onset_s"], r["offset_s"]) for r in truth["ruptures"]] == [(5, BACK_S), (1200, 1290)]
    return doc


def test_a_pair_that_comes_into_tune_late_is_armed_within_minutes_of_it(doc):
    (att,) = doc["attunement"]
    spans = att["armed_spans"]
    assert spans, att
    first = spans[0][0]
    assert BACK_S < first <= BACK_S + 180, spans  # not before the coupling is back, within 3 minutes of it


def test_the_late_pairs_rupture_is_flagged(doc):
    eps = doc["episodes"]
    assert len(eps) == 1, eps  # the 10 minutes out of tune at the start are not a rupture: nothing to lapse from
    assert 1200 - 20 <= eps[0]["onset_s"] <= 1290 and eps[0]["pair"] == ["P1", "P2"]
    assert eps[0]["outcome"] == "repaired"
