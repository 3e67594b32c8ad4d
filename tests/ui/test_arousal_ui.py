"""Person-level arousal divergence in the views: the model's per-person word and history, the GUI's indicator,
trace shading, pair title / note and meter reason, and the headless monitor's status lines.

Known inputs: scripted log-likelihood ratio (L) series fed as pipeline Updates (expected words from a pandas
rolling mean and the preset's threshold), and a simulated session (couple-rupture-repair: P1 withdraws at
230-290 s) run through the real pipeline, checked against the detector's own ``person_arousal``.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
import pytest

from attune_monitor.dsp.detector import get_preset
from attune_monitor.dsp.divergence import FEATURES, LLR_MODEL
from attune_monitor.dsp.events import EpisodeOpened, EpisodeRepaired
from attune_monitor.dsp.pipeline import Update
from attune_monitor.ui.model import AROUSAL_WORDS, SessionModel

PEOPLE = ["P1", "P2"]
PAIRS = [("P1", "P2")]
AVERSIVE = np.asarray(LLR_MODEL["aversive"], float)
WITHDRAWN = np.asarray(LLR_MODEL["withdrawn"], float)


def _scripted(n_sec=90):
    """L (2, n_sec) and div (2, F, n_sec) for seconds 1..n_sec: P1 unknown, in tune, climbing, flattening, back.

    P1's L is ``k - 5`` (in tune) or ``k + 2`` (moving away), ``k`` the balanced preset's ``arousal_k``: the 5-s
    mean of (5 - n) in-tune and n away seconds reaches ``k`` at n = 4.
    """
    k = get_preset("balanced").arousal_k
    lo, hi = k - 5.0, k + 2.0
    t = np.arange(1, n_sec + 1, dtype=float)
    L = np.full((2, n_sec), np.nan)
    div = np.full((2, len(FEATURES), n_sec), np.nan)
    for j, tt in enumerate(t):
        if tt <= 10:
            continue
        L[1, j], div[1, :, j] = -1.0, 0.0
        if tt <= 30:
            L[0, j], div[0, :, j] = lo, 0.0
        elif tt <= 50:
            L[0, j], div[0, :, j] = hi, AVERSIVE
        elif tt <= 70:
            L[0, j], div[0, :, j] = hi, WITHDRAWN
        else:
            L[0, j], div[0, :, j] = lo - 1.0, 0.0
    return t, L, div


def _feed(model, t, L, div, sizes):
    """Apply the series in chunks of the given sizes (cycled); returns the snapshot words after each second."""
    words, k, i = {}, 0, 0
    while k < t.size:
        n = sizes[i % len(sizes)]
        i += 1
        sl = slice(k, min(k + n, t.size))
        model.apply(Update(arousal_t=t[sl], arousal=L[:, sl], arousal_div=div[:, :, sl]))
        k = sl.stop
        snap = model.snapshot()
        words[float(t[sl.stop - 1])] = {p: d["words"] for p, d in snap.people_arousal.items()}
    return words


def _expected_state(t, L, div, k):
    """Independent reference: pandas trailing mean of the finite L over 5 s, threshold k, flavour from which
    scripted style filled the whole 5 s window (None where the window mixes styles)."""
    smooth = pd.DataFrame(L.T).rolling(5, min_periods=1).mean().to_numpy().T
    out = []
    for i in range(L.shape[0]):
        row = []
        for j in range(t.size):
            v = smooth[i, j]
            if not np.isfinite(v):
                row.append("unknown")
            elif v < k:
                row.append("with_group")
            else:
                win = div[i, :, max(0, j - 4):j + 1]
                if np.allclose(win, AVERSIVE[:, None]):
                    row.append("climbing")
                elif np.allclose(win, WITHDRAWN[:, None]):
                    row.append("flattening")
                else:
                    row.append(None)
        out.append(row)
    return smooth, out


@pytest.mark.parametrize("sizes", [[1], [7, 3, 13], [90]])
def test_model_word_follows_a_known_llr_series(sizes):
    t, L, div = _scripted()
    model = SessionModel(PEOPLE, ("hr", "eda"), PAIRS, 4.0, 1.0, 600.0, preset="balanced")
    words = _feed(model, t, L, div, sizes)
    smooth, states = _expected_state(t, L, div, get_preset("balanced").arousal_k)
    snap = model.snapshot(seconds=600)
    at, al, ac = snap.arousal
    np.testing.assert_array_equal(at, t)
    np.testing.assert_allclose(al, smooth, equal_nan=True)
    from attune_monitor.ui.model import AROUSAL_STATES

    for i in range(2):
        for j in range(t.size):
            if states[i][j] is not None:
                assert AROUSAL_STATES[ac[i, j]] == states[i][j], (PEOPLE[i], t[j])
    # the word "now" after each chunk is the state of that chunk's last second
    for tt, w in words.items():
        j = int(tt) - 1
        for i, p in enumerate(PEOPLE):
            if states[i][j] is not None:
                assert w[p] == AROUSAL_WORDS[states[i][j]], (p, tt)
    if sizes == [1]:
        # the transitions, second by second: L jumps up at 31 s; the 5-s mean reaches arousal_k at 34 s
        assert words[33.0]["P1"] == "with the group" and words[34.0]["P1"] == "moving away (climbing)"
        assert words[10.0]["P1"] == "learning baseline" and words[11.0]["P1"] == "with the group"
        assert words[60.0]["P1"] == "moving away (flattening)"
        assert words[76.0]["P1"] == "with the group"
        assert all(w["P2"] in ("learning baseline", "with the group") for w in words.values())


def test_couple_names_only_the_likelier_of_two_mirror_readings():
    """In a couple both ratios can pass the threshold at once (mirror images); only the larger one is away."""
    from attune_monitor.ui.model import AROUSAL_STATES, ArousalTracker

    k = get_preset("balanced").arousal_k
    L = np.array([[k + 3.0] * 10 + [k + 1.0] * 10, [k + 1.0] * 10 + [k + 3.0] * 10])
    div = np.stack([np.repeat(AVERSIVE[:, None], 20, axis=1), np.repeat(WITHDRAWN[:, None], 20, axis=1)])
    smooth, code = ArousalTracker(2, k, smooth_s=1.0).push(L, div)
    words = [[AROUSAL_STATES[c] for c in row] for row in code]
    assert words[0][:10] == ["climbing"] * 10 and words[1][:10] == ["with_group"] * 10
    assert words[0][10:] == ["with_group"] * 10 and words[1][10:] == ["flattening"] * 10
    # three people: each reading stands on its own
    L3 = np.vstack([L, np.full((1, 20), -3.0)])
    div3 = np.concatenate([div, np.zeros((1, len(FEATURES), 20))])
    _, code3 = ArousalTracker(3, k, smooth_s=1.0).push(L3, div3)
    assert (code3[:2] >= 2).all()


def test_model_threshold_is_the_presets_arousal_k():
    from attune_monitor.dsp.detector import PRESETS

    t = np.arange(1, 21, dtype=float)
    div = np.repeat(AVERSIVE[None, :, None], t.size, axis=2).repeat(2, axis=0)
    for preset in PRESETS:
        k = get_preset(preset).arousal_k
        words = []
        for level in (k - 0.05, k + 0.05):
            model = SessionModel(PEOPLE, ("hr", "eda"), PAIRS, 4.0, 1.0, 60.0, preset=preset)
            model.apply(Update(arousal_t=t, arousal=np.full((2, t.size), level), arousal_div=div))
            snap = model.snapshot()
            assert snap.arousal_threshold == k
            words.append(snap.people_arousal["P1"]["words"])
        assert words == ["with the group", "moving away (climbing)"], preset


def test_pair_evidence_and_episode_arousal():
    from attune_monitor.dsp.detector import Episode

    t, L, div = _scripted()
    model = SessionModel(PEOPLE, ("hr", "eda"), PAIRS, 4.0, 1.0, 600.0)
    model.apply(Update(arousal_t=t[:45], arousal=L[:, :45], arousal_div=div[:, :, :45]))

    def evidence(state, drop):
        model.apply(Update(), [{"pair": ("P1", "P2"), "state": state, "words": state, "drop": drop, "modalities": {}}])
        return model.snapshot().pair_arousal[("P1", "P2")]

    assert evidence("possible_rupture", 0.1) == {"away": {"P1": "climbing"}, "evidence": "arousal"}
    assert evidence("possible_rupture", None)["evidence"] == "arousal"
    assert evidence("drifting", 0.95)["evidence"] == "synchrony+arousal"
    assert evidence("attuned", 0.0)["evidence"] is None
    ep = Episode(id=1, pair=("P1", "P2"), people=["P1"], onset_s=38.0, flagged_s=44.0, nadir_s=44.0, offset_s=None,
                 repaired=False, depth=0.3, modalities=["hr", "eda"], confidence=0.5)
    model.apply(Update(events=[EpisodeOpened(pair=("P1", "P2"), t=44.0, episode=ep)]))
    model.apply(Update(arousal_t=t[45:], arousal=L[:, 45:], arousal_div=div[:, :, 45:]))
    assert evidence("possible_rupture", 0.2)["evidence"] == "synchrony"  # P1 is back with the group at 90 s
    ep.offset_s, ep.repaired, ep.open = 80.0, True, False
    model.apply(Update(events=[EpisodeRepaired(pair=("P1", "P2"), t=89.0, episode=ep)]))
    (e,) = model.snapshot().episodes
    assert e["arousal"] == {"P1": "climbing"} and e["repaired"]  # what was seen at the flag is kept


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """couple-rupture-repair (seed 3) through the real pipeline into a model, 10 s at a time."""
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.dsp.pipeline import PipelineConfig
    from attune_monitor.ui.runner import feed, make_pipeline

    path = tmp_path_factory.mktemp("arousal") / "couple.xdf"
    write_session_xdf(simulate_session(load_scenario("couple-rupture-repair"), seed=3), path)
    cfg = PipelineConfig()
    src = RecordingSource(load_recording(path), speed=math.inf)
    pipe = make_pipeline(src, cfg)
    model = SessionModel(pipe.participants, pipe.modalities, pipe.pairs, cfg.fs, cfg.step_s, cfg.history_s,
                         preset=cfg.preset)
    ups, snaps, t = [], {}, 0.0
    while t < src.duration_s:
        t = min(t + 10.0, src.duration_s)
        chunks, until, _ = src.poll(horizon_s=t)
        feed(pipe, chunks)
        u = pipe.advance(until)
        ups.append(u)
        model.apply(u, pipe.detector.pair_states())
        snaps[t] = model.snapshot()
    u = pipe.flush(src.end)
    ups.append(u)
    model.apply(u, pipe.detector.pair_states())
    pipe.finish()
    return pipe, model, ups, snaps


def _withdrawn_snapshot_time(snaps) -> float:
    """The first snapshot time in P1's withdrawal (410-470 s) at which the model says P1 is flattening and the
    detector has evidence of a drop for the pair (drifting, possible rupture or repairing)."""
    ts = [t for t in sorted(snaps) if 420 <= t <= 480
          and snaps[t].people_arousal["P1"]["words"] == "moving away (flattening)"
          and snaps[t].pair_states[0]["state"] in ("drifting", "possible_rupture", "repairing")]
    assert ts, {t: snaps[t].people_arousal["P1"]["words"] for t in sorted(snaps) if 420 <= t <= 480}
    return ts[0]


def test_model_on_a_simulated_session_matches_the_detector(simulated):
    pipe, model, ups, snaps = simulated
    L = np.concatenate([u.arousal for u in ups], axis=1)
    t = np.concatenate([u.arousal_t for u in ups])
    assert all(u.arousal_div.shape == (2, len(FEATURES), u.arousal_t.size) for u in ups)
    k = get_preset("balanced").arousal_k
    smooth = pd.DataFrame(L.T).rolling(5, min_periods=1).mean().to_numpy().T
    snap = model.snapshot(seconds=600)
    at, al, ac = snap.arousal
    np.testing.assert_array_equal(at, t)
    np.testing.assert_allclose(al, smooth, equal_nan=True)
    np.testing.assert_allclose(al[:, -1], pipe.detector.person_arousal, equal_nan=True)
    # unknown until the baseline and spread are known (~1.5 min), then known
    assert (ac[:, t < 90] == 0).all() and (ac[:, t > 100] > 0).all()
    # away exactly where the smoothed L reaches the preset's threshold
    # (in a couple only the likelier of the two mirror readings)
    with np.errstate(invalid="ignore"):
        likelier = ~(np.isfinite(smooth[::-1]) & (smooth[::-1] > smooth))
        np.testing.assert_array_equal(ac >= 2, np.isfinite(smooth) & (smooth >= k) & likelier)
    # P1 withdraws at 410-470 s: moving away (flattening) for a while, never climbing then
    p1 = ac[0, (t >= 420) & (t <= 480)]
    assert (p1 == 3).sum() >= 20 and not (p1 == 2).any()
    # a snapshot taken (every 10 s) while P1 reads as withdrawn
    at_ = _withdrawn_snapshot_time(snaps)
    s = snaps[at_]
    assert s.people_arousal["P1"]["words"] == "moving away (flattening)"
    assert s.pair_arousal[("P1", "P2")]["away"] == {"P1": "flattening"}
    assert s.pair_arousal[("P1", "P2")]["evidence"] in ("arousal", "synchrony+arousal")
    ep = [e for e in snap.episodes if e["onset_s"] > 380]  # P1 withdraws at 410 s (P2 climbed at 270 s)
    assert ep and ep[0]["arousal"] == {"P1": "flattening"}


def test_model_takes_the_pipelines_reading_or_reads_itself_the_same(simulated):
    """The pipeline's arousal reading (``Update.arousal_reading`` naming the model's tracker) taken as it is gives
    what the model's own tracker reads, also when a source stops handing it over half-way (the tracker kept up)."""
    import dataclasses

    from attune_monitor.dsp.divergence import ArousalTracker

    pipe, _, ups, _ = simulated
    cfg = get_preset("balanced")
    assert all(u.arousal_reading == ArousalTracker(2, cfg.arousal_k, cfg.smooth_s, 1.0).reading for u in ups)
    own = [dataclasses.replace(u, arousal_reading=()) for u in ups]
    half = len(ups) // 2
    looks = []
    for feed_ in (ups, own, ups[:half] + own[half:], own[:half] + ups[half:]):
        model = SessionModel(pipe.participants, pipe.modalities, pipe.pairs, 4.0, 1.0, 600.0, preset="balanced")
        if feed_ is ups:  # the pipeline's reading is taken: the model's tracker is never asked to read
            model._arousal_track.push = None
        seen = []
        for u in feed_:
            model.apply(u)
            snap = model.snapshot(600.0)
            seen.append(repr((snap.arousal[0].tolist(), snap.arousal[1].tolist(), snap.arousal[2].tolist(),
                              snap.people_arousal, snap.pair_arousal)))
        looks.append(seen)
    assert looks[0] == looks[1] == looks[2] == looks[3]
    assert "'flattening'" in "".join(looks[0]) and "'climbing'" in "".join(looks[0])  # (people_arousal)


