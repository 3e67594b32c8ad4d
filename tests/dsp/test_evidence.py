"""Learned rupture evidence (dsp.evidence): streaming features, the numpy tree evaluator, the shipped ensemble."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from attune_monitor.dsp import evidence
from attune_monitor.dsp.divergence import FEATURES as DIV
from attune_monitor.dsp.evidence import (
    FEATURES,
    LAGGED,
    LAGS,
    MODEL_PATH,
    REL_MIN,
    REL_SPAN,
    PairFeatures,
    TreeEnsemble,
    shipped_model,
)
from tests.helpers.bench import load_bench


def _inputs(T: int, n: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_pairs = n * (n - 1) // 2
    hz = rng.normal(0.6, 0.3, (T, n_pairs))
    ez = rng.normal(0.4, 0.3, (T, n_pairs))
    hz[rng.random(hz.shape) < 0.05] = np.nan  # missing windows
    ez[40:90, 1] = np.nan  # a gap in one pair's skin conductance
    hc = rng.normal(0.0, 0.05, (T, n_pairs))
    ec = rng.normal(0.0, 0.05, (T, n_pairs))
    L = rng.normal(-2.0, 1.5, (T, n))
    L[:30] = np.nan
    D = rng.normal(0.0, 1.0, (T, n, len(DIV)))
    return hz, hc, ez, ec, L, D


def test_features_chunked_equal_batch():
    T, n = 700, 3
    args = _inputs(T, n)
    iu = np.triu_indices(n, 1)
    batch = PairFeatures(n, iu).push(*args)
    pf = PairFeatures(n, iu)
    bounds = [0, 1, 7, 8, 150, 151, 333, 520, 699, 700]
    parts = [pf.push(*(a[b0:b1] for a in args)) for b0, b1 in zip(bounds[:-1], bounds[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), batch)


def test_features_against_direct_computation():
    """Each column checked against a plain per-step computation (np.nanmedian, index arithmetic)."""
    T, n = 500, 3
    hz, hc, ez, ec, L, D = _inputs(T, n, seed=3)
    iu = np.triu_indices(n, 1)
    X = PairFeatures(n, iu).push(hz, hc, ez, ec, L, D)
    assert X.shape == (T, 3, len(FEATURES))
    col = {name: k for k, name in enumerate(FEATURES)}
    lo, gap = REL_SPAN
    for s in (0, 25, 49, 60, 200, 299, 300, 331, 499):
        for p in range(3):
            seg = hz[max(0, s - lo): max(0, s - gap), p]
            want = hz[s, p] - np.nanmedian(seg) if np.isfinite(seg).sum() >= REL_MIN else np.nan
            np.testing.assert_allclose(X[s, p, col["hr_rel"]], want, equal_nan=True)
            a, b = iu[0][p], iu[1][p]
            la, lb = L[s, a], L[s, b]
            if np.isfinite(la) and np.isfinite(lb):
                assert X[s, p, col["arousal_max"]] == max(la, lb)
                assert X[s, p, col["arousal_min"]] == min(la, lb)
                first, second = (a, b) if la >= lb else (b, a)
                np.testing.assert_array_equal(X[s, p, col["a_hr_level"]: col["a_hr_level"] + len(DIV)], D[s, first])
                np.testing.assert_array_equal(X[s, p, col["b_hr_level"]: col["b_hr_level"] + len(DIV)], D[s, second])
            for lag in LAGS:
                for c in LAGGED:
                    want = X[s - lag, p, col[c]] if s >= lag else np.nan
                    np.testing.assert_array_equal(X[s, p, col[f"{c}_lag{lag}"]], want)
    np.testing.assert_array_equal(X[:, :, col["hr_z"]], hz)
    np.testing.assert_array_equal(X[:, :, col["eda_chance_z"]], ec)


@pytest.mark.parametrize("compiled", [True, False], ids=["numba", "numpy"])
def test_tree_evaluator_matches_scikit_learn(compiled, monkeypatch):
    """Both evaluators (numba, numpy) give scikit-learn's decision function on the same trees (NaN routed the
    same)."""
    pytest.importorskip("sklearn", reason="scikit-learn (a development dependency) fits the ensemble")
    from attune_monitor.dsp import _kernels

    if compiled and not _kernels.HAVE_NUMBA:
        pytest.skip("numba not installed: the numpy path is the only one")
    if compiled:
        monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 1)  # every call compiled, however small
    else:
        monkeypatch.setattr(_kernels, "HAVE_NUMBA", False)
    train_evidence = load_bench("train_evidence")
    export, fit = train_evidence.export, train_evidence.fit

    rng = np.random.default_rng(1)
    n = 4000
    X = rng.normal(size=(n, len(FEATURES)))
    y = ((X[:, 0] - X[:, 6] + 0.5 * X[:, 4] * X[:, 7] + rng.normal(0, 0.5, n)) > 0.8).astype(int)
    X[rng.random(X.shape) < 0.1] = np.nan
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP threads spinning beside the other xdist worker on 2 cores took > 120 s
        model = fit(X, y, max_iter=30)
    ens = TreeEnsemble(export(model, y))
    Xt = rng.normal(size=(500, len(FEATURES)))
    Xt[rng.random(Xt.shape) < 0.2] = np.nan
    np.testing.assert_allclose(ens.log_odds(Xt), model.decision_function(Xt), rtol=0, atol=1e-9)
    share = y.mean()
    np.testing.assert_allclose(ens.llr(Xt), model.decision_function(Xt) - np.log(share / (1 - share)), atol=1e-9)
    assert ens.log_odds(Xt.reshape(50, 10, -1)).shape == (50, 10)


def _rows(n: int, seed: int) -> np.ndarray:
    """Feature rows spread over the shipped model's thresholds, a tenth of the values missing."""
    model = shipped_model()
    rng = np.random.default_rng(seed)
    X = np.empty((n, len(FEATURES)))
    for f in range(len(FEATURES)):
        thr = model.threshold[(model.feature == f) & ~model.is_leaf]
        X[:, f] = rng.choice(thr, n) + rng.normal(0, 1e-3, n) if thr.size else rng.normal(size=n)
    X[rng.random(X.shape) < 0.1] = np.nan
    return X


