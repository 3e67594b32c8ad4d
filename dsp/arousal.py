"""Who was moving away in their arousal, and when: readings of the arousal state codes.

The pipeline gives each person's arousal state once a second as codes into
:data:`attune_monitor.dsp.divergence.AROUSAL_STATES` (0 learning baseline,
1 with the group, 2 moving away climbing, 3 moving away flattening). These
helpers answer, from those codes alone (numpy, no state), which people of a
pair were moving away at given times or while an episode built up: the live
view's episode records and the offline analysis both use them, so they agree.
"""

from __future__ import annotations

import numpy as np

from .divergence import AROUSAL_STATES

__all__ = ["away_at", "away_before_flag"]


def away_at(t, codes, participants, pair, times, step_s: float) -> dict:
    """Who of ``pair`` was moving away in their arousal at any of ``times``, and which way.

    Parameters
    ----------
    t : ndarray, shape (n_sec,)
        Session times of the arousal states (NaN: empty slot).
    codes : ndarray, shape (n_people, n_sec)
        State codes into :data:`attune_monitor.dsp.divergence.AROUSAL_STATES` (2 climbing and 3 flattening
        are "moving away").
    participants : list of str
        Row order of ``codes``.
    pair : sequence of str
    times : sequence of float
        Session times; each is matched to the state second within half a step of it (the newest such).
    step_s : float

    Returns
    -------
    away : dict
        ``{person: "climbing" | "flattening"}``; the first time a person was away decides their flavour.
    """
    t = np.asarray(t, dtype=float)
    filled = np.isfinite(t)
    out: dict = {}
    for tt in times:
        cols = np.flatnonzero(filled & (np.abs(t - tt) < 0.5 * step_s + 1e-9))
        if not cols.size:
            continue
        for who in pair:
            c = int(codes[participants.index(who), cols[-1]])
            if c >= 2:
                out.setdefault(who, AROUSAL_STATES[c])
    return out


def away_before_flag(t, codes, participants, pair, onset: float, flags, step_s: float) -> dict:
    """Who of ``pair`` was moving away while an episode built up.

    Any state second from its ``onset`` to its first flag, or at a later flag (re-flag); as :func:`away_at` otherwise.

    Parameters
    ----------
    t, codes, participants, pair, step_s
        As :func:`away_at`.
    onset : float
        The episode's (dated-back) onset (s).
    flags : sequence of float
        When it was flagged, first the flag itself, then any re-flags (s).
    """
    t = np.asarray(t, dtype=float)
    buildup = t[np.isfinite(t) & (t >= onset - 1e-9) & (t <= flags[0] + 1e-9)]
    return away_at(t, codes, participants, pair, [*buildup.tolist(), *flags], step_s)
