"""The IIR filters of the analysis path in numpy and plain Python, the same numbers as scipy.signal's.

``import scipy.signal`` (which loads scipy.stats, interpolate, ndimage, ...) costs a one-shot ``attune analyze``
about as much as the analysis of a one-hour dyad itself, for a handful of small filters: the EDA preprocessor's
2nd-order Butterworth low-passes and the pipeline's one-pole smoother of the chance level. This module designs
and runs them without it:

* :func:`lowpass2_sos` and :func:`sosfilt_zi` follow scipy's own operations (``butter`` -> ``buttap``,
  ``lp2lp_zpk``, ``bilinear_zpk``, ``zpk2sos``; ``sosfilt_zi`` -> ``lfilter_zi``) in numpy, so the coefficients
  are bitwise scipy's;
* :func:`sosfilt_rows` runs the direct-form II transposed recursion of scipy's ``_sosfilt`` kernel, the same
  operations in the same order, so the output is bitwise the kernel's. Below :data:`SOSFILT_PYTHON_MAX` sample
  sections it runs in plain Python (a one-hour E4 signal is 14,400 samples); above it, or once scipy.signal is
  loaded anyway, it calls the compiled kernel;
* :func:`one_pole` is ``scipy.signal.lfilter([alpha], [1, alpha - 1], x, axis=1, zi=...)`` as numpy steps over
  the columns (the same two operations per sample as lfilter's C loop, so again bitwise equal).

tests/dsp/test_iir.py checks each against scipy.
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["lowpass2_sos", "sosfilt_zi", "sosfilt_rows", "sosfilt_1d", "one_pole", "SOSFILT_PYTHON_MAX"]

#: Largest filtering job (rows x samples x sections) run in plain Python; larger ones load scipy's compiled
#: kernel (~30x faster per sample). Python costs 0.2-0.4 us per sample and section, importing scipy.signal
#: about a second: one job of this size costs under a tenth of that in Python, and a few of them repay it. The
#: pipeline filters in chunks (a batch analysis passes ~2 minutes per call, live a sample or two), far below the
#: bound even at 100 Hz; one call over a whole long recording at a high rate (``eda_to_grid``) is above it.
SOSFILT_PYTHON_MAX = 300_000


def lowpass2_sos(wn: float) -> np.ndarray:
    """Second-order digital Butterworth low-pass as one second-order section, bitwise ``scipy.signal.butter``'s.

    The same steps as ``scipy.signal.butter(2, wn, output="sos")``: the analog prototype's poles, pre-warped
    cut-off, bilinear transform, then the section's polynomials from the (averaged) conjugate pole pair.

    Parameters
    ----------
    wn : float
        Cut-off as a fraction of the Nyquist frequency, 0 < wn < 1.

    Returns
    -------
    sos : ndarray, shape (1, 6), float64
        ``[b0, b1, b2, 1, a1, a2]``.
    """
    wn = float(wn)
    if not 0.0 < wn < 1.0:
        raise ValueError(f"Invalid value for 'wn': a digital cut-off is a fraction of the Nyquist frequency, "
                         f"0 < wn < 1, but got {wn}.")
    # buttap(2): poles -exp(i pi m / 4), m = -1, 1; gain 1
    m = np.arange(-1, 2, 2, dtype=np.float64)
    p = -np.exp(1j * np.pi * m / 4)
    fs = 2.0
    warped = float(2 * fs * np.tan(np.pi * np.asarray(wn, np.float64) / fs))
    # lp2lp_zpk (no zeros: relative degree 2)
    p = warped * p
    k = 1.0 * warped ** 2
    # bilinear_zpk: both zeros at infinity go to -1
    fs2 = 2.0 * fs
    p_z = (fs2 + p) / (fs2 - p)
    k_z = k * np.real(np.prod(fs2 - np.empty(0)) / np.prod(fs2 - p))
    # zpk2sos ("nearest" pairing; one section): _cplxreal keeps the averaged upper pole of the pair
    p_z = p_z[np.lexsort((abs(p_z.imag), p_z.real))]
    p1 = (p_z[p_z.imag > 0] + p_z[p_z.imag < 0].conj()) / 2
    p1 = p1[0]
    sos = np.zeros((1, 6))
    sos[0, :3] = np.multiply(np.asarray(1.0), _poly([-1.0, -1.0]))  # zpk2tf's k * poly(z)
    sos[0, 3:] = _poly([p1, p1.conj()])
    sos[0][:3] *= np.asarray(k_z).real
    return sos


def _poly(zeros: list) -> np.ndarray:
    """The monic polynomial with these roots, real when they are conjugate pairs.

    As scipy.signal._polyutils.poly computes it (repeated np.convolve), for the same bits.
    """
    seq = np.asarray(zeros)
    a = np.ones((1,), dtype=seq.dtype)
    one = np.ones_like(seq[0])
    for zero in seq:
        a = np.convolve(a, np.stack((one, -zero)), mode="full")
    if np.iscomplexobj(a):
        roots = np.asarray(seq, dtype=np.complex128)
        if np.all(np.sort(np.imag(roots)) == np.sort(np.imag(np.conj(roots)))):
            a = np.array(np.real(a))
    return a


def sosfilt_zi(sos: np.ndarray) -> np.ndarray:
    """Initial state for a unit step's steady state, bitwise ``scipy.signal.sosfilt_zi``'s.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6), float64, ``sos[:, 3] == 1``

    Returns
    -------
    zi : ndarray, shape (n_sections, 2)
        Multiply by the first sample to start a filter at rest on it.
    """
    sos = np.asarray(sos, np.float64)
    if sos.ndim != 2 or sos.shape[1] != 6:
        raise ValueError(f"Invalid 'sos': second-order sections have shape (n_sections, 6), got {sos.shape}.")
    zi = np.empty((sos.shape[0], 2))
    scale = 1.0
    for s in range(sos.shape[0]):
        b, a = sos[s, :3], sos[s, 3:]
        if a[0] != 1.0:
            b, a = b / a[0], a / a[0]
        # lfilter_zi: solve (I - companion(a).T) zi = b[1:] - a[1:] b[0]
        i_minus_a = np.eye(2) - np.array([[-a[1] / a[0], -a[2] / a[0]], [1.0, 0.0]]).T
        zi[s] = scale * np.linalg.solve(i_minus_a, b[1:] - a[1:] * b[0])
        scale *= np.sum(sos[s, :3]) / np.sum(sos[s, 3:])
    return zi


def sosfilt_rows(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Filter each row of ``x`` with the same second-order sections, each row from its own state.

    The recursion of :func:`scipy.signal.sosfilt` (``axis=-1``; direct form II transposed, the operations of
    its compiled kernel in the same order), so the output is bitwise identical to it, without its per-call
    validation: live calls filter a sample or two. Small jobs run in plain Python, large ones (more than
    :data:`SOSFILT_PYTHON_MAX` row-samples x sections) in scipy's kernel, loaded then.

    Parameters
    ----------
    sos : ndarray, shape (n_sections, 6), float64
        Second-order sections (e.g. :func:`lowpass2_sos`), ``sos[:, 3] == 1``.
    x : ndarray, shape (n_rows, n)
        Signals, one per row (not modified).
    zi : ndarray, shape (n_rows, n_sections, 2)
        Each row's filter state (not modified).

    Returns
    -------
    y : ndarray, shape (n_rows, n)
    zf : ndarray, shape (n_rows, n_sections, 2)
        The state after the last sample of each row.
    """
    sos = np.asarray(sos, np.float64)
    y = np.array(x, dtype=np.float64, order="C")  # copies: both paths work in place
    zf = np.array(zi, dtype=np.float64, order="C")
    if y.size * sos.shape[0] > SOSFILT_PYTHON_MAX or "scipy.signal" in sys.modules:
        kernel = _SOSFILT[0] if _SOSFILT else _load_sosfilt()
        if kernel is not None:
            kernel(np.ascontiguousarray(sos), y, zf)
            return y, zf
    _sosfilt_python(sos, y, zf)
    return y, zf