def test_numpy_and_compiled_tree_sums_are_bitwise_equal():
    """The numpy walk adds the leaf values in tree order as the compiled evaluator does: the same bits, so the size
    bound that picks between them changes no output (blocks of 512 rows: 1000 and 1300 rows span several)."""
    from attune_monitor.dsp import _kernels

    kernel = _kernels.get("tree_sum")
    if kernel is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    model = shipped_model()
    for n, seed in ((1, 0), (7, 1), (120, 2), (1000, 3), (1300, 4)):
        X = _rows(n, seed)
        out = np.zeros(n)
        kernel(X, *model.split_tables(), out)
        np.testing.assert_array_equal(model._tree_sum_numpy(X), out)


def _random_ensemble(rng, n_trees: int, max_leaves: int, n_features: int = len(FEATURES)) -> TreeEnsemble:
    """Random trees in ``TreeEnsemble``'s arrays: unbalanced (each split picks a random leaf to split), some a single
    leaf, NaN sent either way, thresholds from a few values (ties with the rows)."""
    feature, threshold, missing_left, left, right, is_leaf, value, roots = [], [], [], [], [], [], [], []
    for _ in range(n_trees):
        root = len(feature)
        roots.append(root)
        feature.append(0), threshold.append(0.0), missing_left.append(False), left.append(0), right.append(0)
        is_leaf.append(True), value.append(rng.normal())
        open_leaves = [root]
        for _ in range(int(rng.integers(0, max_leaves))):  # up to max_leaves leaves
            node = open_leaves.pop(int(rng.integers(len(open_leaves))))
            kids = [len(feature), len(feature) + 1]
            for _ in kids:
                feature.append(0), threshold.append(0.0), missing_left.append(False), left.append(0), right.append(0)
                is_leaf.append(True), value.append(rng.normal())
            is_leaf[node], value[node] = False, 0.0
            feature[node], threshold[node] = int(rng.integers(n_features)), float(rng.choice([-1.0, -0.5, 0.0, 0.5]))
            missing_left[node], left[node], right[node] = bool(rng.integers(2)), kids[0], kids[1]
            open_leaves += kids
    value[0] = -0.0  # a first leaf of -0.0: both paths start the sum from 0.0
    return TreeEnsemble({"feature": feature, "threshold": threshold, "missing_left": missing_left, "left": left,
                         "right": right, "is_leaf": is_leaf, "value": value, "roots": roots, "baseline": 0.25,
                         "prior_logit": -1.0, "depth": len(feature), "features": list(FEATURES)})


