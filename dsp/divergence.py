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
``[t - baseline_s, t - baseline_gap_s]``) and scaled by its spread (MAD of the
baseline-relative values over the last ``scale_s``), then compared with the
typical value of everybody else's (the *divergence*, in the person's own standard
units; in a couple the two divergences mirror each other; with three or more
others their median, so one person moving away does not make the rest look
diverged). The evidence that
person ``i`` is in a rupture is the Gaussian log-likelihood ratio of the
divergence vector under "aversive" or "withdrawn" (whichever is larger) against
"in tune", with the mean vectors and covariance in :data:`LLR_MODEL`
(fitted on the simulator's tune split with ``bench/tune_detector.py
fit-arousal``; never on the eval split); features a person lacks (no EDA
sensor, say) are left out of the ratio.

Chunk invariance: the features at second ``t`` depend only on grid samples
before ``t`` and on earlier seconds, and the state kept between pushes is the
raw tail and the per-second history, so feeding the grid in any chunking gives
the same output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Feature names, in the order of the feature axis.
FEATURES = ("hr_level", "hr_variability", "eda_level", "eda_activity")
_MODALITY_OF = {"hr_level": "hr", "hr_variability": "hr", "eda_level": "eda", "eda_activity": "eda"}

#: Gaussian model of the divergence vector (``FEATURES`` order): mean when in tune, mean in an aversive
#: and a withdrawn rupture, and the shared covariance. Fitted on 36 simulated tune sessions
#: (``bench/tune_detector.py fit-arousal``), rounded.
LLR_MODEL = {
    "in_tune": (0.0, -0.01, 0.0, -0.02),
    "aversive": (2.2, 0.06, 2.89, 0.87),
    "withdrawn": (-0.72, -2.49, -1.42, -2.55),
    "cov": ((0.75, 0.09, 0.49, 0.22),
            (0.09, 1.47, 0.10, 0.63),
            (0.49, 0.10, 1.11, 0.45),
            (0.22, 0.63, 0.45, 1.44)),
}