# -- GUI -----------------------------------------------------------------------------------------------------
pytestqt = pytest.importorskip("pytestqt")


pytestmark = pytest.mark.usefixtures("tmp_qsettings")


def _window(qtbot, model):
    from attune_monitor.ui.gui.main_window import MainWindow
    from attune_monitor.ui.gui.settings import Settings

    win = MainWindow(model, settings=Settings(recordings_dir="/nonexistent"))
    qtbot.addWidget(win)
    win.show()
    return win


def _arousal(t0, n, l1, l2, d1=None):
    t = np.arange(t0 + 1, t0 + n + 1, dtype=float)
    L = np.vstack([np.full(n, l1), np.full(n, l2)])
    div = np.zeros((2, len(FEATURES), n))
    if d1 is not None:
        div[0] = np.asarray(d1, float)[:, None]
    return Update(arousal_t=t, arousal=L, arousal_div=div)


@pytest.mark.gui
def test_gui_indicator_changes_when_l_crosses_the_threshold(qtbot):
    from attune_monitor.ui.gui.style import AROUSAL_STYLE
    from tests.helpers.gui_fake import FakeSession

    fs = FakeSession(n_people=2, rupture=None, loss=None)
    fs.advance(60)
    model = fs.model
    win = _window(qtbot, model)
    win.redraw()
    assert win.traces.arousal_words("P1") == "learning baseline"
    k = model.arousal_threshold
    assert k == get_preset("balanced").arousal_k
    low, high = k - 4.0, k + 3.5  # 5-s mean of (5 - n) low and n high reaches k at n = 3
    model.apply(_arousal(0, 60, low, -0.5))
    win.tick()
    assert win.traces.arousal_words("P1") == "with the group"
    assert win.traces.arousal_colour("P1") == AROUSAL_STYLE["with_group"][0]
    assert "with the group" in win.traces.headers["P1"].text
    assert not win.traces.arousal_spans("P1") and win.timelines.title_arousal(PAIRS[0]) == ({}, None)
    assert win.meters.meters[PAIRS[0]].reason == ""
    # P1's L jumps from low to high at 61 s; the 5-s mean reaches arousal_k on the 3rd second
    fs.advance(2)
    model.apply(_arousal(60, 2, high, -0.5, AVERSIVE))
    win.tick()
    assert win.traces.arousal_words("P1") == "with the group"
    model.apply(_arousal(62, 2, high, -0.5, AVERSIVE))
    # the pair is in a possible rupture while its synchrony drop is small: the evidence is P1's arousal
    model.apply(Update(), [{**fs.det.pair_states()[0], "state": "possible_rupture", "drop": 0.1}])
    win.tick()
    assert win.traces.arousal_words("P1") == "moving away (climbing)"
    assert win.traces.arousal_colour("P1") == AROUSAL_STYLE["climbing"][0]
    assert "moving away" in win.traces.headers["P1"].text and "(climbing)" in win.traces.headers["P1"].text
    assert win.traces.arousal_words("P2") == "with the group"
    spans = list(win.traces.arousal_spans("P1").values())
    assert spans == [((62.0, 64.0), "climbing")]  # seconds 63 and 64 moving away: (62, 64]
    assert win.timelines.title_arousal(PAIRS[0]) == ({"P1": "climbing"}, "arousal")
    assert "P1 arousal" in win.timelines.title_html(PAIRS[0])
    assert "flag from arousal" in win.timelines.arousal_note(PAIRS[0])
    x, y = win.timelines.strip_data(PAIRS[0], "climbing")
    assert np.isfinite(y[x > 62.5]).all() and not np.isfinite(y[x < 62.5]).any()
    meter = win.meters.meters[PAIRS[0]]
    assert "P1 arousal" in meter.reason and "sync dipping" in meter.reason and "P1's arousal" in meter.toolTip()
    # flattening, then back under the threshold
    model.apply(_arousal(64, 6, high, -0.5, WITHDRAWN))
    win.tick()
    assert win.traces.arousal_words("P1") == "moving away (flattening)"
    assert win.traces.arousal_colour("P1") == AROUSAL_STYLE["flattening"][0]
    model.apply(_arousal(70, 6, low, -0.5))
    model.apply(Update(), [{**fs.det.pair_states()[0], "state": "attuned", "drop": 0.0}])
    win.tick()
    assert win.traces.arousal_words("P1") == "with the group"
    assert win.timelines.arousal_note(PAIRS[0]) == "" and meter.reason == ""
    kinds = sorted(st for (_t, st) in win.traces.arousal_spans("P1").values())
    assert kinds == ["climbing", "flattening"]  # the history stays on the traces