def test_compiled_evaluator_on_odd_trees_equals_the_walk(monkeypatch):
    """Unbalanced and single-leaf trees, rows tied with thresholds, +-inf, missing values in some rows or in every
    row of a block (each way NaN goes), rows of one block all on one side of a split: the compiled evaluator gives
    the numpy walk's sums bitwise; trees past 64 leaves are walked in numpy."""
    from attune_monitor.dsp import _kernels

    kernel = _kernels.get("tree_sum")
    if kernel is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    rng = np.random.default_rng(7)
    ens = _random_ensemble(rng, 40, 64)
    assert ens.split_tables() is not None
    n = 1100
    X = rng.choice([-2.0, -1.0, -0.75, -0.5, -0.25, 0.0, -0.0, 0.25, 0.5, 1.0, np.inf, -np.inf], (n, len(FEATURES)))
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:600, 3] = np.nan  # every row of the first block (and some of the second) missing
    X[:, 5] = 2.0  # above every threshold: every row right
    X[:, 6] = -2.0  # below: every row left
    X[512:, 6] = np.nan
    out = np.zeros(n)
    kernel(X, *ens.split_tables(), out)
    np.testing.assert_array_equal(out, ens._tree_sum_numpy(X))
    monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 1)
    np.testing.assert_array_equal(ens.log_odds(X), ens.baseline + ens._tree_sum_numpy(X))
    big = _random_ensemble(np.random.default_rng(8), 3, 80)
    assert max(np.count_nonzero(big.is_leaf[a:b]) for a, b in zip(big.roots, [*big.roots[1:], big.is_leaf.size])) > 64
    assert big.split_tables() is None
    np.testing.assert_array_equal(big.log_odds(X), big.baseline + big._tree_sum_numpy(X))


def test_small_calls_walk_in_numpy_large_ones_compiled(monkeypatch):
    from attune_monitor.dsp import _kernels

    model = shipped_model()
    asked = []
    real_get = _kernels.get
    monkeypatch.setattr(_kernels, "get", lambda name, wait=True: asked.append(name) or real_get(name, wait))
    monkeypatch.setattr(_kernels, "loaded", lambda: False)  # a process without numba loaded (a dyad's)
    small = _rows(evidence.TREE_SUM_NUMBA_ROWS - 1, 4)
    want = model.baseline + model._tree_sum_numpy(small)
    np.testing.assert_array_equal(model.log_odds(small), want)
    assert asked == []
    large = _rows(evidence.TREE_SUM_NUMBA_ROWS, 5)
    np.testing.assert_array_equal(model.log_odds(large[None])[0],
                                  model.baseline + model._tree_sum_numpy(large))
    assert asked == ["tree_sum"]