def _sosfilt_python(sos: np.ndarray, y: np.ndarray, zf: np.ndarray) -> None:
    """The recursion of scipy's ``_sosfilt`` in Python, in place on ``y`` (n_rows, n), ``zf`` (n_rows, n_sections, 2).

    Section by section over the whole row instead of sample by sample through all sections: each section's
    recursion sees the same inputs in the same order either way, so every operation, and the result, is the
    same.
    """
    coefs = sos.tolist()
    for r in range(y.shape[0]):
        xs = y[r].tolist()
        for s, (b0, b1, b2, _, a1, a2) in enumerate(coefs):
            z0, z1 = zf[r, s].tolist()
            out = [0.0] * len(xs)
            for i, xv in enumerate(xs):
                yv = b0 * xv + z0
                z0 = b1 * xv - a1 * yv + z1
                z1 = b2 * xv - a2 * yv
                out[i] = yv
            xs = out
            zf[r, s, 0], zf[r, s, 1] = z0, z1
        y[r] = xs


_SOSFILT: list = []  # scipy's kernel, once loaded (only for large jobs: see sosfilt_rows)


def _load_sosfilt():
    try:  # the kernel behind scipy.signal.sosfilt (private; without it the Python recursion serves every size)
        from scipy.signal._sosfilt import _sosfilt as kernel
    except ImportError:  # pragma: no cover - a scipy without the kernel under this name
        kernel = None
    _SOSFILT.append(kernel)
    return kernel


