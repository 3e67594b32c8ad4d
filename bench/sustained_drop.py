"""A plain second route to a flag, tried: ``bench/families.py`` with a sustained-drop rule beside the learned evidence.

Not the detector's code: :meth:`attune_monitor.dsp.detector.PairMachine.step` is wrapped, and the pair bank (numba,
28+ pairs) switched off so every pair goes through the wrapped method. The arguments are ``families.py``'s.

The rule: an armed pair in tune (``attuned`` or ``drifting``) whose smoothed fused drop has stayed at least ``DROP``
of the way to chance (1 = chance) for ``HOLD_S`` seconds is flagged, whatever the learned evidence says (the issue's
other-model sessions scored a plain "rolling r below zero" rule above the trees).

Usage::

    DROP=1.0 HOLD_S=30 python bench/sustained_drop.py score /tmp/families/choose-cache
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune_monitor.dsp import detector as D  # noqa: E402

DROP = float(os.environ.get("DROP", "1.0"))
HOLD_S = float(os.environ.get("HOLD_S", "30"))
_step = D.PairMachine.step


def step(self, t, values, blocked=False, arousal=math.nan, llr=math.nan):
    events = _step(self, t, values, blocked, arousal, llr)
    sd = self.smooth_drop
    if self.state in ("attuned", "drifting") and math.isfinite(sd) and sd >= DROP and not blocked:
        since = getattr(self, "_low_since", None)
        if since is None:
            self._low_since = since = t
        if t - since >= HOLD_S:
            self._low_since = None
            self.flag(t, events)
    else:
        self._low_since = None
    return events


D.PairMachine.step = step
D.PAIR_BANK_MIN_PAIRS = 10**9

if __name__ == "__main__":
    import families

    sys.exit(families.main(sys.argv[1:]))