def test_model_for_other_features_is_refused(tmp_path):
    with np.load(MODEL_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["features"] = np.asarray(FEATURES[:-1])
    with pytest.raises(ValueError, match="Retrain it with bench/train_evidence.py"):
        TreeEnsemble(arrays)


def test_shipped_model_reads_a_rupture_as_likelier():
    """Known contrast: a pair in tune (synchrony at its usual level, arousal in tune) vs the same pair with
    synchrony fallen to chance while one person's arousal climbs alone."""
    model = shipped_model()
    T, n = 400, 2
    iu = np.triu_indices(n, 1)
    col = {name: k for k, name in enumerate(FEATURES)}

    def rows(rupture: bool) -> np.ndarray:
        hz = np.full((T, 1), 0.9)
        ez = np.full((T, 1), 0.5)
        L = np.full((T, n), -2.5)
        D = np.zeros((T, n, len(DIV)))
        if rupture:
            hz[330:], ez[330:] = 0.0, 0.0
            L[330:, 0], L[330:, 1] = 6.0, -4.0
            D[330:, 0] = (2.5, 0.2, 3.0, 1.0)
            D[330:, 1] = -D[330:, 0]
        return PairFeatures(n, iu).push(hz, np.zeros((T, 1)), ez, np.zeros((T, 1)), L, D)

    calm, rup = model.llr(rows(False))[-1, 0], model.llr(rows(True))[-1, 0]
    assert rows(True)[-1, 0, col["hr_rel"]] < -0.8
    assert calm < 0 < rup
    assert rup - calm > 5


def _steps_to_flag(llr: float, chance_sd: float, n: int = 200) -> float | None:
    """Feed a pair machine (learned evidence, k 3, h 10) a constant ratio after its 50 s calibration."""
    from dataclasses import replace

    from attune_monitor.dsp.detector import PairMachine, get_preset
    from attune_monitor.dsp.events import PairRupture

    cfg = replace(get_preset("balanced", "learned"), learned_k=3.0, learned_h=10.0, arming=False)  # mechanics only
    assert cfg.evidence == "learned"
    mach = PairMachine(("hr",), cfg, 1.0)
    for t in range(1, n + 1):
        events = mach.step(float(t), {"hr": (0.7, 0.05, chance_sd)}, llr=llr if t > 60 else -5.0)
        if any(isinstance(e, PairRupture) for e in events):
            return t - 60
    return None


def test_learned_evidence_accumulates_ratio_less_reference():
    """Each second adds llr - learned_k: a ratio of 5 reaches 10 in 5 s, of 4 in 10 s, of 3 never; a ratio
    from a pair whose chance level spreads twice as wide as the simulator's counts a quarter."""
    assert _steps_to_flag(5.0, 0.4) == 5
    assert _steps_to_flag(4.0, 0.4) == 10
    assert _steps_to_flag(3.0, 0.4) is None
    assert _steps_to_flag(5.0, 1.0) is None          # 0.25 * 5 - 3 < 0
    assert _steps_to_flag(20.0, 0.5 * 2 ** 0.5) == 4  # clipped to 12, then halved: 3 a second


@pytest.mark.parametrize("n, T", [(3, 420), (7, 400), (16, 380), (64, 320)])
def test_compiled_running_median_equals_the_sorting_one(monkeypatch, n, T):
    """Issue 21: from TREE_SUM_NUMBA_ROWS rows per call, the pair's own level (median of the steps [t - 300,
    t - 30)) comes from a sorted window per pair kept between calls (numba), not a sort per step. The feature rows
    are bitwise those of the sorting (numpy) path for 3-64 people, pushed in one block, step by step or in
    chunks of 1-40 steps, switching between both paths, with missing values, long gaps and tied values."""
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    rng = np.random.default_rng(n)
    hz, hc, ez, ec, L, D = _inputs(T, n, seed=n)
    ez = np.round(ez, 1)  # many equal values enter and leave the windows
    hz[100:180, : max(1, hz.shape[1] // 3)] = np.nan  # a long gap: counts below REL_MIN, then back
    args = (hz, hc, ez, ec, L, D)
    iu = np.triu_indices(n, 1)
    n_pairs = len(iu[0])
    monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 10**9)  # the numpy path throughout
    monkeypatch.setattr(evidence, "TREE_SUM_LOADED_ROWS", 10**9)
    ref = PairFeatures(n, iu).push(*args)
    for threshold, sizes in ((1, (1,)), (1, (1, 2, 17, 40)), (5 * n_pairs, (1, 3, 5, 30))):
        monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", threshold)  # 5 * n_pairs: chunks below 5 steps numpy
        monkeypatch.setattr(evidence, "TREE_SUM_LOADED_ROWS", threshold)
        pf = PairFeatures(n, iu)
        parts, b0 = [], 0
        while b0 < T:
            b1 = min(T, b0 + int(rng.choice(sizes)))
            parts.append(pf.push(*(a[b0:b1] for a in args)))
            b0 = b1
        np.testing.assert_array_equal(np.concatenate(parts), ref)
    rel = ref[:, :, FEATURES.index("eda_rel")]
    assert np.isfinite(rel).mean() > 0.5 and np.isnan(rel[REL_MIN + 1:]).any()


def test_an_infinite_synchrony_value_keeps_the_sorting_median(monkeypatch):
    """The sorting path counts an infinite z as missing; the compiled one is then no longer used (same rows)."""
    if importlib.util.find_spec("numba") is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    hz, hc, ez, ec, L, D = _inputs(400, 4, seed=9)
    hz[200, 2] = np.inf
    iu = np.triu_indices(4, 1)
    monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 10**9)
    monkeypatch.setattr(evidence, "TREE_SUM_LOADED_ROWS", 10**9)
    ref = PairFeatures(4, iu).push(hz, hc, ez, ec, L, D)
    monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 1)
    pf = PairFeatures(4, iu)
    got = np.concatenate([pf.push(*(a[s: s + 1] for a in (hz, hc, ez, ec, L, D))) for s in range(400)])
    np.testing.assert_array_equal(got, ref)