@dataclass(frozen=True)
class DivergenceConfig:
    """Windows (s) of the person-level features; see the module docstring."""

    level_s: float = 10.0
    activity_s: float = 20.0
    baseline_s: float = 240.0
    baseline_gap_s: float = 30.0
    baseline_min_s: float = 20.0
    scale_s: float = 300.0
    scale_gap_s: float = 10.0
    scale_min_s: float = 90.0
    min_fraction: float = 0.6
    refresh_s: float = 10.0


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
        self._sec = 0  # seconds completed so far
        m = model or LLR_MODEL
        self._mu = {k: np.asarray(m[k], float) for k in ("in_tune", "aversive", "withdrawn")}
        self._cov = np.asarray(m["cov"], float)
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
            return t, np.full((self.n, 0), np.nan), feats
        dev = self._relative(feats)
        div = self._divergence(dev)
        return t, self._llr(div), div

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
        """Baseline-relative, spread-scaled features, shape (n, F, n_sec); updates the histories.

        The baseline and the scale move slowly; they are computed every ``refresh_s`` seconds of session time
        (seconds whose number is a multiple of it, so the result does not depend on the chunking) and held
        in between.
        """
        c = self.cfg
        n_sec = feats.shape[2]
        every = max(1, int(round(c.refresh_s)))
        s0 = self._sec  # absolute number (0-based) of the first new second
        fresh = np.flatnonzero((s0 + np.arange(n_sec)) % every == 0)
        gap, nb = int(round(c.baseline_gap_s)), self._base_keep
        hist = np.concatenate([self._feat_hist, feats], axis=2)
        base = self._held(self._base_held, n_sec, fresh)
        if fresh.size:
            # baseline of second j (hist index nb + j): hist[j : nb + j - gap]
            win = sliding_window_view(hist, nb - gap, axis=2)[:, :, fresh]
            med, cnt = _nanmedian_last(win)
            val = np.where(cnt >= c.baseline_min_s, med, np.nan)
            base = self._fill(base, fresh, val)
        self._base_held = base[:, :, -1].copy() if n_sec else self._base_held
        dev = feats - base
        self._feat_hist = hist[:, :, -nb:]
        sgap, ns = int(round(c.scale_gap_s)), self._scale_keep
        dh = np.concatenate([self._dev_hist, dev], axis=2)
        scale = self._held(self._scale_held, n_sec, fresh)
        if fresh.size:
            sw = sliding_window_view(dh, ns - sgap, axis=2)[:, :, fresh]
            med, scnt = _nanmedian_last(sw)
            mad = 1.4826 * _nanmedian_last(np.abs(sw - med[..., None]))[0]
            scale = self._fill(scale, fresh, np.where(scnt >= c.scale_min_s, mad + 1e-9, np.nan))
        self._scale_held = scale[:, :, -1].copy() if n_sec else self._scale_held
        self._dev_hist = dh[:, :, -ns:]
        self._sec = s0 + n_sec
        return dev / scale

    @staticmethod
    def _held(last: np.ndarray, n_sec: int, fresh: np.ndarray) -> np.ndarray:
        """``last`` repeated over the new seconds (to be overwritten from each fresh second on)."""
        return np.repeat(last[:, :, None], n_sec, axis=2)

    @staticmethod
    def _fill(arr: np.ndarray, fresh: np.ndarray, val: np.ndarray) -> np.ndarray:
        """Set ``arr`` from each fresh second up to the next one to that second's value (forward fill)."""
        bounds = np.r_[fresh, arr.shape[2]]
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            arr[:, :, a:b] = val[:, :, i, None]
        return arr

    def _divergence(self, z: np.ndarray) -> np.ndarray:
        """Each person's scaled features minus the others' typical value, shape (n, F, n_sec).

        The others' typical value is their median (NaN-aware), which for three or more others leaves out
        one person who is moving away themselves (a group member in a rupture must not make everybody else
        look diverged); with one or two others it is their mean.
        """
        out = np.full_like(z, np.nan)
        for i in range(self.n):
            others = np.delete(z, i, axis=0)  # (n - 1, F, T)
            ref = _nanmedian_last(np.moveaxis(others, 0, -1))[0]
            out[i] = z[i] - ref
        return out

    def _llr(self, div: np.ndarray) -> np.ndarray:
        """max over {aversive, withdrawn} of the Gaussian log-likelihood ratio against in tune, shape (n, n_sec)."""
        n, F, T = div.shape
        out = np.full((n, T), np.nan)
        X = np.moveaxis(div, 1, 2).reshape(-1, F)
        ok = np.isfinite(X)
        flat = out.reshape(-1)
        code = ok @ (1 << np.arange(F))  # which features each row has, as one integer
        for c in np.unique(code):
            if c == 0:
                continue
            rows = np.flatnonzero(code == c)
            idx = np.flatnonzero((c >> np.arange(F)) & 1)
            key = tuple(idx)
            if key not in self._inv_cache:
                self._inv_cache[key] = np.linalg.inv(self._cov[np.ix_(idx, idx)])
            si = self._inv_cache[key]
            x = X[np.ix_(rows, idx)] - self._mu["in_tune"][idx]
            best = np.full(rows.size, -np.inf)
            for style in ("aversive", "withdrawn"):
                mvec = self._mu[style][idx] - self._mu["in_tune"][idx]
                a = si @ mvec
                best = np.maximum(best, x @ a - 0.5 * mvec @ a)
            flat[rows] = best
        return out


def _nanmedian_last(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over the last axis ignoring NaN (NaN where all are), and the count of finite values.

    Same values as ``np.nanmedian(x, axis=-1)``; NaN sorts last, so the median is read from the sorted
    finite head. About 10x faster than ``np.nanmedian`` on many short rows (which goes through masked arrays).
    """
    srt = np.sort(x, axis=-1)
    cnt = np.isfinite(x).sum(axis=-1)
    lo = np.maximum((cnt - 1) // 2, 0)[..., None]
    hi = np.maximum(cnt // 2, 0)[..., None]
    m = 0.5 * (np.take_along_axis(srt, lo, axis=-1) + np.take_along_axis(srt, hi, axis=-1))[..., 0]
    return np.where(cnt > 0, m, np.nan), cnt
