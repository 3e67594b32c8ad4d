"""The arming threshold's first rise (log2, shipped for a few hours on 2026-12-08), run through the benches.

Not the detector's code: :meth:`attune_monitor.dsp.detector.ModalityTrack.arm_threshold` is replaced and the pair bank
(numba, 28+ pairs) switched off, so every pair goes through the replaced method. The detector's rise is a Bonferroni
correction (``arm_sigma``'s one-sided tail divided by the number of spans tested while unarmed: 3.46 standard errors
after 8 minutes, 3.64 after 18, 3.82 after 38). The log2 rise was ``arm_sigma + log2(1 + max(0, u - 180) / 300)``
after ``u`` seconds unarmed: 4, 5 and 6 there. The fixed threshold is ``--override '{"arm_correct": false}'``.

Usage (the rest of the arguments are the wrapped bench's)::

    python bench/arming_rise.py families score /tmp/families/choose-cache
    python bench/arming_rise.py realdata --no-sweep --jobs 2
    python bench/arming_rise.py analyze FILE.xdf ... --json OUT/      # attune analyze
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune_monitor.dsp import detector as D  # noqa: E402

GRACE_S, RISE_S = 180.0, 300.0


def log2_threshold(self, t: float) -> float:
    """Standard errors arming needed at ``t`` with the log2 rise (a 180-s grace, one more per doubling of 300 s)."""
    extra = t - self.testable_since - GRACE_S
    extra = extra if extra > 0.0 else 0.0  # (NaN: not testing yet)
    return self.cfg.arm_sigma + math.log2(1.0 + extra / RISE_S)


D.ModalityTrack.arm_threshold = log2_threshold
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
