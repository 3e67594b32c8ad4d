"""Stricter arming, a prototype: ``bench/families.py`` with the detector's arming test wrapped.

Not the detector's code: :class:`attune_monitor.dsp.detector.ModalityTrack` is wrapped, and the pair bank (numba,
28+ pairs) switched off so every pair goes through the wrapped track. The arguments are ``families.py``'s.

- ``ARMING_VARIANT=confirm`` (default): when the arming test first passes (``arm_sigma`` standard errors over
  ``arm_span_s``) the track stays unarmed for ``CONFIRM_S`` more seconds and arms only if the test still passes
  then; while waiting, an excess below ``CONFIRM_LOW`` standard errors starts it over (a gap, a loss or a shared
  event too).
- The second prototype (``ARMING_VARIANT=spend``: the threshold rising with the time a track has been testable but
  unarmed) became the detector's arming, first as a log2 rise (``bench/arming_rise.py``) and then as a Bonferroni
  correction for the spans tested (``DetectorConfig.arm_correct``). The confirmation below runs on top of it; the
  fixed threshold of before is ``families.py score CACHE --override '{"arm_correct": false}'``.

Usage::

    CONFIRM_S=20 python bench/arming_variants.py score /tmp/families/choose-cache
    CONFIRM_S=0 python bench/arming_variants.py score CACHE     # the shipped arming (same figures as families.py)
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune_monitor.dsp import detector as D  # noqa: E402

CONFIRM_S = float(os.environ.get("CONFIRM_S", "60"))
CONFIRM_LOW = float(os.environ.get("CONFIRM_LOW", "2"))
_step, _reset = D.ModalityTrack.step, D.ModalityTrack.reset


def step(self, t, sync, chance, chance_sd=math.nan):
    was_unarmed = self.calibrating and self.cfg.arming
    first_baseline = self.first_baseline_z
    out = _step(self, t, sync, chance, chance_sd)
    if not was_unarmed:
        return out
    first_pass = getattr(self, "_first_pass", None)
    if not self.calibrating:  # the test passed now
        if first_pass is None:
            self._first_pass = first_pass = t
        if t - first_pass < CONFIRM_S:
            self.baseline_z, self.first_baseline_z, self.just_calibrated = math.nan, first_baseline, False
            self.drop = math.nan
            return math.nan
        self._first_pass = None
        return out
    if first_pass is not None and not (math.isfinite(self.excess) and self.excess >= CONFIRM_LOW * self.excess_se):
        self._first_pass = None
    return out


def reset(self, clean_from):
    self._first_pass = None
    return _reset(self, clean_from)


D.ModalityTrack.step, D.ModalityTrack.reset = step, reset
D.PAIR_BANK_MIN_PAIRS = 10**9

if __name__ == "__main__":
    import families

    sys.exit(families.main(sys.argv[1:]))
