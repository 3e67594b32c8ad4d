"""A person drifting away from a group, by contrast: ``bench/families.py`` with a prototype tie rule added.

Not the detector's code: :meth:`attune_monitor.dsp.detector.RuptureDetector._ties` is wrapped, and the pair bank
(numba, 28+ pairs) switched off so every group goes through the wrapped method. The arguments are ``families.py``'s.

The rule, per person of a group of 3+, each second: their armed pairs (at least 2, in a watching state) have all
dropped at least ``DMIN`` of the way to chance (the pairs' smoothed fused drop) while the armed pairs without them
have on average dropped at most ``OMAX``; held for ``HOLD_S`` seconds, it flags that person's watching pairs (as the
tie does). Everybody's synchrony falling at once (a shared event) is no contrast; one pair falling is no tie.

Usage::

    DMIN=0.6 OMAX=0.3 HOLD_S=20 python bench/tie_contrast.py score /tmp/families/choose-cache
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attune_monitor.dsp import detector as D  # noqa: E402

DMIN = float(os.environ.get("DMIN", "0.6"))
OMAX = float(os.environ.get("OMAX", "0.3"))
HOLD_S = float(os.environ.get("HOLD_S", "20"))
_ties = D.RuptureDetector._ties
WATCHING = ("attuned", "drifting", "repaired")


def ties(self, t):
    events = _ties(self, t)
    if self._tie_ev is None:
        return events
    held = getattr(self, "_contrast_since", None)
    if held is None:
        held = self._contrast_since = [math.nan] * len(self.participants)
    for i, person in enumerate(self.participants):
        mine_idx = set(self._pairs_of[i])
        mine = [self.machines[p].smooth_drop for p in mine_idx if self.machines[p].state in WATCHING]
        mine = [d for d in mine if math.isfinite(d)]
        others = [m.smooth_drop for p, m in enumerate(self.machines)
                  if p not in mine_idx and m.state in WATCHING and math.isfinite(m.smooth_drop)]
        ok = len(mine) >= 2 and min(mine) >= DMIN and (not others or sum(others) / len(others) <= OMAX)
        if not ok:
            held[i] = math.nan
            continue
        if held[i] != held[i]:
            held[i] = t
        if t - held[i] >= HOLD_S:
            held[i] = math.nan
            for p in self._pairs_of[i]:
                mach = self.machines[p]
                if mach.state in WATCHING:
                    evs: list = []
                    mach.flag(t, evs, who=[person])
                    for ev in evs:
                        events.extend(self._episode_events(p, ev))
    return events


D.RuptureDetector._ties = ties
D.PAIR_BANK_MIN_PAIRS = 10**9

if __name__ == "__main__":
    import families

    sys.exit(families.main(sys.argv[1:]))