@pytest.mark.gui
def test_gui_on_a_simulated_withdrawal_shows_who_and_why(qtbot, simulated, tmp_path):
    """The real pipeline's output while P1 is withdrawn (since 230 s) drawn by the main window."""
    pipe, model, ups, snaps = simulated
    at_ = _withdrawn_snapshot_time(snaps)
    # a model that stopped there: replay the same updates into a fresh one
    m2 = SessionModel(model.participants, model.modalities, model.pairs, model.fs, model.step_s, model.history_s)
    for u in ups[:int(round(at_ / 10.0))]:
        m2.apply(u)
    m2.apply(Update(), [dict(ps) for ps in snaps[at_].pair_states])
    win = _window(qtbot, m2)
    win.redraw()
    assert win.traces.arousal_words("P1") == "moving away (flattening)"
    assert win.traces.arousal_words("P2") == "with the group"
    assert any(st == "flattening" for (_t, st) in win.traces.arousal_spans("P1").values())
    away, evidence = win.timelines.title_arousal(PAIRS[0])
    assert away == {"P1": "flattening"} and evidence in ("arousal", "synchrony+arousal")
    assert "P1 moving away (flattening)" in win.timelines.arousal_note(PAIRS[0])
    win.grab().save(str(tmp_path / "withdrawal.png"))
    assert (tmp_path / "withdrawal.png").stat().st_size > 10000


