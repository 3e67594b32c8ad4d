"""The view model fed the detector's pair-state table (large groups) against the same model fed the dict list.

The reference is the per-pair machines' ``pair_states()`` (a list of dicts built on every change) handed to one
:class:`SessionModel`; the other model takes the pair bank's ``pair_table()`` as the runner hands it over (its dicts
built only when a snapshot reads them). On the same random session, every snapshot field that is read from the
pair states (the states themselves, words, ties, arming, pair arousal, episodes, groups) and the terminal view's
lines (every pair listed) must be identical, compared through ``repr`` (bitwise for floats, NaN-safe).
"""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp import pair_bank
from attune_monitor.dsp.detector import RuptureDetector
from attune_monitor.ui.headless import render
from attune_monitor.ui.model import SessionModel
from tests.dsp.test_pair_bank import LEARNED, _plan, feed

FIELDS = ("pair_states", "ties", "arming", "pair_arousal", "episodes", "groups", "people_arousal", "status")


def _look(model) -> list[str]:
    """The snapshot fields read from the pair states, and the terminal view's lines (every pair's words)."""
    snap = model.snapshot(60.0)
    return [repr(getattr(snap, f)) for f in FIELDS] + ["\n".join(render(snap, width=400, compact=False))]


def _session(ops: list, n_people: int, bank: bool, take) -> list[str]:
    """Feed ``ops`` to a detector and a model (``take(det)``: what the model is handed); the snapshots at looks."""
    people = [f"P{i}" for i in range(n_people)]
    det = RuptureDetector(people, ("hr", "eda"), 1.0, LEARNED, arousal=True, pair_bank=bank)
    assert (det._bank is not None) == bank
    model = SessionModel(people, ("hr", "eda"), det.pairs, 4.0, 1.0, history_s=120.0, preset=LEARNED)
    looks = []
    for op in ops:
        upd = feed(det, op)
        if upd == "look":
            looks.append(_look(model))
        elif upd is not None:
            model.apply(upd, take(det), {})
    looks.append(_look(model))
    return looks


@pytest.mark.skipif(not pair_bank.available(), reason="the pair bank needs numba")
def test_model_given_the_bank_table_shows_what_the_dict_path_shows():
    n_people = 32
    ops = _plan(11, n_people, 330)
    ref = _session(ops, n_people, False, lambda det: det.pair_states())
    got = _session(ops, n_people, True, lambda det: det.pair_table())
    assert len(got) == len(ref) > 10
    flagged = [k for k, look in enumerate(ref) if "possible_rupture" in look[0]]
    assert flagged and any("not_in_tune" in look[0] for look in ref)  # the session has what the views show
    assert any("vs chance: heart" in look[-1] for look in ref)  # per-modality numbers in the terminal view
    for k, (a, b) in enumerate(zip(got, ref)):
        for f, x, y in zip((*FIELDS, "headless"), a, b):
            assert x == y, (k, f)


def test_model_of_a_small_group_takes_the_machines_list():
    """A small group's ``pair_table()`` is ``pair_states()``' list: the model shows the same either way."""
    n_people = 5
    ops = _plan(12, n_people, 400)
    ref = _session(ops, n_people, False, lambda det: det.pair_states())
    got = _session(ops, n_people, False, lambda det: det.pair_table())
    assert len(got) == len(ref) > 10 and got == ref
    assert any("possible_rupture" in look[0] for look in ref)


def test_pair_table_rows_are_read_once_and_shared():
    """The table's dicts are built on the first read and shared by later reads (and by ``pair_states()``)."""
    if not pair_bank.available():
        pytest.skip("the pair bank needs numba")
    n_people = 8
    ops = _plan(13, n_people, 400)
    det = RuptureDetector([f"P{i}" for i in range(n_people)], ("hr", "eda"), 1.0, LEARNED, arousal=True,
                          pair_bank=True)
    for op in ops:
        if op[0] == "sync":
            det.update(op[1], op[2], op[3], op[4], op[5])
        elif op[0] == "arousal":
            det.update_arousal(op[1], op[2], op[3])
    table = det.pair_table()
    assert table._rows is None and len(table) == len(det.pairs) == 28
    first = table[0]
    assert table._rows is not None and list(table)[0] is first and det.pair_states()[0] is first
    assert det.pair_table() is table
    assert [ps["pair"] for ps in table] == det.pairs
    assert np.isfinite([ps["evidence"] for ps in table]).all()
