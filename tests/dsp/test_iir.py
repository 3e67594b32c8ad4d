"""The analysis path's filters without scipy.signal (dsp.iir) and trim_mean without scipy.stats (dsp.detector) give
bitwise what scipy gives, for the filters the EDA preprocessor and the pipeline actually build.

References: scipy.signal.butter / sosfilt_zi / sosfilt / lfilter and scipy.stats.trim_mean themselves (this test
process imports them; the analyse path does not: tests/ui/test_startup.py checks that).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import signal, stats

from attune_monitor.dsp import iir
from attune_monitor.dsp.detector import trim_mean
from attune_monitor.dsp.eda import EdaPreprocessor
from attune_monitor.dsp.pipeline import ChanceLevel

#: EDA device rates (Hz): E4 4, EmotiBit 15, Shimmer 32+, and others a recording may declare
EDA_RATES = (1.0, 2.0, 4.0, 8.0, 10.0, 15.0, 16.0, 25.6, 32.0, 50.0, 64.0, 100.0, 128.0, 256.0, 1000.0)


def _cutoffs() -> list[float]:
    """Normalised cut-offs: the EDA preprocessor's level and tonic filters at every rate (default and other
    cut-offs), and a spread over (0, 1)."""
    wns = []
    for srate in EDA_RATES:
        nyq = 0.5 * srate
        for cutoff in (1.0, 0.5, 2.0, 5.0):
            wns.append(min(cutoff, 0.4 * srate) / nyq)
        for tonic in (0.05, 0.01, 0.1):
            wns.append(min(tonic, 0.4 * srate) / nyq)
    rng = np.random.default_rng(0)
    return wns + list(rng.uniform(1e-5, 1 - 1e-5, 400)) + [1e-6, 0.5, 0.8, 0.999999]


def test_lowpass2_and_its_steady_state_are_scipys_bitwise():
    for wn in _cutoffs():
        sos = iir.lowpass2_sos(wn)
        ref = signal.butter(2, wn, output="sos")
        np.testing.assert_array_equal(sos, ref, err_msg=f"wn={wn}")
        np.testing.assert_array_equal(iir.sosfilt_zi(sos), signal.sosfilt_zi(ref), err_msg=f"wn={wn}")


def test_eda_preprocessor_builds_scipys_filters():
    for srate in EDA_RATES:
        p = EdaPreprocessor(srate=srate)
        nyq = 0.5 * srate
        np.testing.assert_array_equal(p.sos, signal.butter(2, min(1.0, 0.4 * srate) / nyq, output="sos"))
        np.testing.assert_array_equal(p.tonic_sos, signal.butter(2, min(0.05, 0.4 * srate) / nyq, output="sos"))


def test_sosfilt_zi_of_several_sections_is_scipys():
    for order in (1, 2, 3, 4, 6, 8):
        for wn in (0.01, 0.3, 0.9):
            sos = signal.butter(order, wn, output="sos")
            np.testing.assert_array_equal(iir.sosfilt_zi(sos), signal.sosfilt_zi(sos))
        band = signal.butter(order, [0.1, 0.4], btype="bandpass", output="sos")
        np.testing.assert_array_equal(iir.sosfilt_zi(band), signal.sosfilt_zi(band))
    with pytest.raises(ValueError, match="0 < wn < 1"):
        iir.lowpass2_sos(1.0)


def _signals(n_rows: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 5.0 + np.cumsum(rng.standard_normal((n_rows, n)), axis=1) * 0.05 + 0.01 * rng.standard_normal((n_rows, n))
    x[:, n // 3] += 40.0  # a step the filters must ring down from
    return x


@pytest.mark.parametrize("path", ["python", "kernel"])
def test_sosfilt_rows_is_scipys_sosfilt_bitwise(path, monkeypatch):
    """Both paths (plain Python below the size bound, scipy's kernel above it) equal scipy.signal.sosfilt."""
    if path == "kernel":
        monkeypatch.setattr(iir, "SOSFILT_PYTHON_MAX", -1)
    else:  # as in a process without scipy.signal, and the kernel must not be reached
        monkeypatch.delitem(sys.modules, "scipy.signal")
        monkeypatch.setattr(iir, "_SOSFILT", [])
        monkeypatch.setattr(iir, "_load_sosfilt", lambda: pytest.fail("scipy's kernel used for a small job"))
    rng = np.random.default_rng(1)
    x = _signals(3, 2000, seed=2)
    for wn in (1.0 / 2, 1.0 / 7.5, 0.05 / 2, 0.05 / 16, 0.3):  # E4 level, EmotiBit level, tonic at 4 and 32 Hz
        for sos in (iir.lowpass2_sos(wn), signal.butter(4, wn, output="sos"), signal.butter(3, wn, output="sos")):
            zi = rng.standard_normal((x.shape[0], sos.shape[0], 2))
            y, zf = iir.sosfilt_rows(sos, x, zi)
            for r in range(x.shape[0]):
                y_ref, zf_ref = signal.sosfilt(sos, x[r], zi=zi[r])
                np.testing.assert_array_equal(y[r], y_ref)
                np.testing.assert_array_equal(zf[r], zf_ref)


def test_sosfilt_chunked_equals_one_call():
    """The state carried from chunk to chunk gives what one call over everything gives (both paths)."""
    x = _signals(1, 3001, seed=4)[0]
    sos = iir.lowpass2_sos(0.05 / 2)
    zi = iir.sosfilt_zi(sos) * x[0]
    whole, z_whole = iir.sosfilt_1d(sos, x, zi)
    np.testing.assert_array_equal(whole, signal.sosfilt(sos, x, zi=zi)[0])
    bounds = [0, 1, 2, 17, 400, 401, 1999, 3001]
    parts, z = [], zi
    for a, b in zip(bounds[:-1], bounds[1:]):
        y, z = iir.sosfilt_1d(sos, x[a:b], z)
        parts.append(y)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(z, z_whole)


def test_sosfilt_rows_copies_its_inputs():
    x = _signals(2, 50, seed=5)
    sos = iir.lowpass2_sos(0.2)
    zi = np.ones((2, 1, 2))
    x0, zi0 = x.copy(), zi.copy()
    iir.sosfilt_rows(sos, x, zi)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(zi, zi0)


def test_one_pole_is_scipys_lfilter_bitwise_and_chunks():
    rng = np.random.default_rng(6)
    step_alpha = ChanceLevel(1, 1.0).alpha  # the pipeline's (1-s step, 60-s half-life)
    for alpha in (step_alpha, ChanceLevel(1, 5.0).alpha, 1e-4, 0.3, 1.0):
        # a batch (few pairs, many windows: the Python path) and a live tick (many pairs, few windows: numpy)
        for n_rows in (5, 900):
            x = rng.normal(0.1, 0.2, (n_rows, 700))
            level = rng.normal(0.1, 0.2, n_rows)
            y = iir.one_pole(alpha, x, level)
            ref, _ = signal.lfilter([alpha], [1.0, alpha - 1.0], x, axis=1, zi=((1.0 - alpha) * level)[:, None])
            np.testing.assert_array_equal(y, ref)
            parts, lv = [], level
            for a, b in ((0, 1), (1, 250), (250, 251), (251, 700)):
                parts.append(iir.one_pole(alpha, x[:, a:b], lv))
                lv = parts[-1][:, -1]
            np.testing.assert_array_equal(np.concatenate(parts, axis=1), y)
    assert iir.one_pole(0.5, np.empty((3, 0)), np.zeros(3)).shape == (3, 0)


def test_chance_level_is_the_lfilter_it_replaced():
    """ChanceLevel.update (finite input after a first window) is the lfilter recursion it used before."""
    rng = np.random.default_rng(7)
    chance = rng.normal(0.05, 0.1, (3, 400))
    cl = ChanceLevel(3, 1.0)
    first = cl.update(chance[:, :1])  # the first window sets the level
    out = cl.update(chance[:, 1:])
    a = cl.alpha
    ref, _ = signal.lfilter([a], [1.0, a - 1.0], chance[:, 1:], axis=1, zi=((1.0 - a) * first[:, 0])[:, None])
    np.testing.assert_array_equal(out, ref)


def test_trim_mean_is_scipys_bitwise():
    rng = np.random.default_rng(8)
    for n in (*range(1, 40), 60, 120, 121, 300):
        for cut in (0.0, 0.1, 0.2, 0.25, 0.3, 0.49, 0.5):
            if cut == 0.5 and n % 2 == 0:
                continue  # everything cut: NaN (scipy warns)
            x = rng.normal(0.4, 0.3, n)
            if n % 3 == 0:
                x = np.round(x, 1)  # ties
            got = trim_mean(list(x), cut)
            assert got == float(stats.trim_mean(list(x), cut)), (n, cut)
            assert got == float(stats.trim_mean(x, cut, axis=None)), (n, cut)
    assert trim_mean([1, 2, 3, 5], 0.25) == stats.trim_mean([1, 2, 3, 5], 0.25) == 2.5
    assert np.isnan(trim_mean([1.0, np.nan, 2.0, 3.0, 4.0], 0.25))
    assert np.isnan(stats.trim_mean([1.0, np.nan, 2.0, 3.0, 4.0], 0.25))
    assert np.isnan(trim_mean([], 0.25)) and np.isnan(trim_mean([1.0, 2.0], 0.5))
    assert trim_mean(np.arange(12.0).reshape(3, 4), 0.25) == stats.trim_mean(np.arange(12.0).reshape(3, 4), 0.25,
                                                                            axis=None)
    with pytest.raises(ValueError, match="at most half"):
        trim_mean([1.0, 2.0, 3.0], 0.7)