# -- headless ----------------------------------------------------------------------------------------------
def test_headless_shows_each_persons_arousal_word():
    from attune_monitor.ui.headless import HeadlessView, render

    model = SessionModel(PEOPLE, ("hr", "eda"), PAIRS, 4.0, 1.0, 60.0)
    model.apply(Update(grid_start=0, grid={m: np.full((2, 40), 70.0) for m in ("hr", "eda")},
                       quality={m: np.zeros((2, 40), np.uint8) for m in ("hr", "eda")}),
                [{"pair": ("P1", "P2"), "state": "calibrating", "words": "learning baseline", "modalities": {}}])
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=0.0)
    view.draw()
    assert "] arousal: P1 learning baseline; P2 learning baseline\n" in out.getvalue()
    model.apply(_arousal(0, 10, -1.0, 7.0, None))
    model.apply(Update(arousal_t=np.arange(11.0, 16.0), arousal=np.vstack([np.full(5, -1.0), np.full(5, 7.0)]),
                       arousal_div=np.stack([np.zeros((len(FEATURES), 5)),
                                             np.repeat(WITHDRAWN[:, None], 5, axis=1)])),
                [{"pair": ("P1", "P2"), "state": "possible_rupture", "words": "possible rupture", "drop": 0.2,
                  "modalities": {}}])
    view.draw(force=True)
    text = out.getvalue()
    assert "] status: P1 hr=ok eda=ok; P2 hr=ok eda=ok\n" in text
    assert "] arousal: P1 with the group; P2 moving away (flattening)\n" in text
    assert ("pair P1-P2: hr - eda -; possible rupture; P2's arousal moving away (flattening): the flag comes from "
            "it with a dip in synchrony") in text
    lines = render(model.snapshot())
    p2 = next(ln for ln in lines if ln.startswith("  P2 "))
    assert p2.rstrip().endswith("moving away (flattening)")
    p1 = next(ln for ln in lines if ln.startswith("  P1 "))
    assert p1.rstrip().endswith("with the group")


