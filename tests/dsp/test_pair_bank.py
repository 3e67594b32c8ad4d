"""The pair bank (every pair in arrays, one compiled step) against the per-pair machines it replaces in groups.

The per-pair :class:`PairMachine` path is the reference: on the same inputs both detectors must give the same event
stream (every field, compared through ``repr``, so bitwise for floats and NaN-safe), the same ``pair_states()``,
person ties and episodes, and the same internal state of every pair and track.
"""

from __future__ import annotations

import collections
import functools
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from attune_monitor.dsp import detector as D
from attune_monitor.dsp import pair_bank
from attune_monitor.dsp.detector import RuptureDetector, get_preset

pytestmark = pytest.mark.skipif(not pair_bank.available(), reason="the pair bank needs numba")

# fast configs, so that a few hundred steps arm, flag, repair, lapse and re-arm
# (short arming spans: many spans tested within these 420-s sessions, so the arming thresholds rise)
LEARNED = replace(get_preset("balanced"), arm_span_s=30.0, lapse_s=90.0, min_repaired_s=3.0, learned_h=4.0,
                  learned_k=0.5, merge_gap_s=60.0, group_h_factor=1.0)
ANALYTIC = replace(get_preset("sensitive", "analytic"), arm_span_s=25.0, lapse_s=70.0, min_repaired_s=3.0,
                   arousal_evidence=True, cusum_h=5.0, drift_h=2.0, merge_gap_s=60.0,
                   group_h_factor=1.0)


