"""Another shape for the arming threshold's rise, tried through the benches: a Bonferroni rise.

Not the detector's code: :meth:`attune_monitor.dsp.detector.ModalityTrack.arm_threshold` is replaced and the pair bank
(numba, 28+ pairs) switched off, so every pair goes through the replaced method. The shipped rise is
``arm_sigma + log2(1 + max(0, u - arm_grace_s) / arm_rise_s)`` after ``u`` seconds unarmed; the Bonferroni rise keeps
the one-sided tail of ``arm_sigma`` divided by the number of arming spans tested so far,
``Phi^-1(1 - (1 - Phi(arm_sigma)) / (1 + u / arm_span_s))``: 3.46 standard errors at 8 minutes unarmed, 3.64 at 18,
3.82 at 38 (the shipped rise: 4, 5, 6).

Usage (the rest of the arguments are the wrapped bench's)::

    python bench/arming_rise.py families score /tmp/families/choose-cache
    python bench/arming_rise.py realdata --no-sweep --jobs 2
    python bench/arming_rise.py analyze FILE.xdf ... --json OUT/      # attune analyze
"""

from __future__ import annotations

import sys
from pathlib import Path
from statistics import NormalDist

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune_monitor.dsp import detector as D  # noqa: E402

_NORMAL = NormalDist()


def bonferroni_threshold(self, t: float) -> float:
    """Standard errors arming needs at ``t``: ``arm_sigma``'s tail over the number of spans tested."""
    cfg = self.cfg
    u = t - self.testable_since
    u = u if u > 0.0 else 0.0  # (NaN: not testing yet)
    tail = (1.0 - _NORMAL.cdf(cfg.arm_sigma)) / (1.0 + u / cfg.arm_span_s)
    return _NORMAL.inv_cdf(1.0 - tail)


D.ModalityTrack.arm_threshold = bonferroni_threshold
D.PAIR_BANK_MIN_PAIRS = 10**9

if __name__ == "__main__":
    what, rest = sys.argv[1], sys.argv[2:]
    if what == "families":
        import families

        sys.exit(families.main(rest))
    if what == "realdata":
        import realdata_controls

        sys.exit(realdata_controls.main(rest))
    if what == "analyze":
        from attune_monitor.ui.cli import main

        sys.exit(main(["analyze", *rest]))
    sys.exit(f"Invalid value for the bench: expected families, realdata or analyze, but got {what!r}.")