def test_tile_reason_shortens_to_fit_instead_of_overlapping(qtbot):
    """A small group tile has no room for '↓ P3 arousal (sync dipping)': it shows a shorter form, never overflows."""
    from PySide6 import QtGui

    from attune_monitor.ui.gui.meter import fit_reason

    reason = "\u2193 P3 arousal (sync dipping)"
    font = QtGui.QFont()
    font.setPixelSize(14)
    full = QtGui.QFontMetricsF(font).horizontalAdvance(reason)
    assert fit_reason(reason, QtGui.QFont(font), full + 5) == reason
    for room, expected in ((full * 0.5, "\u2193 P3 arousal"), (full * 0.2, "\u2193 P3"), (3.0, "")):
        f = QtGui.QFont(font)
        got = fit_reason(reason, f, room)
        assert got == expected
        if got:
            assert QtGui.QFontMetricsF(f).horizontalAdvance(got) <= room


# -- hysteresis of the live word -------------------------------------------------------------------------------
def _hover_series(k, n_people):
    """Seconds 1..60: P1's L alternates k +/- 0.6 from 11 s (its 5-s mean hovers at k +/- 0.12) and drops to
    k - 3 at 41 s; everybody else sits at -1. Aversive divergence for P1 (climbing)."""
    t = np.arange(1, 61, dtype=float)
    L = np.full((n_people, t.size), -1.0)
    div = np.zeros((n_people, len(FEATURES), t.size))
    hover = (t > 10) & (t <= 40)
    L[0, hover] = np.where(t[hover] % 2 == 0, k + 0.6, k - 0.6)
    L[0, t > 40] = k - 3.0
    div[0][:, t > 10] = AVERSIVE[:, None]
    return t, L, div


