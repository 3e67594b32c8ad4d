"""Shared helper of the beat-detection tests: matching detected beat times against a reference."""

from __future__ import annotations

import numpy as np


def match_rates(ours, ref, tol=0.05):
    """(sensitivity, positive predictive value) of ``ours`` against ``ref`` (times, s)."""
    ours, ref = np.sort(ours), np.sort(ref)

    def hits(a, b):
        j = np.searchsorted(a, b)
        d = np.full(b.size, np.inf)
        for k in (j - 1, j):
            kk = np.clip(k, 0, a.size - 1)
            d = np.minimum(d, np.abs(a[kk] - b))
        return d <= tol

    return float(hits(ours, ref).mean()), float(hits(ref, ours).mean())