def test_with_numba_loaded_a_live_groups_step_is_compiled_a_smaller_call_not(monkeypatch):
    """Issue 21: once numba is loaded (the pair bank of 8+ people loads it), a call of TREE_SUM_LOADED_ROWS rows
    (one step of a group of 8: 28 pairs) and the running median of such a push use the compiled kernels, with the
    numpy path's bits; a call of fewer rows walks in numpy. Without numba loaded the 512-row bound holds."""
    from attune_monitor.dsp import _kernels

    if _kernels.get("tree_sum") is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    model = shipped_model()
    asked = []
    real_get = _kernels.get
    monkeypatch.setattr(_kernels, "get", lambda name, wait=True: asked.append(name) or real_get(name, wait))
    n_rows = evidence.TREE_SUM_LOADED_ROWS
    assert n_rows == 28 and evidence.TREE_SUM_NUMBA_ROWS > 496  # groups of 8 to 32 people in one step
    rows = _rows(n_rows, 6)
    np.testing.assert_array_equal(model.log_odds(rows), model.baseline + model._tree_sum_numpy(rows))
    assert asked == ["tree_sum"]
    fewer = rows[:-1]
    np.testing.assert_array_equal(model.log_odds(fewer), model.baseline + model._tree_sum_numpy(fewer))
    assert asked == ["tree_sum"]
    monkeypatch.setattr(_kernels, "loaded", lambda: False)
    np.testing.assert_array_equal(model.log_odds(rows), model.baseline + model._tree_sum_numpy(rows))
    assert asked == ["tree_sum"]
    monkeypatch.setattr(_kernels, "loaded", lambda: True)
    # a live group of 8 (28 pairs) pushed step by step: the compiled running median, the sorting one's rows
    hz, hc, ez, ec, L, D = _inputs(360, 8, seed=3)
    iu = np.triu_indices(8, 1)
    pf = PairFeatures(8, iu)
    got = np.concatenate([pf.push(*(a[s: s + 1] for a in (hz, hc, ez, ec, L, D))) for s in range(360)])
    assert "rolling_median" in asked
    monkeypatch.setattr(_kernels, "loaded", lambda: False)
    monkeypatch.setattr(evidence, "TREE_SUM_NUMBA_ROWS", 10**9)  # the sorting (numpy) median, in one push
    asked.clear()
    np.testing.assert_array_equal(got, PairFeatures(8, iu).push(hz, hc, ez, ec, L, D))
    assert asked == []
