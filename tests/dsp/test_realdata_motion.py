"""The synchrony engine on real dyadic motion (rMEA's 20 therapist-patient interviews): people who never met show
no synchrony on average; real dyads show more (bench/realdata_motion.py reports the AUCs)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers.bench import load_bench

pytestmark = pytest.mark.realdata



@pytest.fixture(scope="module")
def result(realdata):
    root = realdata / "rMEA"
    if not (root / "normal").is_dir() or not (root / "dropout").is_dir():
        pytest.skip(f"rMEA interviews not available: {root} (normal/, dropout/) is absent")
    return load_bench("realdata_motion").run(root)


def test_pseudo_dyads_who_never_met_show_no_synchrony_on_average(result):
    # 380 patient-therapist pairs from different interviews: no shared clock, so the expected r is 0 (an engine
    # that biased r, by its detrending or windows, would show it here)
    for metric in ("pearson", "synchrony", "wcc_r0"):
        pseudo = np.array(result[metric]["pseudo"])
        assert pseudo.size == 380
        assert abs(pseudo.mean()) < 0.025, (metric, pseudo.mean())


def test_real_dyads_are_more_in_sync_than_pseudo_dyads(result):
    # the real interviews' mean is above the pseudo-dyads' beyond their spread: a one-sided permutation test over
    # the 400 dyads (the interaction is the only difference between the groups; approximate, as pseudo-dyads share
    # people; p was 0.0005 when written)
    rng = np.random.default_rng(7)
    real, pseudo = np.array(result["wcc_r0"]["real"]), np.array(result["wcc_r0"]["pseudo"])
    both = np.concatenate([real, pseudo])
    observed = real.mean() - pseudo.mean()
    null = []
    for _ in range(2000):
        perm = rng.permutation(both)
        null.append(perm[:real.size].mean() - perm[real.size:].mean())
    assert np.mean(np.array(null) >= observed) < 0.01, observed
    assert result["wcc_r0"]["auc"] > 0.6