def sosfilt_1d(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`scipy.signal.sosfilt` of one signal, bitwise the same, without its per-call overhead.

    ``x`` has shape (n,), the state ``zi`` (n_sections, 2) (see :func:`sosfilt_rows`). Returns ``y`` (n,) and the
    final state (n_sections, 2).
    """
    y, zf = sosfilt_rows(sos, x.reshape(1, -1), zi.reshape(1, *zi.shape))
    return y[0], zf[0]


def one_pole(alpha: float, x: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Exponential smoothing ``y[j] = y[j-1] + alpha (x[j] - y[j-1])`` of each row, from ``level``.

    Bitwise ``scipy.signal.lfilter([alpha], [1, alpha - 1], x, axis=1, zi=((1 - alpha) * level)[:, None])[0]``:
    the same two operations per sample as lfilter's transposed direct form (``y = z + b0 x``;
    ``z = b1 x - a1 y`` with ``b1 = 0``), in plain Python per row when there are fewer rows than columns, else one
    numpy step per column over all rows.

    Parameters
    ----------
    alpha : float
        Weight of the new value, 0 < alpha <= 1.
    x : ndarray, shape (n_rows, n), float64
        Finite values (a non-finite one would poison the state through ``0 * x``, as in lfilter).
    level : ndarray, shape (n_rows,)
        Each row's level before ``x[:, 0]``.

    Returns
    -------
    y : ndarray, shape (n_rows, n)
        The level after each value; ``y[:, -1]`` is the new state.
    """
    x = np.asarray(x, np.float64)
    b0, b1, a1 = float(alpha), 0.0, float(alpha) - 1.0
    z = (1.0 - alpha) * np.asarray(level, np.float64)
    y = np.empty_like(x)
    if x.shape[0] < x.shape[1]:  # few rows, many steps (a batch): plain Python per row, the same float operations
        for r, zr in enumerate(z.tolist()):
            out = []
            for xv in x[r].tolist():
                yv = zr + b0 * xv
                zr = xv * b1 - yv * a1
                out.append(yv)
            y[r] = out
        return y
    for j in range(x.shape[1]):  # many rows (pairs), few steps (live): numpy over the rows, step by step
        xj = x[:, j]
        yj = z + b0 * xj
        z = xj * b1 - yj * a1
        y[:, j] = yj
    return y