def _plan(seed: int, n_people: int, n_steps: int) -> list:
    """A random session, as the calls to make: synchrony falling to chance and back (single pairs and one person
    with everyone), NaNs, gaps, missing modalities and whole steps, signal losses, markers, random chunking."""
    rng = np.random.default_rng(seed)
    n_pairs = n_people * (n_people - 1) // 2
    iu = np.triu_indices(n_people, 1)
    level = rng.uniform(0.35, 0.85, (2, n_pairs))
    times = np.arange(1.0, n_steps + 1.0)
    skip = rng.random(n_steps) < 0.002 # whole steps missing (a gap for every pair)
    skip[:40] = False
    times = times[~skip]
    T = times.size
    sync = level[:, :, None] + 0.12 * rng.standard_normal((2, n_pairs, T))
    for _ in range(rng.integers(2, 4) + n_pairs // 3):  # single pairs fall to chance and come back (or not)
        p = rng.integers(n_pairs)
        a = rng.integers(60, T - 20)
        b = min(T, a + rng.integers(20, 130))
        sync[0, p, a:b] = 0.05 * rng.standard_normal(b - a)
        a2 = min(b, a + rng.integers(0, 25))  # the other modality follows a little later (or at once)
        sync[1, p, a2:b] = 0.05 * rng.standard_normal(b - a2)
    for _ in range(3):  # a drop, a brief recovery, a relapse
        p, a = rng.integers(n_pairs), rng.integers(60, T - 150)
        sync[:, p, a:a + 50] = 0.05 * rng.standard_normal((2, 50))
        sync[:, p, a + 65:a + 125] = 0.05 * rng.standard_normal((2, 60))
    drifting = rng.choice(n_people, 2, replace=False)  # two people drift away from everyone (one after the other)
    starts = (rng.integers(70, 150), rng.integers(220, 300))
    for person, a in zip(drifting, starts):
        mine = (iu[0] == person) | (iu[1] == person)
        sync[:, mine, a:a + 70] = level[:, mine, None] * rng.uniform(0.0, 0.3) + 0.05 * rng.standard_normal(
            (2, mine.sum(), 70))
    sync[rng.random(sync.shape) < 0.02] = np.nan  # lost windows
    for _ in range(3):  # a gap of one pair in one modality
        p, m, a = rng.integers(n_pairs), rng.integers(2), rng.integers(T - 10)
        sync[m, p, a:a + rng.integers(3, 8)] = np.nan
    sync = np.clip(sync, -1.0, 1.0)
    chance = 0.05 * rng.standard_normal((2, n_pairs, T))
    chance_sd = np.where(rng.random((2, n_pairs, T)) < 0.05, np.nan, rng.uniform(0.05, 0.2, (2, n_pairs, T)))
    llr = 2.0 * rng.standard_normal((n_people, T)) - 3.0
    for person, a in zip(drifting, starts):
        llr[person, a:a + 70] += 7.0
    llr[rng.random(llr.shape) < 0.05] = np.nan
    div = rng.standard_normal((n_people, len(D.DIVERGENCE_FEATURES), T))
    eda_present = rng.random(T) > 0.03  # steps without an EDA window at all
    ops: list = []
    for _ in range(rng.integers(1, 3)):  # markers / task switches, noted before their time
        ops.append(("shared", float(rng.uniform(60, times[-1])), "marker"))
    losses = []
    for _ in range(rng.integers(1, 3)):
        who = f"P{rng.integers(n_people)}"
        onset = float(rng.uniform(50, times[-1] - 30))
        losses.append((who, onset, onset + 2.0, onset + float(rng.uniform(5, 60))))
    k = 0
    while k < T:
        n = int(rng.integers(1, 6))
        sl = slice(k, k + n)
        t_chunk = times[sl]
        for who, onset, known, offset in losses:  # a loss is noted when it is known, its end when it ends
            if t_chunk[0] <= known < t_chunk[-1] + 1:
                ops.append(("loss", who, onset, known, None))
            if t_chunk[0] <= offset < t_chunk[-1] + 1:
                ops.append(("loss", who, onset, known, offset))
        feeds = [("sync", "hr", t_chunk, sync[0][:, sl], chance[0][:, sl], chance_sd[0][:, sl]),
                 ("arousal", t_chunk, llr[:, sl], div[:, :, sl])]
        e = eda_present[sl]
        feeds.append(("sync", "eda", t_chunk[e], sync[1][:, sl][:, e], chance[1][:, sl][:, e],
                      chance_sd[1][:, sl][:, e]))
        for j in rng.permutation(len(feeds)):
            ops.append(feeds[j])
        if rng.random() < 0.3:
            ops.append(("look",))
        k += n
    return ops


def feed(det, op):
    """Apply one :func:`_plan` op to ``det`` as the pipeline would: the view model's ``Update`` for a synchrony or
    arousal step, None for what only the detector hears (a marker, a signal loss), ``"look"`` for a look."""
    from attune_monitor.dsp.pipeline import Update

    if op[0] == "sync":
        events = det.update(op[1], op[2], op[3], op[4], op[5])
        return Update(windows={op[1]: {"t": op[2], "sync": op[3], "chance": op[4]}}, events=events)
    if op[0] == "arousal":
        return Update(events=det.update_arousal(op[1], op[2], op[3]), arousal_t=op[1], arousal=op[2],
                      arousal_div=op[3])
    if op[0] == "shared":
        det.note_shared_event(op[1], op[2])
        return None
    if op[0] == "loss":
        det.note_signal_loss(*op[1:])
        return None
    return "look"


def _run(ops: list, n_people: int, config, bank: bool, modalities=("hr", "eda"), arousal: bool = True):
    det = RuptureDetector([f"P{i}" for i in range(n_people)], modalities, 1.0, config, arousal=arousal,
                          pair_bank=bank)
    assert (det._bank is not None) == bank
    out: list = []
    looks: list = []
    for op in ops:
        if op[0] == "sync":
            if op[1] in modalities:
                out += det.update(op[1], op[2], op[3], op[4], op[5])
        elif op[0] == "arousal":
            if arousal:
                out += det.update_arousal(op[1], op[2], op[3])
        elif op[0] == "shared":
            det.note_shared_event(op[1], op[2])
        elif op[0] == "loss":
            det.note_signal_loss(*op[1:])
        else:  # the pair-state table as the runner takes it, its dicts read only at the end (a copy, not a view)
            looks.append((det.pair_table(), repr(det.person_ties), repr(det.person_arousal.tolist())))
    looks = [(repr(list(table)), *rest) for table, *rest in looks]
    looks.append((repr(det.pair_states()), repr(det.person_ties), repr(det.person_arousal.tolist())))
    episodes = det.finish()
    return det, out, looks, episodes


MACHINE = ("state", "state_since", "evidence", "_run_start", "_low_t", "drop", "smooth_drop", "smooth_arousal",
           "last_inc", "out_of_tune_since", "_cand_since", "_onset_floor", "h_scale", "used", "severity")
TRACK = ("valid_s", "baseline_z", "first_baseline_z", "chance_z", "chance_sd", "z", "smooth_z", "drop",
         "_guard_until", "_last_valid_t", "excess", "excess_se", "ever_full", "calibrating", "margin",
         "spread_factor", "testable_since", "arm_need")


def _state_of(det) -> list:
    rows = []
    for mach in det.machines:
        rows.append(repr([getattr(mach, a) for a in MACHINE]) + repr(mach.episode))
        for tr in mach.tracks.values():
            rows.append(repr([getattr(tr, a) for a in TRACK]) + repr(list(tr._arm)) + repr(tr._arm_sums))
    return rows


CONFIGS = {"learned": LEARNED, "analytic": ANALYTIC}
CASES = [(30, 3, "learned"), (31, 4, "analytic"), (32, 5, "learned"), (9, 6, "learned"), (9, 6, "analytic"),
         (28, 7, "learned"), (29, 8, "analytic"), (11, 8, "learned")]


@functools.cache
def _reference(seed: int, n_people: int, config: str):
    ops = _plan(seed, n_people, 420)
    return ops, _run(ops, n_people, CONFIGS[config], bank=False)


@pytest.mark.parametrize("seed, n_people, config", CASES)
def test_bank_gives_the_machines_events_states_and_episodes(seed, n_people, config):
    ops, ref = _reference(seed, n_people, config)
    got = _run(ops, n_people, CONFIGS[config], bank=True)
    kinds = {type(e).__name__ for e in ref[1]}
    # the sessions exercise what the bank must reproduce (the reference's own events, not the bank's)
    assert {"StateChanged", "EpisodeOpened", "EpisodeRepaired"} <= kinds, kinds
    assert [repr(e) for e in got[1]] == [repr(e) for e in ref[1]]
    assert got[2] == ref[2]  # pair_table() / pair_states(), person ties, person arousal at random moments and the end
    assert isinstance(got[0].pair_table(), pair_bank.PairStateTable) and isinstance(ref[0].pair_table(), list)
    assert [repr(e) for e in got[3]] == [repr(e) for e in ref[3]]
    assert _state_of(got[0]) == _state_of(ref[0])
    assert got[0].shared_events == ref[0].shared_events and ref[0].shared_events


@pytest.mark.parametrize("config", ["learned", "analytic"])
def test_the_sessions_exercise_the_rising_arming_threshold(config):
    """The reference's events change when the arming threshold is fixed: the parity above covers the rise."""
    ops, ref = _reference(9, 6, config)
    fixed = _run(ops, 6, replace(CONFIGS[config], arm_correct=False), bank=False)
    assert [repr(e) for e in fixed[1]] != [repr(e) for e in ref[1]]
    assert any(tr.testable_since == tr.testable_since for m in ref[0].machines for tr in m.tracks.values())


@pytest.mark.parametrize("modalities, arousal, config", [
    (("hr",), True, "learned"), (("hr", "eda"), False, "analytic"), (("eda",), False, "analytic")])
def test_bank_without_arousal_or_with_one_modality(modalities, arousal, config):
    ops = _plan(9, 6, 420)
    ref = _run(ops, 6, CONFIGS[config], False, modalities, arousal)
    got = _run(ops, 6, CONFIGS[config], True, modalities, arousal)
    assert any(type(e).__name__ == "StateChanged" for e in ref[1])
    assert [repr(e) for e in got[1]] == [repr(e) for e in ref[1]]
    assert got[2] == ref[2]
    assert [repr(e) for e in got[3]] == [repr(e) for e in ref[3]]
    assert _state_of(got[0]) == _state_of(ref[0])


def test_the_random_sessions_cover_every_kind_of_event():
    """Over the sessions above, the reference raises every event and outcome the bank must reproduce."""
    kinds: set = set()
    for case in CASES:
        _, (_, events, _, episodes) = _reference(*case)
        kinds |= {type(e).__name__ for e in events}
        kinds |= {f"outcome:{ep.outcome}" for ep in episodes}
        kinds |= {"one person named" for ep in episodes if len(ep.people) == 1}
        kinds |= {"several modalities" for ep in episodes if len(ep.modalities) > 1}
        named = collections.Counter((ep.flagged_s, ep.people[0]) for ep in episodes if len(ep.people) == 1)
        kinds |= {"a person's tie flags their pairs" for k in named.values() if k >= 2}
    assert {"StateChanged", "EpisodeOpened", "EpisodeReopened", "EpisodeRepaired", "EpisodeClosed",
            "outcome:repaired", "outcome:unrepaired", "outcome:interrupted", "outcome:session_end",
            "one person named", "several modalities", "a person's tie flags their pairs"} <= kinds, kinds


def test_views_are_read_only_and_h_scale_is_shared():
    det = RuptureDetector(["a", "b", "c"], ("hr", "eda"), 1.0, "balanced", arousal=True, pair_bank=True)
    with pytest.raises(TypeError):
        det.machines[0].step(1.0, {})
    det.machines[1].h_scale = 3.0
    assert det._bank.PF[1, 11] == 3.0 and det.machines[1].h_scale == 3.0


def test_bank_refuses_configs_it_does_not_implement():
    with pytest.raises(ValueError, match="arming"):
        RuptureDetector(["a", "b", "c"], config=replace(get_preset("balanced"), arming=False), pair_bank=True)
    # by default such a config keeps the machines, whatever the size
    det = RuptureDetector([f"P{i}" for i in range(9)], config=replace(get_preset("balanced"), group_prior_weight=0.5))
    assert det._bank is None and len(det.pairs) >= D.PAIR_BANK_MIN_PAIRS


def test_size_threshold_and_a_dyad_does_not_import_numba():
    code = ("import sys; from attune_monitor.dsp.detector import RuptureDetector, PAIR_BANK_MIN_PAIRS as N\n"
            "d = RuptureDetector(['a', 'b'], arousal=True); assert d._bank is None\n"
            "g = RuptureDetector([f'P{i}' for i in range(7)]); assert d._bank is None and len(g.pairs) < N\n"
            "assert 'numba' not in sys.modules, 'numba imported'\n"
            "g = RuptureDetector([f'P{i}' for i in range(8)]); assert g._bank is not None\n"
            "assert 'numba' in sys.modules\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_pow_two_is_libm_pow_not_a_product():
    """The kernel's ``x ** prm[TWO]`` must be Python's ``x ** 2`` (libm pow), which is not always ``x * x``."""
    from attune_monitor.dsp import _pair_kernels as K

    sd = np.random.default_rng(0).uniform(1.01, 10.0, 20000)
    ratio = (1.0 / sd).tolist()
    assert any(r ** 2 != r * r for r in ratio)  # the premise: a product would differ somewhere
    TF = np.full((sd.size, 1, K.NTF), np.nan)
    TF[:, 0, K.T_CSD] = sd
    prm = np.zeros(K.N_PRM)
    prm[K.C_TWO], prm[K.C_REF_SD] = 2.0, 1.0
    got = [K._spread_factor(p, 0, TF, prm) for p in range(sd.size)]
    assert got == [r ** 2 for r in ratio]


@pytest.fixture(scope="module")
def group_recording(tmp_path_factory):
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf

    session = simulate_session(load_scenario("group-withdrawal").with_participants(8), seed=4)
    path = tmp_path_factory.mktemp("bank") / "group-withdrawal-8.xdf"
    write_session_xdf(session, path)
    return load_recording(path)


def test_a_simulated_group_session_through_the_pipeline_gives_the_same_episodes(group_recording, monkeypatch):
    """``group-withdrawal`` with 8 people (28 pairs) analysed by the live pipeline, with and without the bank."""
    from attune_monitor.analysis import analyze_recording

    steps = []
    step = pair_bank.PairBank.step

    def counted(self, *args, **kwargs):
        steps.append(args[0])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(pair_bank.PairBank, "step", counted)
    monkeypatch.setattr(D, "PAIR_BANK_MIN_PAIRS", 10**9)
    ref = analyze_recording(group_recording, chunk_s=60.0)
    assert not steps
    monkeypatch.setattr(D, "PAIR_BANK_MIN_PAIRS", 28)
    got = analyze_recording(group_recording, chunk_s=60.0)
    assert len(steps) > 300 and len(ref.pairs) == 28
    assert ref.episodes and any("P3" in ep.pair for ep in ref.episodes)  # the scripted withdrawal is flagged
    assert [repr(ep) for ep in got.episodes] == [repr(ep) for ep in ref.episodes]
    assert [ep.to_json() for ep in got.episodes] == [ep.to_json() for ep in ref.episodes]
    assert got.state_changes == ref.state_changes and got.flag_times == ref.flag_times


def test_round4_is_round_bit_for_bit():
    """``pair_bank.round4`` (pair_states' excess) against Python's ``round(x, 4)``, halfway cases included."""
    rng = np.random.default_rng(0)
    half = (rng.integers(-10**6, 10**6, 50000) + 0.5) / 1e4  # decimals ending in 5 at the 5th place
    near = half + rng.choice([-1, 1], half.size) * np.spacing(half) * rng.integers(0, 3, half.size)
    x = np.concatenate([rng.standard_normal(50000) * s for s in (1e-4, 1e-2, 1.0, 1e3)] + [half, near, [
        0.0, -0.0, np.nan, np.inf, -np.inf, 1e300, -1e-320, 5e-5, -5e-5, 1.5e15, 0.00015, 2.675]])
    want = [round(v, 4) if math.isfinite(v) else None for v in x.tolist()]
    assert repr(pair_bank.round4(x)) == repr(want)  # (repr: -0.0 and 0.0 apart)


def test_trim_mean_rows_is_trim_mean_of_each_row_bit_for_bit():
    """The baselines of the tracks armed in one step are trimmed together (``trim_mean_rows``): bitwise
    ``detector.trim_mean`` of each span (its partition and pairwise mean), NaN rows, ties and Fisher z included."""
    rng = np.random.default_rng(3)
    for n in (0, 1, 2, 3, 7, 20, 30, 59, 60, 61, 120, 129, 300):
        A = rng.standard_normal((40, n))
        A[::3] = np.round(A[::3], 1)  # ties
        A[1::3] = np.arctanh(np.clip(rng.normal(0.5, 0.25, (len(A[1::3]), n)), -0.999, 0.999))
        if n:
            A[5, rng.integers(n)] = np.nan
        for cut in (0.0, 0.1, 0.25, 0.5):
            want = [D.trim_mean(row.tolist(), cut) for row in A]
            assert repr(pair_bank.trim_mean_rows(A, cut).tolist()) == repr(want), (n, cut)
    with pytest.raises(ValueError, match="proportiontocut"):
        pair_bank.trim_mean_rows(np.zeros((2, 5)), 0.7)


def test_the_kernels_inverse_normal_is_bitwise_the_detectors():
    """The arming threshold's quantile: the compiled ``_normal_isf`` and ``detector.normal_isf`` agree to the bit."""
    from attune_monitor.dsp import _pair_kernels as K
    from attune_monitor.dsp.detector import normal_isf

    tails = np.concatenate([np.geomspace(1e-300, 0.5, 5000), np.random.default_rng(1).uniform(0, 1, 5000)]).tolist()
    assert [K._normal_isf(p) for p in tails] == [normal_isf(p) for p in tails]
