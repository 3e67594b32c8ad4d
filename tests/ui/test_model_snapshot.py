"""The view model's snapshot against its previous implementation (tests/ui/snapshot_reference.py), field by field.

The snapshot now keeps per-window results between calls (the combined series and Fisher z of every pair and
window computed once, the matrix, connectedness and ties from them), reads the pair states as columns and builds
the shown pair dicts only when a view reads them. On the same sessions, every field of every snapshot must equal
the previous code's: arrays with the same dtype, shape and NaNs, floats within a few units in the last place
(:func:`_equal`: bitwise on some CPUs, not on all), everything else through ``repr``. Sessions: a random
32-person one through the detector (the pair bank's table, one modality per update: the modalities' windows out
of step), an 8-person pipeline session (both modalities' windows in one update, grid data, the rings wrapping,
snapshot lengths changing between calls), and a 5-person one (the machines' dict list).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from attune_monitor.dsp import pair_bank
from attune_monitor.dsp.detector import RuptureDetector
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot
from attune_monitor.ui.model import SessionModel, ShownPairStates, Snapshot
from tests.dsp.test_pair_bank import LEARNED, _plan, feed
from tests.ui.snapshot_reference import ReferenceModel

FIELDS = [f.name for f in dataclasses.fields(Snapshot)]


def _canon(x):
    """A comparable form: arrays as (dtype, shape, bytes), containers element by element, the rest by ``repr``."""
    if isinstance(x, np.ndarray):
        return ("ndarray", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if isinstance(x, dict):
        return ("dict", [(repr(k), _canon(v)) for k, v in x.items()])
    if isinstance(x, (list, tuple, ShownPairStates)):
        return (type(x).__name__ if not isinstance(x, ShownPairStates) else "list", [_canon(v) for v in x])
    return repr(x)


def _equal(a, b) -> bool:
    """``a`` equals ``b``: float arrays within a few units in the last place (same dtype, shape and NaNs), the rest
    as :func:`_canon` sees it.

    The reference adds some of the same numbers in another order; which order numpy's reductions take depends on
    the CPU's vector units, so on some machines (an AMD EPYC here, 2026-12-07) the person ties' series differed
    from the reference's by 2e-16 at one look while equal bit for bit on others.
    """
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype.kind == "f":
        return (a.dtype == b.dtype and a.shape == b.shape
                and bool(np.allclose(a, b, rtol=4 * np.finfo(a.dtype).eps, atol=1e-15, equal_nan=True))
                and bool((np.isnan(a) == np.isnan(b)).all()))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(map(repr, a)) == list(map(repr, b)) and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple, ShownPairStates)) and isinstance(b, (list, tuple, ShownPairStates)):
        return (_canon(a)[0] == _canon(b)[0] and len(a) == len(b)
                and all(_equal(x, y) for x, y in zip(a, b)))
    return _canon(a) == _canon(b)


def _same(new, ref, where) -> None:
    for f in FIELDS:
        assert _equal(getattr(new, f), getattr(ref, f)), (where, f)
    assert repr(new.pair_states) == repr(ref.pair_states) and new.pair_states == ref.pair_states


def _detector_session(n_people: int, bank: bool, seed: int, lengths=(60.0, 30.0, 31.0, 200.0)) -> int:
    """Feed ``_plan``'s random session to a detector, a model and the reference; compare at every look."""
    people = [f"P{i}" for i in range(n_people)]
    det = RuptureDetector(people, ("hr", "eda"), 1.0, LEARNED, arousal=True, pair_bank=bank)
    assert (det._bank is not None) == bank
    new = SessionModel(people, ("hr", "eda"), det.pairs, 4.0, 1.0, history_s=120.0, preset=LEARNED)
    ref = ReferenceModel(people, ("hr", "eda"), det.pairs, 4.0, 1.0, history_s=120.0, preset=LEARNED)
    looks = 0
    for op in _plan(seed, n_people, 330):
        upd = feed(det, op)
        if upd is None:
            continue
        if upd == "look":
            seconds = lengths[looks % len(lengths)]
            a, b = new.snapshot(seconds), new.snapshot(seconds)  # the second one from what the first kept
            want = ref.snapshot(seconds)
            _same(a, want, (looks, seconds))
            _same(b, want, (looks, seconds, "again"))
            looks += 1
            continue
        table = det.pair_table()
        new.apply(upd, table, {})
        ref.apply(upd, table, {})
    return looks


