"""The heavy live tick's arousal and detector side (issue 21): each fast path gives what its reference path gives.

A live session of a group (heart rate at 1 Hz and skin conductance at 4 Hz per person, one grid sample per tick as
the headless monitor runs it) with what exercises every branch: a shared step of everybody's level (a shared
shift), a marker (a shared event noted in advance), one person climbing alone and one flattening (ratios past the
exclusion bound, arousal states climbing and flattening, episodes), and signal gaps of heart rate and skin
conductance (signal losses, NaN features, blocked pairs). It is run once as it runs and once with one fast path
forced onto its reference, and every output must be equal bit for bit: the updates' arousal arrays and chance
levels, the events, the learned evidence's feature rows and ratios, the pair table, the person ties and the
episodes at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.dsp import _kernels, detector, evidence
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot

N_PEOPLE = 9  # 36 pairs: the pair bank and (numba loaded) the compiled evidence of a live step
SECONDS = 260.0
FS = 4.0


def _signals(n: int, seconds: float, seed: int):
    """Heart rate (1 Hz) and skin conductance (4 Hz) of ``n`` people with a shared step, a climb, a flattening and
    gaps: ``(t_hr, hr, t_eda, eda)``, values (n, n_samples)."""
    rng = np.random.default_rng(seed)

    def walks(m, fs, scale):
        shared = np.cumsum(rng.standard_normal(m)) * scale / np.sqrt(fs)
        own = np.cumsum(rng.standard_normal((n, m)), 1) * 0.5 * scale / np.sqrt(fs)
        return shared + own + 0.1 * scale * rng.standard_normal((n, m))

    n_hr, n_eda = int(seconds) + 10, int(seconds + 10) * 4
    t_hr, t_eda = np.arange(n_hr) + 0.5, np.arange(n_eda) / 4 + 0.125
    hr = 70 + 5 * np.tanh(walks(n_hr, 1.0, 1.0) / 5)
    eda = 5 + np.abs(walks(n_eda, 4.0, 0.02))
    hr[:, t_hr >= 200] += 15.0  # everybody's level steps up at once
    eda[:, t_eda >= 200] *= 1.6
    sel = (t_hr >= 150) & (t_hr < 215)
    hr[1, sel] += np.linspace(0, 20, sel.sum())  # person 1 climbs alone
    sel = (t_eda >= 150) & (t_eda < 215)
    eda[1, sel] += np.linspace(0, 3, sel.sum())
    sel = (t_eda >= 160) & (t_eda < 230)
    eda[2, sel] = eda[2, sel][0]  # person 2 flattens
    hr[0, (t_hr >= 120) & (t_hr < 135)] = np.nan  # gaps
    eda[3, ((t_eda >= 170) & (t_eda < 182)) | ((t_eda >= 240) & (t_eda < 260))] = np.nan
    eda[n - 1, (t_eda >= 100) & (t_eda < 104)] = np.nan
    return t_hr, hr, t_eda, eda


def _run(monkeypatch, n: int = N_PEOPLE, seconds: float = SECONDS, seed: int = 5) -> dict:
    """Every output of the live session (see the module notes), as plain arrays and strings."""
    t_hr, hr, t_eda, eda = _signals(n, seconds, seed)
    people = [f"P{k + 1}" for k in range(n)]
    slots = [Slot(p, "hr", 1.0, f"{p}-hr") for p in people] + [Slot(p, "eda", 4.0, f"{p}-eda") for p in people]
    pipe = SessionPipeline(slots, 0.0, PipelineConfig())
    pipe.note_shared_event(230.0, "marker")
    rows, ratios = [], []
    push, llr = evidence.PairFeatures.push, detector.RuptureDetector._learned_llr
    monkeypatch.setattr(evidence.PairFeatures, "push", lambda self, *a: rows.append(push(self, *a).copy()) or rows[-1])
    monkeypatch.setattr(detector.RuptureDetector, "_learned_llr",
                        lambda self, steps: ratios.append(llr(self, steps).copy()) or ratios[-1])
    out: dict = {"ticks": []}
    i_hr = i_eda = 0
    for k in range(1, int(seconds * FS) + 1):
        until = k / FS
        j_hr, j_eda = np.searchsorted(t_hr, until, "right"), np.searchsorted(t_eda, until, "right")
        for p in range(n):
            if j_hr > i_hr:
                pipe.push(p, t_hr[i_hr:j_hr], hr[p, i_hr:j_hr])
            if j_eda > i_eda:
                pipe.push(n + p, t_eda[i_eda:j_eda], eda[p, i_eda:j_eda])
        i_hr, i_eda = j_hr, j_eda
        upd = pipe.advance(until)
        tick = [upd.arousal_t, upd.arousal, upd.arousal_div, upd.arousal_smooth, upd.arousal_state,
                repr(upd.arousal_reading), [repr(e) for e in upd.events], repr(pipe.detector.person_ties)]
        tick += [upd.windows[m]["chance_level"] for m in upd.windows]
        if upd.arousal_t.size:
            tick += [repr(list(pipe.detector.pair_table())), pipe.detector.person_arousal]
        out["ticks"].append(tick)
    out["rows"], out["ratios"] = rows, ratios
    out["episodes"] = [repr(e) for e in pipe.finish()]
    out["contexts"] = [repr(e.context) for e in pipe.detector.episodes]
    return out


def _assert_same(a, b, where: str = "") -> None:
    """Equal bit for bit (arrays: shape, dtype and bytes; NaN where NaN)."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def as_it_runs():
    """The session as it runs (every fast path on), and the kernels it asked for."""
    if _kernels.get("pair_rows") is None:
        pytest.skip("numba not installed: the reference paths are the only ones")
    mp = pytest.MonkeyPatch()
    asked: list[str] = []
    real_get = _kernels.get
    mp.setattr(_kernels, "get", lambda name, wait=True: asked.append(name) or real_get(name, wait))
    try:
        out = _run(mp)
    finally:
        mp.undo()
    return out, set(asked)


