"""``RuptureDetector.any_calibrating`` (the replay pre-roll's stop test) against the pair states it summarises.

On random sessions (tests/dsp/test_pair_bank.py's ``_plan``), through the per-pair machines and the pair bank, at
every step: ``any_calibrating()`` equals whether some dict of ``pair_states()`` says ``calibrating``, and the
sessions go from every pair learning to none.
"""

from __future__ import annotations

import pytest

from attune_monitor.dsp import pair_bank
from attune_monitor.dsp.detector import RuptureDetector
from tests.dsp.test_pair_bank import LEARNED, _plan


@pytest.mark.parametrize("bank", [False, True])
def test_any_calibrating_says_what_the_pair_states_say(bank):
    if bank and not pair_bank.available():
        pytest.skip("the pair bank needs numba")
    n_people = 8
    det = RuptureDetector([f"P{i}" for i in range(n_people)], ("hr", "eda"), 1.0, LEARNED, arousal=True,
                          pair_bank=bank)
    assert (det._bank is not None) == bank
    seen = set()
    for op in _plan(31, n_people, 400):
        if op[0] == "sync":
            det.update(op[1], op[2], op[3], op[4], op[5])
        elif op[0] == "arousal":
            det.update_arousal(op[1], op[2], op[3])
        elif op[0] == "shared":
            det.note_shared_event(op[1], op[2])
        elif op[0] == "loss":
            det.note_signal_loss(*op[1:])
        else:
            continue
        want = any(ps["state"] == "calibrating" for ps in det.pair_states())
        assert det.any_calibrating() == want
        seen.add(want)
    assert seen == {True, False}