@pytest.mark.skipif(not pair_bank.available(), reason="the pair bank needs numba")
def test_snapshot_of_a_large_group_as_before():
    assert _detector_session(32, True, 21) > 10


def test_snapshot_of_a_small_group_as_before():
    assert _detector_session(5, False, 22) > 10


def _signals(n_people: int, seconds: float, seed: int):
    """Heart rate (1 Hz) and skin conductance (4 Hz) moving together with each person's own walk and noise."""
    rng = np.random.default_rng(seed)

    def walks(n, fs, scale):
        shared = np.cumsum(rng.standard_normal(n)) * scale / np.sqrt(fs)
        own = np.cumsum(rng.standard_normal((n_people, n)), 1) * 0.5 * scale / np.sqrt(fs)
        return shared + own + 0.1 * scale * rng.standard_normal((n_people, n))

    n_hr, n_eda = int(seconds), int(seconds * 4)
    hr = 70 + 5 * np.tanh(walks(n_hr, 1.0, 1.0) / 5)
    eda = 5 + np.abs(walks(n_eda, 4.0, 0.02))
    return np.arange(n_hr) + 0.5, hr, np.arange(n_eda) / 4 + 0.125, eda


def test_snapshot_of_a_pipeline_session_as_before():
    """Both modalities' windows in one update (the live case: each window's columns computed once and kept), grid
    data, rings of 60 windows wrapping, and snapshots of changing lengths, taken every 1.25 s of session."""
    n_people, seconds = 8, 260.0
    people = [f"P{k + 1}" for k in range(n_people)]
    slots = [Slot(p, "hr", 1.0, f"{p}-hr") for p in people] + [Slot(p, "eda", 4.0, f"{p}-eda") for p in people]
    cfg = PipelineConfig()
    pipe = SessionPipeline(slots, 0.0, cfg)
    args = (pipe.participants, pipe.modalities, pipe.pairs, cfg.fs, cfg.step_s, 60.0)
    new, ref = SessionModel(*args, preset=cfg.preset), ReferenceModel(*args, preset=cfg.preset)
    t_hr, hr, t_eda, eda = _signals(n_people, seconds + 5, 5)
    lengths = (30.0, 30.0, 45.0, 29.0, 90.0, 30.0, 3.0, 0.5)
    i_hr = i_eda = 0
    looks = 0
    for k in range(1, int(seconds * 4) + 1):
        until = k / 4
        j_hr, j_eda = np.searchsorted(t_hr, until, "right"), np.searchsorted(t_eda, until, "right")
        for p in range(n_people):
            if j_hr > i_hr:
                pipe.push(p, t_hr[i_hr:j_hr], hr[p, i_hr:j_hr])
            if j_eda > i_eda:
                pipe.push(n_people + p, t_eda[i_eda:j_eda], eda[p, i_eda:j_eda])
        i_hr, i_eda = int(j_hr), int(j_eda)
        upd = pipe.advance(until)
        table = pipe.detector.pair_table()
        new.apply(upd, table, {}, ties=pipe.detector.person_ties)
        ref.apply(upd, table, {}, ties=pipe.detector.person_ties)
        if k % 5 == 0:
            s = lengths[looks % len(lengths)]
            _same(new.snapshot(s), ref.snapshot(s), (until, s))
            looks += 1
    snap = new.snapshot(30.0)
    assert snap.sync["combined"][1].shape == (28, 30) and np.isfinite(snap.matrix).sum() == 56
    assert any(ps["state"] != "calibrating" for ps in snap.pair_states)
    assert new._windows.lo > 100  # the kept windows moved on with the session (the store refilled)