def test_the_session_exercises_what_the_paths_differ_on(as_it_runs):
    """The session is not a trivial one: episodes, climbing and flattening people, losses, a shared shift."""
    out, _ = as_it_runs
    events = "".join(e for tick in out["ticks"] for e in tick[6])
    for kind in ("EpisodeOpened", "SignalLost", "SignalBack", "SharedEvent", "StateChanged"):
        assert kind in events
    states = np.concatenate([tick[4] for tick in out["ticks"] if tick[4].size], axis=1)
    assert {2, 3} <= set(np.unique(states).tolist())  # climbing and flattening
    assert all(r.shape[1] == N_PEOPLE * (N_PEOPLE - 1) // 2 for r in out["rows"])


@pytest.mark.parametrize("kernel", ["pair_rows", "window_medians", "less_others_median"])
def test_compiled_kernel_equals_its_reference(as_it_runs, kernel, monkeypatch):
    """The session with ``kernel`` refused (its numpy reference runs) gives the same outputs, bit for bit."""
    out, asked = as_it_runs
    assert kernel in asked
    real_get = _kernels.get
    refused: list[str] = []
    monkeypatch.setattr(_kernels, "get",
                        lambda name, wait=True: refused.append(name) if name == kernel else real_get(name, wait))
    ref = _run(monkeypatch)
    assert refused
    _assert_same(ref, out)


def test_compiled_window_medians_equal_the_sorting_ones_on_ties_infinities_and_signed_zeros():
    """The refresh's medians by selection (``_kernels._window_medians``) against ``_nanmedian_last`` of the kept
    window: many ties (rounded values), NaN, infinities, windows mostly or wholly away; a -0.0 sends the call to
    the numpy path (None)."""
    from attune_monitor.dsp.divergence import ArousalDivergence, _nanmedian_last

    kernel = _kernels.get("window_medians")
    if kernel is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    rng = np.random.default_rng(0)
    n_kernel = n_signed = 0
    for trial in range(300):
        n, W = int(rng.integers(1, 10)), int(rng.integers(1, 60))
        win = np.round(rng.standard_normal((n, 4, W)), int(rng.integers(0, 3)))
        win[win == 0] = 0.0  # rounding leaves -0.0: only where put on purpose below
        win[rng.random(win.shape) < rng.random() * 0.5] = np.nan
        if trial % 7 == 0:
            win[rng.random(win.shape) < 0.05] = np.inf
        if trial % 11 == 0:
            win[rng.random(win.shape) < 0.05] = -np.inf
        if trial % 13 == 0:
            win[rng.random(win.shape) < 0.1] = -0.0
        away = rng.random((n, W)) < rng.random()
        got = ArousalDivergence._window_medians(kernel, win, away, True)
        kept = np.where(ArousalDivergence._keep(away, win), win, np.nan)
        med, cnt = _nanmedian_last(kept)
        with np.errstate(invalid="ignore"):
            mad = _nanmedian_last(np.abs(kept - med[..., None]))[0]
        if got is None:
            assert (np.signbit(kept) & (kept == 0)).any()
            n_signed += 1
            continue
        n_kernel += 1
        assert med.tobytes() == got[0].tobytes() and np.array_equal(cnt, got[1]) and mad.tobytes() == got[2].tobytes()
    assert n_kernel > 250 and n_signed > 5


def test_compiled_less_others_median_equals_numpys_on_ties_infinities_and_nan():
    """``_kernels._less_others_median`` against ``divergence._less_others_median`` (the numpy path it replaces for
    8+ people), bit for bit: groups of 4-70, many ties (rounded values), NaN of either sign, infinities, people with
    no finite other."""
    from attune_monitor.dsp import divergence

    kernel = _kernels.get("less_others_median")
    if kernel is None:
        pytest.skip("numba not installed: the numpy path is the only one")
    rng = np.random.default_rng(0)
    for trial in range(400):
        n, T = int(rng.integers(4, 70)), int(rng.integers(1, 6))
        z = np.round(rng.standard_normal((n, 4, T)), int(rng.integers(1, 3)))
        z[z == 0] = 0.5  # no 0.0 / -0.0: those go to the loop (as in ArousalDivergence._divergence)
        z[rng.random(z.shape) < rng.random() * 0.95] = np.nan
        if trial % 5 == 0:
            z[rng.random(z.shape) < 0.05] = np.inf
        if trial % 7 == 0:
            z[rng.random(z.shape) < 0.05] = -np.inf
        if trial % 9 == 0:
            z[rng.random(z.shape) < 0.05] = -np.nan
        out = np.empty_like(z)
        kernel(z, divergence._NAN, out)
        with np.errstate(invalid="ignore"):  # inf - inf
            assert out.tobytes() == divergence._less_others_median(z).tobytes()


def test_shared_shift_takes_empty_pushes_as_nothing():
    """A live tick that completes no second pushes none (``SharedShift.push`` returns at once): the same events as
    the seconds pushed without them, with runs of shared seconds across the empty pushes."""
    from attune_monitor.dsp.divergence import FEATURES, SharedShift

    rng = np.random.default_rng(4)
    n, n_sec = 6, 400
    rel = rng.standard_normal((n, len(FEATURES), n_sec))
    for start in (50, 120, 135, 300):  # everybody's level up (or down) by 8 SD for 2-5 seconds
        rel[:, 0, start: start + int(rng.integers(2, 6))] += 8.0 * rng.choice([-1.0, 1.0])
    rel[rng.random(rel.shape) < 0.05] = np.nan
    t = np.arange(n_sec) + 0.75
    plain, with_empty = SharedShift(n), SharedShift(n)
    want = [e for s in range(n_sec) for e in plain.push(t[s: s + 1], rel[:, :, s: s + 1])]
    got = []
    for s in range(n_sec):
        for _ in range(3):
            assert with_empty.push(np.zeros(0), np.zeros((n, len(FEATURES), 0))) == []
        got += with_empty.push(t[s: s + 1], rel[:, :, s: s + 1])
    assert got == want and len(want) >= 3


def test_arousal_flavour_with_its_kept_inverses_equals_a_fresh_computation():
    """``arousal_flavour`` of the default model keeps its inverse covariances between calls: the codes equal those
    of ``style_llr`` with a fresh cache, for every subset of known features."""
    from attune_monitor.dsp.divergence import arousal_flavour, style_llr

    rng = np.random.default_rng(5)
    for _ in range(3):
        div = rng.standard_normal((40, 7, 4)) * 2
        div[rng.random(div.shape) < 0.3] = np.nan
        llr = style_llr(div, None, {})
        known = np.isfinite(llr).all(axis=-1)
        want = np.where(known, np.where(llr[..., 0] >= llr[..., 1], 2, 3), 0).astype(np.uint8)
        np.testing.assert_array_equal(arousal_flavour(div), want)