@pytest.mark.parametrize("sizes", [[1], [7, 3, 13]])
def test_live_word_does_not_flicker_when_the_ratio_hovers_at_the_threshold(sizes):
    """The tracker flips every second while the 5-s mean of L hovers at the threshold; the word shown flips once
    to "moving away" and back only when the mean is clearly below (k - AROUSAL_RELEASE_MARGIN) after the hold."""
    from attune_monitor.ui.model import AROUSAL_HOLD_S, AROUSAL_RELEASE_MARGIN, AROUSAL_STATES

    k = get_preset("balanced").arousal_k
    people = ["P1", "P2", "P3"]
    t, L, div = _hover_series(k, 3)
    model = SessionModel(people, ("hr",), [("P1", "P2"), ("P1", "P3"), ("P2", "P3")], 4.0, 1.0, 600.0)
    words = _feed(model, t, L, div, sizes)
    _, _, ac = model.snapshot(seconds=600).arousal
    raw = [AROUSAL_STATES[c] for c in ac[0]]
    assert sum(a != b for a, b in zip(raw, raw[1:])) >= 20  # the tracker itself flickers
    # independent reference: pandas 5-s mean; away from the first second >= k, back at the first second
    # below k - margin that is at least the hold after it
    smooth = pd.Series(L[0]).rolling(5, min_periods=1).mean().to_numpy()
    on = t[np.argmax(smooth >= k)]
    off = t[np.argmax((smooth < k - AROUSAL_RELEASE_MARGIN) & (t > 40) & (t >= on + AROUSAL_HOLD_S))]
    assert 10 < on < 20 and 41 < off < 50
    for tt, w in words.items():
        expected = "with the group" if tt < on or tt >= off else "moving away (climbing)"
        assert w["P1"] == expected, (tt, sizes)
        assert w["P2"] == w["P3"] == "with the group"
    if sizes == [1]:
        shown = [words[tt]["P1"] for tt in t[10:]]
        assert sum(a != b for a, b in zip(shown, shown[1:])) == 2
    snap = model.snapshot()
    assert snap.pair_arousal[("P1", "P2")]["away"] == {}


def test_live_word_in_a_couple_moves_to_the_other_person_at_once():
    """In a couple, when the tracker names the other person, the one shown moving away is released at once."""
    k = get_preset("balanced").arousal_k
    t, L, div = _hover_series(k, 2)
    L[0, t > 40] = k + 0.3          # P1 stays near the threshold ...
    L[1, t > 40] = k + 4.0          # ... but P2 is now the likelier one
    model = SessionModel(PEOPLE, ("hr",), PAIRS, 4.0, 1.0, 600.0)
    words = _feed(model, t, L, div, [1])
    assert words[20.0]["P1"] == "moving away (climbing)"
    first_p2 = min(tt for tt, w in words.items() if w["P2"].startswith("moving away"))
    assert words[first_p2]["P1"] == "with the group"
    assert model.snapshot().pair_arousal[PAIRS[0]]["away"] == {"P2": words[60.0]["P2"].split("(")[1][:-1]}
