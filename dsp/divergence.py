"""Person-level arousal divergence: one person's arousal moving away from the rest of the group (streaming).

Synchrony (``dsp.engine``) says *whether* two people's signals still co-vary;
it needs ~30-40 s of a slow signal to say so. What a person's body does at the
start of a rupture is often plainer and faster (Gottman's aversive vs.
withdrawn flavours, see ``acquisition.physiology`` for the model of the
simulator): in an *aversive* rupture the person's heart rate and skin
conductance climb and their skin-conductance responses come more often; in a
*withdrawn* one their physiology flattens (fewer responses, less heart-rate
variation) while the partner's goes on as before. A shared stressor moves
everybody at once and is not a divergence.

Per person and second this module computes four features on the pipeline's
grid (all causal, from samples up to that second):

=================  ===============================================================
``hr_level``       mean heart rate over the last ``level_s`` (10 s)
``hr_variability`` log SD of heart rate over the last ``activity_s`` (20 s)
``eda_level``      mean skin conductance over the last ``level_s``
``eda_activity``   log of the summed rises of skin conductance over the last ``activity_s`` (phasic activity)
=================  ===============================================================

Each feature is taken relative to the person's own recent baseline (median of
``[t - baseline_s, t - baseline_gap_s]``, 4 min to 20 s back) and scaled by its
spread (MAD of the baseline-relative values over the last ``scale_s``, shrunk
towards a typical spread, :data:`SCALE_PRIOR`, while there are few values, so
the score is known from ~1.5 min into the session); seconds in which the person
was found moving away are left out of both, so a rupture does not become their
new normal. Then it is compared with the typical value of everybody else's (the
*divergence*, in the person's own standard units; in a couple the two
divergences mirror each other; with three or more others their median, so one
person moving away does not make the rest look diverged). The evidence that
person ``i`` is in a rupture is the Gaussian log-likelihood ratio of the
divergence vector under "aversive" or "withdrawn" (whichever is larger) against
"in tune", with the mean vectors and covariance in :data:`LLR_MODEL`
(fitted on the simulator's tune split with ``bench/tune_detector.py
fit-arousal``; never on the eval split); features a person lacks (no EDA
sensor, say) are left out of the ratio.

Chunk invariance: the features at second ``t`` depend only on grid samples
before ``t`` and on earlier seconds, baselines and spreads are refreshed at
fixed session seconds, and the state kept between pushes is the raw tail and
the per-second histories, so feeding the grid in any chunking gives the same
output (tested).

Limits: the model is the simulator's. On a real E4 dyad (rest / competition
rounds) people's arousal changes by different amounts in a shared task, which
this reads as one of them moving away (docs/validation.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernels
from .limits import Limit, check_fields

__all__ = [
    "FEATURES", "LLR_MODEL", "SCALE_PRIOR", "DivergenceConfig", "ArousalDivergence", "STYLES", "style_llr",
    "AROUSAL_STATES", "arousal_flavour", "ArousalTracker", "SharedShift"
]

#: Feature names, in the order of the feature axis.
FEATURES = ("hr_level", "hr_variability", "eda_level", "eda_activity")

#: Gaussian model of the divergence vector (``FEATURES`` order): mean when in tune, mean in an aversive
#: and a withdrawn rupture, and the shared covariance. Fitted on simulated tune-split sessions
#: (``bench/tune_detector.py fit-arousal``), rounded. ``offset`` (per style, ``STYLES`` order) is added to
#: each style's ratio, a log prior weight: a withdrawal shows less (fewer responses, a flatter heart rate) and
#: was missed more often, so its ratio counts one unit more (chosen on the tune split, checked on eval
#: sessions: docs/validation.md).
LLR_MODEL = {
    "in_tune": (0.0, -0.02, 0.0, -0.04),
    "aversive": (2.0, 0.15, 2.44, 0.83),
    "withdrawn": (-0.6, -2.64, -1.23, -2.62),
    "cov": ((0.73, 0.05, 0.47, 0.17),
            (0.05, 1.20, 0.05, 0.52),
            (0.47, 0.05, 1.02, 0.40),
            (0.17, 0.52, 0.40, 1.26)),
    "offset": (0.0, 1.0),
}


#: People from whom the baseline and spread refreshes take their medians from the compiled kernel
#: (``_kernels._window_medians``, selection instead of a sort: bitwise the same medians), and the divergence its
#: others' medians (``_kernels._less_others_median``, the same arithmetic), once numba is loaded in the process (the
#: pair bank of a live group of 8+ people loads it); a dyad never loads numba for them.
WINDOW_MEDIANS_MIN_PEOPLE = 8

#: Typical spread of each baseline-relative feature (``FEATURES`` order; the EDA level's as a fraction of the
#: person's skin-conductance level): the median over the people of simulated tune-split sessions after 15
#: minutes (their spread: docs/validation.md). The scale of a person's feature is
#: shrunk towards it with the weight of ``scale_prior_s`` seconds, so the first minutes are not over-read.
SCALE_PRIOR = (4.3, 0.40, 0.10, 0.50)


@dataclass(frozen=True)
class DivergenceConfig:
    """Windows of the person-level features (all in seconds); see the module docstring.

    Attributes
    ----------
    level_s, activity_s : float
        Trailing windows of the level features and of the variability / phasic-activity features.
    baseline_s, baseline_gap_s, baseline_min_s : float
        A person's baseline is the median of ``[t - baseline_s, t - baseline_gap_s)`` and needs at least
        ``baseline_min_s`` seconds with a value there.
    scale_s, scale_gap_s, scale_min_s : float
        The spread is the MAD of the baseline-relative values of ``[t - scale_s, t - scale_gap_s)``, known
        once ``scale_min_s`` of them are there.
    scale_prior_s : float
        Weight (in seconds of data) of :data:`SCALE_PRIOR` in the spread.
    min_fraction : float
        Share of valid grid samples a trailing window needs.
    refresh_s, scale_refresh_s : float
        How often the baseline and the spread are recomputed (at session seconds that are multiples of them).
    exclude_llr : float
        Seconds whose ratio reached this are left out of the baseline and spread (unless they are most of
        the window).
    """

    level_s: float = 10.0
    activity_s: float = 20.0
    baseline_s: float = 240.0
    baseline_gap_s: float = 20.0
    baseline_min_s: float = 20.0
    scale_s: float = 300.0
    scale_gap_s: float = 10.0
    scale_min_s: float = 30.0
    scale_prior_s: float = 240.0
    min_fraction: float = 0.6
    refresh_s: float = 10.0
    scale_refresh_s: float = 30.0
    exclude_llr: float = 2.0

    def __post_init__(self) -> None:
        """Check every field (:class:`attune_monitor.errors.ConfigError` naming the field, its range and a fix)."""
        positive = Limit(0, None, low_open=True, what="seconds")
        check_fields(self, {
            **dict.fromkeys(("level_s", "activity_s", "baseline_s", "scale_s", "refresh_s", "scale_refresh_s"),
                            positive),
            "baseline_gap_s": Limit(0, self.baseline_s, high_open=True, what="seconds", bound="baseline_s"),
            "baseline_min_s": Limit(0, self.baseline_s, what="seconds", bound="baseline_s"),
            "scale_gap_s": Limit(0, self.scale_s, high_open=True, what="seconds", bound="scale_s"),
            "scale_min_s": Limit(0, self.scale_s, what="seconds", bound="scale_s"),
            "scale_prior_s": Limit(0, None, what="seconds"),
            "min_fraction": Limit(0, 1, low_open=True, what="a fraction"),
            "exclude_llr": Limit(what="log-likelihood ratio", inf=True),
        })


class ArousalDivergence:
    """Streaming person-level arousal features, their divergence from the others, and its log-likelihood ratio.

    Parameters
    ----------
    n_people : int
        Number of participants (at least 2).
    fs : float
        Grid rate (Hz); ``fs`` must be a whole number of samples per second.
    modalities : sequence of str
        Grid modalities present (``"hr"`` and/or ``"eda"``).
    config : DivergenceConfig | None
    model : dict | None
        Gaussian model (default :data:`LLR_MODEL`).
    """

    def __init__(self, n_people: int, fs: float, modalities=("hr", "eda"), config: DivergenceConfig | None = None,
                 model: dict | None = None):
        if n_people < 2:
            raise ValueError(f"Invalid value for 'n_people': expected at least 2, but got {n_people}.")
        spb = float(fs)
        if abs(spb - round(spb)) > 1e-9 or spb < 1:
            raise ValueError(f"Invalid value for 'fs': expected a whole number of samples per second, but got {fs}.")
        self.n = int(n_people)
        self.spb = int(round(spb))
        self.fs = float(fs)
        self.modalities = tuple(modalities)
        self.cfg = config or DivergenceConfig()
        c = self.cfg
        self._n_level = int(round(c.level_s * self.spb))
        self._n_act = int(round(c.activity_s * self.spb))
        self._raw_keep = self._n_act + 1
        self._raw = {m: np.full((self.n, self._raw_keep), np.nan) for m in self.modalities}
        self.k = 0  # grid samples consumed
        # per-second histories: raw features (for the baseline) and baseline-relative values (for the scale)
        self._base_keep = int(round(c.baseline_s))
        self._scale_keep = int(round(c.scale_s))
        self._feat_hist = np.full((self.n, len(FEATURES), self._base_keep), np.nan)
        self._dev_hist = np.full((self.n, len(FEATURES), self._scale_keep), np.nan)
        self._base_held = np.full((self.n, len(FEATURES)), np.nan)
        self._scale_held = np.full((self.n, len(FEATURES)), np.nan)
        self._llr_keep = max(self._base_keep, self._scale_keep)
        self._llr_hist = np.full((self.n, self._llr_keep), np.nan)  # each person's ratio, last column = last second
        self._sec = 0  # seconds completed so far
        self._model = model or LLR_MODEL
        self._inv_cache: dict[tuple, np.ndarray] = {}

    def push(self, grid: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Take the next grid samples of every modality; return the seconds completed by them.

        Parameters
        ----------
        grid : dict
            ``modality -> ndarray, shape (n_people, n_new)`` (NaN where missing); every modality the same ``n_new``.

        Returns
        -------
        t : ndarray, shape (n_sec,)
            Session time of the last grid sample of each completed second (s): ``k - 1 / fs`` for second ``k``,
            the same stamps as the synchrony engine's windows with a 1 s step.
        llr : ndarray, shape (n_people, n_sec)
            Log-likelihood ratio "in a rupture" vs "in tune" per person (NaN: not enough data).
        divergence : ndarray, shape (n_people, len(FEATURES), n_sec)
            The divergence features behind it (person's standard units).
        """
        n_new = None
        for m in self.modalities:
            x = np.asarray(grid[m], float)
            if x.shape[0] != self.n:
                raise ValueError(f"Invalid grid for {m!r}: expected {self.n} rows (people), but got {x.shape[0]}.")
            if n_new is None:
                n_new = x.shape[1]
            elif x.shape[1] != n_new:
                raise ValueError("Invalid grid: every modality needs the same number of new samples.")
        n_new = n_new or 0
        k0 = self.k
        ends = np.arange((k0 // self.spb + 1) * self.spb, k0 + n_new + 1, self.spb)  # exclusive end sample index
        feats = np.full((self.n, len(FEATURES), ends.size), np.nan)
        for m in self.modalities:
            buf = np.concatenate([self._raw[m], np.asarray(grid[m], float)], axis=1)
            if ends.size:
                le = ends - (k0 - self._raw_keep)  # local exclusive ends in buf
                lev, act_or_var = self._raw_features(buf, le, m)
                if m == "hr":
                    feats[:, 0], feats[:, 1] = lev, act_or_var
                else:
                    feats[:, 2], feats[:, 3] = lev, act_or_var
            self._raw[m] = buf[:, -self._raw_keep:]
        self.k = k0 + n_new
        t = (ends - 1) / self.fs  # time of the last sample in (as the synchrony engine stamps its windows)
        if not ends.size:
            self.last_relative = feats
            return t, np.full((self.n, 0), np.nan), feats
        # one segment per baseline refresh, in order: each refresh may leave out the seconds found diverged
        # before it (their ratio is known by then, because the baseline window ends ``baseline_gap_s`` back)
        every = max(1, int(round(self.cfg.refresh_s)))
        starts = np.flatnonzero((self._sec + np.arange(ends.size)) % every == 0)
        bounds = np.unique(np.r_[0, starts, ends.size])
        llr = np.full((self.n, ends.size), np.nan)
        div = np.full_like(feats, np.nan)
        self.last_relative = np.full_like(feats, np.nan)
        for a, b in zip(bounds[:-1], bounds[1:]):
            z = self._relative(feats[:, :, a:b])
            self.last_relative[:, :, a:b] = z
            div[:, :, a:b] = self._divergence(z)
            llr[:, a:b] = self._llr(div[:, :, a:b])
            self._llr_hist = np.concatenate([self._llr_hist, llr[:, a:b]], axis=1)[:, -self._llr_keep:]
        return t, llr, div

    # -- stages ------------------------------------------------------------------------------------
    def _raw_features(self, buf: np.ndarray, le: np.ndarray, modality: str):
        """Level (mean over ``level_s``) and activity (EDA) / variability (HR) over ``activity_s`` at each end."""
        ok = np.isfinite(buf)
        x = np.where(ok, buf, 0.0)
        cs = np.concatenate([np.zeros((self.n, 1)), np.cumsum(x, axis=1)], axis=1)
        cn = np.concatenate([np.zeros((self.n, 1)), np.cumsum(ok, axis=1)], axis=1)
        mf = self.cfg.min_fraction

        def mean_over(c, cnt, n):
            s, k = c[:, le] - c[:, le - n], cnt[:, le] - cnt[:, le - n]
            return np.where(k >= mf * n, s / np.maximum(k, 1), np.nan), k

        level, _ = mean_over(cs, cn, self._n_level)
        if modality == "hr":
            m1, k = mean_over(cs, cn, self._n_act)
            c2 = np.concatenate([np.zeros((self.n, 1)), np.cumsum(x * x, axis=1)], axis=1)
            m2, _ = mean_over(c2, cn, self._n_act)
            with np.errstate(invalid="ignore"):
                other = np.log(np.sqrt(np.maximum(m2 - m1 ** 2, 1e-6)))
        else:
            d = np.diff(buf, axis=1, prepend=np.nan)
            dok = np.isfinite(d)
            pos = np.where(dok, np.maximum(d, 0.0), 0.0)
            cp = np.concatenate([np.zeros((self.n, 1)), np.cumsum(pos, axis=1)], axis=1)
            cpn = np.concatenate([np.zeros((self.n, 1)), np.cumsum(dok, axis=1)], axis=1)
            mean_rise, _ = mean_over(cp, cpn, self._n_act)
            other = np.log(np.maximum(mean_rise * self._n_act, 1e-3))
        return level, other

    def _relative(self, feats: np.ndarray) -> np.ndarray:
        """Baseline-relative, spread-scaled features of one segment, shape (n, F, n_sec); updates the histories.

        The baseline and the scale move slowly; they are computed at the segment's first second when its
        number is a multiple of ``refresh_s`` (the scale: ``scale_refresh_s``), so the result does not depend
        on the chunking, and held otherwise. Seconds in which the person's ratio reached ``exclude_llr`` (they were
        moving away) are
        left out of both, unless that would leave out more than half of the window: a rupture must not become
        the person's new normal, nor make its own end look like a divergence the other way.
        """
        c = self.cfg
        n_sec = feats.shape[2]
        fresh = self._sec % max(1, int(round(c.refresh_s))) == 0
        fresh_scale = self._sec % max(1, int(round(c.scale_refresh_s))) == 0
        gap, nb = int(round(c.baseline_gap_s)), self._base_keep
        sgap, ns = int(round(c.scale_gap_s)), self._scale_keep
        kernel = _kernels.get("window_medians") if self.n >= WINDOW_MEDIANS_MIN_PEOPLE and _kernels.loaded() else None
        if fresh:
            away = self._llr_hist >= c.exclude_llr  # (n, llr_keep), last column = the previous second
            # baseline of the first new second: the raw features of seconds [-nb, -gap) back
            win = self._feat_hist[:, :, : nb - gap]
            got = self._window_medians(kernel, win, away[:, -nb: away.shape[1] - gap], False)
            if got is None:
                win = np.where(self._keep(away[:, -nb: away.shape[1] - gap], win), win, np.nan)
                med, cnt = _nanmedian_last(win)
            else:
                med, cnt, _ = got
            self._base_held = np.where(cnt >= c.baseline_min_s, med, np.nan)
        if fresh_scale:
            away = self._llr_hist >= c.exclude_llr
            sw = self._dev_hist[:, :, : ns - sgap]
            got = self._window_medians(kernel, sw, away[:, -ns: away.shape[1] - sgap], True)
            if got is None:
                sw = np.where(self._keep(away[:, -ns: away.shape[1] - sgap], sw), sw, np.nan)
                med, scnt = _nanmedian_last(sw)
                mad = 1.4826 * _nanmedian_last(np.abs(sw - med[..., None]))[0]
            else:
                med, scnt, mad = got
                mad = 1.4826 * mad
            mad = np.where(scnt > 0, mad, 0.0)
            # shrunk towards a typical spread while there are few values (see SCALE_PRIOR)
            prior = np.broadcast_to(np.asarray(SCALE_PRIOR, float)[None, :], mad.shape).copy()
            prior[:, 2] *= np.abs(self._base_held[:, 2])  # EDA level: a fraction of the person's own level
            n0 = c.scale_prior_s
            shrunk = np.sqrt((scnt * mad ** 2 + n0 * prior ** 2) / np.maximum(scnt + n0, 1e-9))
            self._scale_held = np.where(scnt >= c.scale_min_s, shrunk + 1e-9, np.nan)
        dev = feats - self._base_held[:, :, None]
        self._feat_hist = np.concatenate([self._feat_hist, feats], axis=2)[:, :, -nb:]
        self._dev_hist = np.concatenate([self._dev_hist, dev], axis=2)[:, :, -ns:]
        self._sec += n_sec
        return dev / self._scale_held[:, :, None]

    @staticmethod
    def _window_medians(kernel, win: np.ndarray, away: np.ndarray, with_mad: bool) -> tuple | None:
        """The refresh's medians by the compiled kernel (``_kernels._window_medians``), None to take the numpy path.

        Parameters
        ----------
        kernel : the compiled kernel | None
            None: the numpy path (a small group, or numba not loaded).
        win : ndarray, shape (n, F, W)
        away : ndarray of bool, shape (n, W)
        with_mad : bool

        Returns
        -------
        (med, cnt, mad) : ndarray, shape (n, F) each | None
            As ``_nanmedian_last`` of the kept window (and of its absolute deviations from ``med``, unscaled) gives
            them, bit for bit; None without the kernel or when it met a -0.0 (see the kernel).
        """
        if kernel is None:
            return None
        n, F, W = win.shape
        med, mad = np.empty((n, F)), np.empty((n, F))
        cnt = np.empty((n, F), np.int64)
        if not kernel(np.ascontiguousarray(win), np.ascontiguousarray(away), with_mad, med, cnt, mad, np.empty(W)):
            return None
        return med, cnt, mad

    @staticmethod
    def _keep(away: np.ndarray, win: np.ndarray) -> np.ndarray:
        """Which window values to use, shape like ``win``: not the diverged seconds, unless they are most of it."""
        keep = ~away[:, None, :]
        mostly_away = keep.mean(axis=2, keepdims=True) < 0.5
        return np.broadcast_to(keep | mostly_away, win.shape)

    def _divergence(self, z: np.ndarray) -> np.ndarray:
        """Each person's scaled features minus the others' typical value, shape (n, F, n_sec).

        The others' typical value is their median (NaN-aware), which for three or more others leaves out
        one person who is moving away themselves (a group member in a rupture must not make everybody else
        look diverged); with one or two others it is their mean.
        """
        if self.n <= 3:
            # one or two others: their (NaN-aware) mean, vectorised
            ok = np.isfinite(z)
            zz = np.where(ok, z, 0.0)
            others_n = ok.sum(axis=0, keepdims=True) - ok
            with np.errstate(invalid="ignore", divide="ignore"):
                ref = np.where(others_n > 0, (zz.sum(axis=0, keepdims=True) - zz) / others_n, np.nan)
            return z - ref
        if (z == 0.0).any():  # 0.0 and -0.0 sort as equals: which one leaves the others' sorted values is the loop's
            return _less_others_median_loop(z)
        out = np.empty_like(z)
        kernel = (_kernels.get("less_others_median") if self.n >= WINDOW_MEDIANS_MIN_PEOPLE and _kernels.loaded()
                  else None)
        if kernel is not None:  # the same arithmetic, compiled (``_kernels._less_others_median``)
            kernel(np.ascontiguousarray(z, dtype=np.float64), _NAN, out)
            return out
        for t0 in range(0, z.shape[2], _OTHERS_BLOCK):
            out[:, :, t0: t0 + _OTHERS_BLOCK] = _less_others_median(z[:, :, t0: t0 + _OTHERS_BLOCK])
        return out

    def _llr(self, div: np.ndarray) -> np.ndarray:
        """Largest Gaussian log-likelihood ratio against in tune over {aversive, withdrawn}, shape (n, n_sec)."""
        both = style_llr(np.moveaxis(div, 1, 2), self._model, self._inv_cache)  # (n, n_sec, 2)
        return both.max(axis=-1)


#: The rupture flavours :func:`style_llr` scores, in the order of its last axis.
STYLES = ("aversive", "withdrawn")


def style_llr(div: np.ndarray, model: dict | None = None, cache: dict | None = None) -> np.ndarray:
    """Gaussian log-likelihood ratio of each flavour of rupture against "in tune", per divergence vector.

    Parameters
    ----------
    div : ndarray, shape (..., len(FEATURES))
        Divergence features (NaN where a person lacks one: it is left out of the ratio).
    model : dict | None
        Means and shared covariance (default :data:`LLR_MODEL`).
    cache : dict | None
        Inverse covariances by feature subset, kept between calls by the caller.

    Returns
    -------
    llr : ndarray, shape (..., 2)
        Ratio for ``STYLES`` (aversive, withdrawn), plus the model's ``offset`` of each style (0 when it has
        none); NaN where no feature is known.
    """
    m = model or LLR_MODEL
    cache = {} if cache is None else cache
    x = np.asarray(div, dtype=float)
    F = x.shape[-1]
    X = x.reshape(-1, F)
    out = np.full((X.shape[0], len(STYLES)), np.nan)
    mu0 = np.asarray(m["in_tune"], float)
    cov = np.asarray(m["cov"], float)
    offset = m.get("offset", (0.0,) * len(STYLES))
    code = np.isfinite(X) @ (1 << np.arange(F))  # which features each row has, as one integer
    for c in np.unique(code):
        if c == 0:
            continue
        rows = np.flatnonzero(code == c)
        idx = np.flatnonzero((c >> np.arange(F)) & 1)
        key = tuple(idx)
        if key not in cache:
            cache[key] = np.linalg.inv(cov[np.ix_(idx, idx)])
        si = cache[key]
        xi = X[np.ix_(rows, idx)] - mu0[idx]
        for j, style in enumerate(STYLES):
            mvec = np.asarray(m[style], float)[idx] - mu0[idx]
            a = si @ mvec
            out[rows, j] = xi @ a - 0.5 * mvec @ a + offset[j]
    return out.reshape(*x.shape[:-1], len(STYLES))


#: NaN, as an array the compiled ``_less_others_median`` reads (numpy's NaN of ``np.where``).
_NAN = np.full(1, np.nan)

#: Seconds per block of :func:`_less_others_median` (bounds its (n, n, F, block) comparison).
_OTHERS_BLOCK = 64


def _less_others_median_loop(z: np.ndarray) -> np.ndarray:
    """``z[i]`` less the median of the other people's values, person by person (the reference).

    Parameters
    ----------
    z : ndarray, shape (n_people, F, n_sec)

    Returns
    -------
    ndarray, shape (n_people, F, n_sec)
        ``z[i] - nanmedian(z[j != i])`` (NaN where no other person has a finite value).
    """
    out = np.full_like(z, np.nan)
    for i in range(z.shape[0]):
        others = np.delete(z, i, axis=0)  # (n - 1, F, T)
        ref = _nanmedian_last(np.moveaxis(others, 0, -1))[0]
        out[i] = z[i] - ref
    return out


def _less_others_median(z: np.ndarray) -> np.ndarray:
    """:func:`_less_others_median_loop` for every person at once, bitwise, when no value is 0.0 or -0.0.

    The people's values are sorted once per feature and second (NaN last). Person ``i``'s others, sorted, are that
    order without one copy of ``z[i]``: element ``k`` is the sorted ``k``-th where ``k`` is below ``z[i]``'s place
    (the count of values smaller than it; a NaN's place is after every value) and the ``k + 1``-th from it. The
    median reads the same two elements and averages them as :func:`_nanmedian_last` does on the others' own sort.
    Equal values are the same bits (which copy leaves does not matter), except 0.0 and -0.0: the caller gives
    those to the loop.
    """
    n = z.shape[0]
    srt = np.sort(z, axis=0)  # (n, F, T)
    finite = np.isfinite(z)
    cnt = finite.sum(axis=0)[None] - finite  # (n, F, T): finite values among the others
    with np.errstate(invalid="ignore"):
        place = (z[None, :] < z[:, None]).sum(axis=1)  # (n, F, T): values below z[i] (0 for a NaN z[i])
    nan = np.isnan(z)
    place = np.where(nan, n - nan.sum(axis=0)[None], place)  # a NaN leaves from after every value
    lo, hi = np.maximum((cnt - 1) // 2, 0), np.maximum(cnt // 2, 0)
    lo = lo + (lo >= place)
    hi = hi + (hi >= place)
    m = 0.5 * (np.take_along_axis(srt, lo, axis=0) + np.take_along_axis(srt, hi, axis=0))
    return z - np.where(cnt > 0, m, np.nan)


def _nanmedian_last(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over the last axis ignoring NaN (NaN where all are), and the count of finite values.

    Same values as ``np.nanmedian(x, axis=-1)``; NaN sorts last, so the median is read from the sorted
    finite head, without ``np.nanmedian``'s masked arrays (slow on many short rows).
    """
    srt = np.sort(x, axis=-1).reshape(-1, x.shape[-1])
    cnt = np.isfinite(x).sum(axis=-1)
    c = cnt.reshape(-1)
    rows = np.arange(c.size)
    lo, hi = np.maximum((c - 1) // 2, 0), np.maximum(c // 2, 0)
    m = (0.5 * (srt[rows, lo] + srt[rows, hi])).reshape(cnt.shape)
    return np.where(cnt > 0, m, np.nan), cnt


#: Inverse covariances of :data:`LLR_MODEL` by feature subset (:func:`style_llr`'s cache for the default model).
_DEFAULT_INV: dict[tuple, np.ndarray] = {}

#: Person-level arousal states (the codes :class:`ArousalTracker` gives), in code order.
AROUSAL_STATES = ("unknown", "with_group", "climbing", "flattening")


def arousal_flavour(div: np.ndarray, model: dict | None = None) -> np.ndarray:
    """Which way a person's arousal moved: aversive ("climbing") or withdrawn ("flattening").

    The divergence vector is compared under the same Gaussian model the
    detector's log-likelihood ratio uses (:data:`LLR_MODEL`):
    the flavour is the style with the larger likelihood ratio against "in
    tune", over the features the person has.

    Parameters
    ----------
    div : ndarray, shape (..., len(FEATURES))
        Divergence features (NaN where missing).
    model : dict | None
        Gaussian model (default :data:`LLR_MODEL`).

    Returns
    -------
    flavour : ndarray of int, shape (...)
        Code into :data:`AROUSAL_STATES`: 2 climbing, 3 flattening, 0 when no feature is known.
    """
    # (..., 2): aversive, withdrawn; the default model's inverse covariances kept between calls
    llr = style_llr(div, model, _DEFAULT_INV if model is None else None)
    known = np.isfinite(llr).all(axis=-1)
    return np.where(known, np.where(llr[..., 0] >= llr[..., 1], 2, 3), 0).astype(np.uint8)


class ArousalTracker:
    """Streaming per-person arousal state from the pipeline's log-likelihood ratios (explicit state: chunked == batch).

    Each second, a person's ratio ``L`` is the mean of the finite values of the
    last ``smooth_s`` seconds (as :attr:`attune_monitor.dsp.detector.RuptureDetector.person_arousal`);
    ``L >= threshold`` is "moving away", its flavour from the mean divergence
    features over the same seconds (:func:`arousal_flavour`); NaN is unknown. In a
    couple only the one with the larger ``L`` can be moving away (their divergences
    mirror each other, so the two readings are alternatives, not two events).

    Parameters
    ----------
    n_people : int
    threshold : float
        The detector's ``arousal_k``.
    smooth_s : float
        The detector's ``smooth_s``.
    step_s : float
        Seconds between values.
    """

    def __init__(self, n_people: int, threshold: float, smooth_s: float = 5.0, step_s: float = 1.0):
        self.n = int(n_people)
        self.threshold = float(threshold)
        self.w = max(1, int(round(smooth_s / step_s)))
        F = len(FEATURES)
        self._tail_l = np.full((self.n, self.w - 1), np.nan)
        self._tail_d = np.full((self.n, F, self.w - 1), np.nan)

    @property
    def reading(self) -> tuple[int, float, int]:
        """What its states depend on besides its inputs: ``(n_people, threshold, window in values)``.

        Two trackers with the same reading fed the same inputs from their start give the same states.
        """
        return (self.n, self.threshold, self.w)

    def push(self, llr: np.ndarray, div: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Take ``llr`` (n_people, n_sec) and ``div`` (n_people, F, n_sec) or None.

        Return the smoothed ``L`` (n_people, n_sec) and the state codes (n_people, n_sec) into :data:`AROUSAL_STATES`.
        """
        ll, dd = self._extend(llr, div)
        k = ll.shape[1] - (self.w - 1)
        if k == 0:
            return np.zeros((self.n, 0)), np.zeros((self.n, 0), np.uint8)
        smooth = _rolling_nanmean(ll, self.w)                    # (n, k)
        dmean = _rolling_nanmean(dd, self.w)                     # (n, F, k)
        code = np.where(np.isfinite(smooth), 1, 0).astype(np.uint8)
        with np.errstate(invalid="ignore"):
            away = np.isfinite(smooth) & (smooth >= self.threshold)
            if self.n == 2:
                # in a couple the two divergences mirror each other (one climbing alone looks like the other
                # flattening alone): name only the likelier of the two
                other = smooth[::-1]
                away &= ~(np.isfinite(other) & (other > smooth))
        if away.any():
            flav = arousal_flavour(np.moveaxis(dmean, 1, 2))  # (n, k)
            # no feature behind it (should not happen): call it climbing, the evidence is still there
            code[away] = np.where(flav[away] == 0, 2, flav[away])
        return smooth, code

    def skip(self, llr: np.ndarray, div: np.ndarray | None = None) -> None:
        """Take ``llr`` and ``div`` as :meth:`push` does, without reading them.

        For when another tracker with the same :attr:`reading` has read them: the state is then what :meth:`push`
        would have left.
        """
        self._extend(llr, div)

    def _extend(self, llr: np.ndarray, div: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The last ``w - 1`` values kept plus the new ones; the kept ones moved on.

        Returns
        -------
        ll : ndarray, shape (n_people, w - 1 + n_sec)
        dd : ndarray, shape (n_people, F, w - 1 + n_sec)
        """
        llr = np.asarray(llr, dtype=float).reshape(self.n, -1)
        k = llr.shape[1]
        F = len(FEATURES)
        div = np.full((self.n, F, k), np.nan) if div is None or np.size(div) == 0 else np.asarray(div, float)
        ll = np.concatenate([self._tail_l, llr], axis=1)
        dd = np.concatenate([self._tail_d, div], axis=2)
        if self.w > 1:
            self._tail_l, self._tail_d = ll[:, -(self.w - 1):], dd[:, :, -(self.w - 1):]
        return ll, dd


def _rolling_nanmean(x: np.ndarray, w: int) -> np.ndarray:
    """Mean of the finite values of each trailing window of ``w`` along the last axis.

    Input has ``w - 1`` leading columns of history; output one column per remaining column (NaN where none is finite).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    win = sliding_window_view(x, w, axis=-1)
    ok = np.isfinite(win)
    n = ok.sum(axis=-1)
    s = np.where(ok, win, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / np.maximum(n, 1), np.nan)


class SharedShift:
    """Everybody's arousal moving at once: a task switch, a shared stressor (streaming).

    People react to the same event by different amounts, which the divergence above would read as one of them
    moving away; the detector re-baselines every pair at such a shared event instead
    (:meth:`attune_monitor.dsp.detector.RuptureDetector.note_shared_event`). A second is *shared* when, in heart-rate
    level or in skin-conductance level, every person with a value (at least two, and at least half the group) has
    moved the same way by at least ``z_min`` of their own spread (the baseline-relative features of
    :class:`ArousalDivergence`, ``last_relative``); ``min_s`` such seconds in a row make an event, dated at
    the first of them, and no other event follows within ``refractory_s``.

    Parameters
    ----------
    n_people : int
    z_min : float
    min_s : int
    refractory_s : float
    """

    def __init__(self, n_people: int, z_min: float = 3.0, min_s: int = 3, refractory_s: float = 60.0):
        self.n = int(n_people)
        self.z_min = float(z_min)
        self.min_s = int(min_s)
        self.refractory_s = float(refractory_s)
        self._run = 0
        self._run_start = np.nan
        self._last_event = -np.inf

    def push(self, t: np.ndarray, relative: np.ndarray) -> list[float]:
        """Take seconds of baseline-relative features; return the times (s) of shared events found in them.

        Parameters
        ----------
        t : ndarray, shape (n_sec,)
        relative : ndarray, shape (n_people, len(FEATURES), n_sec)
        """
        t = np.asarray(t, dtype=float)
        if t.size == 0:  # no second completed (most live ticks): nothing to look at, the run goes on
            return []
        lev = np.asarray(relative, dtype=float)[:, [FEATURES.index("hr_level"), FEATURES.index("eda_level")], :]
        ok = np.isfinite(lev)
        n_ok = ok.sum(axis=0)  # (2, n_sec)
        x = np.where(ok, lev, 0.0)
        up = (ok & (x >= self.z_min)).sum(axis=0) == n_ok
        down = (ok & (x <= -self.z_min)).sum(axis=0) == n_ok
        enough = (n_ok >= 2) & (n_ok >= self.n / 2.0)
        shared = ((up | down) & enough).any(axis=0)  # (n_sec,)
        events = []
        for ts, sh in zip(t.tolist(), shared.tolist()):
            if sh:
                if self._run == 0:
                    self._run_start = ts
                self._run += 1
                if self._run == self.min_s and self._run_start - self._last_event >= self.refractory_s:
                    events.append(self._run_start)
                    self._last_event = self._run_start
            else:
                self._run = 0
        return events
