"""One vocabulary (ui/words.py) and the Qt-free model's group view: episode status from the pair's state, depth on
its 0-1 scale, who is disconnecting, each person's tie to the group, group episodes and the arming countdown.

Known inputs: scripted synchrony through the real RuptureDetector (tests/helpers/gui_fake.py: P3 drifts away from
everyone at 60-200 s), and windows fed from a known time, so when the detector arms is known in advance.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from attune_monitor.dsp.detector import STATE_WORDS, UNARMED_STATES, RuptureDetector, get_preset
from attune_monitor.dsp.pipeline import Update
from attune_monitor.ui.model import (
    _ALERT_STATES,
    TIE_DRIFT_FRAC,
    TIE_DROP,
    TIE_WORDS,
    SessionModel,
    group_episodes,
    person_ties,
    tie_label,
)
from attune_monitor.ui.words import (
    depth_number,
    depth_shown,
    depth_words,
    disconnecting_words,
    episode_state,
    episode_status,
    group_episode_words,
)
from tests.helpers.gui_fake import FakeSession


def test_episode_status_follows_the_pair_state_while_open():
    ep = {"id": 1, "pair": ("P1", "P2"), "open": True, "repaired": False, "outcome": "open"}
    assert episode_status(ep, "repairing") == ("repairing", "\u21bb repairing")
    assert episode_status(ep, "possible_rupture") == ("possible_rupture", "\u25b2 possible rupture")
    assert episode_state(ep, None) == "possible_rupture"          # offline: no pair state
    assert episode_state(ep, "attuned") == "possible_rupture"     # never "in tune" for an open prompt
    done = {**ep, "open": False, "repaired": True, "outcome": "repaired"}
    assert episode_status(done, "attuned") == ("repaired", "\u2713 repaired")
    lapsed = {**ep, "open": False, "outcome": "unrepaired"}
    assert episode_status(lapsed, "out_of_tune")[1] == "\u25bd not repaired (out of tune)"
    assert episode_status({**ep, "review": "dismiss"}, "possible_rupture")[0] == "dismissed"
    for st in ("possible_rupture", "repairing"):
        assert STATE_WORDS[st] in episode_status(ep, st)[1]   # the detector's own words


def test_depth_on_its_documented_scale():
    assert depth_shown(1.99) == 1.0 and depth_shown(-0.2) == 0.0 and depth_shown(None) is None
    assert depth_words(0.42) == "42% of the way to chance"
    assert depth_words(1.0) == depth_words(1.05) == "reached chance"
    assert depth_words(1.99) == "below chance"
    assert depth_number(0.624) == "0.62" and depth_number(1.99) == "1.00 (below chance)"


def test_who_is_disconnecting_agrees_with_whose_arousal_moved():
    pair = ("P1", "P2")
    assert disconnecting_words(["P1", "P2"], pair, {"P2": "climbing"}) == "P2 (arousal)"
    assert disconnecting_words(["P1", "P2"], pair, {}) == "not told apart"
    assert disconnecting_words(["P3"], ("P1", "P3"), {"P1": "climbing"}) == "P3"
    assert group_episode_words("P3", 3, 3, True) == "P3 drifting away \u2014 3 of 3 ties dropped"
    assert group_episode_words("P3", 2, 3, False) == "P3 drifted away \u2014 2 of 3 ties dropped"


@pytest.fixture(scope="module")
def group():
    """4 people, P3's synchrony with everyone drops at 60-200 s; a snapshot every 5 s."""
    fs = FakeSession(n_people=4, rupture=(60.0, 200.0), withdrawer="P3", loss=None)
    snaps = {}
    while fs.model.t_now < 260:
        fs.advance(5)
        snaps[round(fs.model.t_now)] = fs.model.snapshot(300)
    return fs, snaps


def test_card_and_table_never_disagree(group):
    fs, snaps = group
    seen = set()
    for t, s in snaps.items():
        states = {tuple(ps["pair"]): ps["state"] for ps in s.pair_states}
        for ep in s.episodes:
            st, text = ep["status"]
            if ep["open"]:
                assert st == (states[tuple(ep["pair"])] if states[tuple(ep["pair"])] in ("possible_rupture",
                                                                                         "repairing")
                              else "possible_rupture"), (t, ep["pair"])
                assert "open" not in text
            seen.add(st)
    assert {"possible_rupture", "repaired"} <= seen


def test_one_person_drifting_away_is_one_group_episode_and_their_tie(group):
    fs, snaps = group
    flagged = min(t for t, s in snaps.items() if s.episodes)
    s = snaps[flagged + 5]
    assert len(s.episodes) == 3 and all(e["people"] == ["P3"] for e in s.episodes)
    (g,) = s.groups
    assert g["person"] == "P3" and len(g["episodes"]) == 3 and g["open"]
    assert g["words"] == "P3 drifting away \u2014 3 of 3 ties dropped"
    assert s.ties["P3"]["state"] == "drifting_away" and s.ties["P3"]["words"] == "drifting away"
    assert {s.ties[p]["state"] for p in ("P1", "P2", "P4")} == {"with_group"}
    assert s.ties["P3"]["ties"] == 3 and s.ties["P3"]["dropping"] == 3
    # before the drop everybody is with the group; long after the repair too, and the group reads "drifted away"
    assert {v["state"] for v in snaps[55].ties.values()} == {"with_group"}
    last = snaps[max(snaps)]
    assert {v["state"] for v in last.ties.values()} == {"with_group"}
    (g,) = last.groups
    assert not g["open"] and g["state"] == "repaired" and g["words"].startswith("P3 drifted away")


def test_tie_series_is_each_persons_fisher_mean_with_the_others(group):
    fs, snaps = group
    s = snaps[100]
    t, conn, chance = s.tie_series
    tc, comb, ch = s.sync["combined"]
    assert np.array_equal(t, tc)
    for i, who in enumerate(s.participants):
        mine = [k for k, pair in enumerate(s.pairs) if who in pair]
        ref = np.tanh(np.nanmean(np.arctanh(np.clip(comb[mine, -1], -0.999, 0.999))))
        assert conn[i, -1] == pytest.approx(ref, abs=1e-9)
    # P3 is the one down near chance now; everyone's chance level is the scripted 0.08
    assert np.argmin(conn[:, -1]) == 2 and conn[2, -1] < 0.08 < conn[[0, 1, 3], -1].min()
    np.testing.assert_allclose(chance[:, -1], 0.08, atol=1e-9)
    np.testing.assert_allclose(s.connectedness_chance, 0.08, atol=1e-9)


def test_ties_from_pair_states_alone():
    people = ["P1", "P2", "P3", "P4"]
    pairs = [("P1", "P2"), ("P1", "P3"), ("P1", "P4"), ("P2", "P3"), ("P2", "P4"), ("P3", "P4")]
    learning = [{"pair": p, "state": "calibrating"} for p in pairs]
    assert {v["state"] for v in person_ties(people, learning, []).values()} == {"calibrating"}
    never = [{"pair": p, "state": "not_in_tune"} for p in pairs]
    assert {v["words"] for v in person_ties(people, never, []).values()} == {"not measurably in tune"}
    # P4's ties are all down most of the way to chance without a flag yet: drifting away
    states = [{"pair": p, "state": "attuned", "drop": 0.9 if "P4" in p else 0.1} for p in pairs]
    ties = person_ties(people, states, [])
    assert ties["P4"]["state"] == "drifting_away" and ties["P1"]["state"] == "with_group"
    # the detector's tie evidence alone (the source hands it over) also says so
    calm = [{"pair": p, "state": "attuned", "drop": 0.0} for p in pairs]
    assert person_ties(people, calm, [], tie_evidence={"P2": 0.5})["P2"]["state"] == "drifting_away"
    assert person_ties(people, calm, [], tie_evidence={"P2": 0.1})["P2"]["state"] == "with_group"
    assert person_ties(["P1", "P2"], [{"pair": ("P1", "P2"), "state": "attuned"}], []) == {}


def test_groups_keep_unrelated_episodes_apart():
    eps = [{"id": 1, "pair": ("P1", "P3"), "people": ["P3"], "onset_s": 50, "flagged_s": 70, "offset_s": None,
            "open": True, "repaired": False},
           {"id": 2, "pair": ("P2", "P3"), "people": ["P3"], "onset_s": 52, "flagged_s": 71, "offset_s": None,
            "open": True, "repaired": False},
           {"id": 3, "pair": ("P1", "P2"), "people": ["P1", "P2"], "onset_s": 55, "flagged_s": 72, "offset_s": None,
            "open": True, "repaired": False},
           {"id": 4, "pair": ("P3", "P4"), "people": ["P3"], "onset_s": 400, "flagged_s": 420, "offset_s": None,
            "open": True, "repaired": False}]
    gs = group_episodes(eps, ["P1", "P2", "P3", "P4"])
    assert [[e["id"] for e in g["episodes"]] for g in gs] == [[1, 2], [3], [4]]
    assert gs[0]["words"] == "P3 drifting away \u2014 2 of 3 ties dropped" and gs[1]["words"] == gs[2]["words"] == ""


def test_countdown_says_when_the_pairs_are_measured():
    """Windows from 30 s (the first 30-s window), the balanced arming span 120 s: the pair leaves "learning
    baseline" at 150 s; the countdown said so from the start."""
    cfg = dataclasses.replace(get_preset("balanced", "analytic"))
    people = ["P1", "P2"]
    det = RuptureDetector(people, ("hr", "eda"), step_s=1.0, config=cfg)
    model = SessionModel(people, ("hr", "eda"), det.pairs, 4.0, 1.0, 600.0, preset=cfg, window_s=30.0)
    rng = np.random.default_rng(0)
    predicted, armed_at = {}, None
    for sec in range(1, 200):
        grid = {m: np.full((2, 4), 70.0) for m in ("hr", "eda")}
        windows = {}
        if sec >= 30:
            t = np.array([float(sec)])
            for m in ("hr", "eda"):
                s = 0.6 + rng.normal(0, 0.05, (1, 1))
                windows[m] = {"t": t, "sync": s, "chance": np.full((1, 1), 0.05)}
                det.update(m, t, s, np.full((1, 1), 0.05))
        model.apply(Update(grid_start=(sec - 1) * 4, grid=grid, quality={m: np.zeros((2, 4), np.uint8) for m in grid},
                           windows=windows), det.pair_states())
        snap = model.snapshot()
        if snap.arming["learning"]:
            predicted[sec] = sec + snap.arming["ready_in_s"]
        elif armed_at is None:
            armed_at = sec
    assert armed_at is not None and abs(armed_at - 149) <= 2
    for sec in (5, 29, 60, 120):
        assert predicted[sec] == pytest.approx(armed_at, abs=2.0), sec


def test_countdown_waits_for_a_lost_signal_then_counts_from_its_guard():
    """P2's heart rate is missing for the first 20 s: the pair waits for it (no countdown); once it is back the
    countdown counts from the end of the detector's guard (window + loss guard after the loss), and the pair is
    measured when it says."""
    from attune_monitor.ui.words import arming_words

    fs = FakeSession(n_people=2, rupture=None, loss=("P2", 0.0, 20.0))
    said, armed_at = {}, None
    while fs.model.t_now < 120:
        fs.advance(1)
        s = fs.model.snapshot()
        sec = round(s.t_now)
        if s.arming["learning"]:
            said[sec] = (s.arming["ready_in_s"], arming_words(s.arming))
        elif armed_at is None:
            armed_at = sec
    assert said[10] == (None, "learning baseline \u00b7 waiting for P2's heart rate")
    assert armed_at is not None
    for sec in (25, 40, 60):
        ready, words = said[sec]
        assert ready == pytest.approx(armed_at - sec, abs=3.0), sec
        assert words.startswith("learning baseline \u00b7 ready in ~")


def test_pair_state_words_add_dipping_only_to_in_tune_past_the_repair_threshold():
    from attune_monitor.ui.words import pair_state_words

    assert pair_state_words("attuned", None, 0.59, 0.6) == "in tune"
    assert pair_state_words("attuned", "in tune", 0.6, 0.6) == "in tune \u00b7 dipping"
    assert pair_state_words("repaired", None, 1.4, 0.6) == "repaired \u00b7 dipping"
    assert pair_state_words("attuned", None, None, 0.6) == "in tune"           # no drop known
    assert pair_state_words("attuned", None, float("nan"), 0.6) == "in tune"
    assert pair_state_words("attuned", None, 0.9, None) == "in tune"           # no threshold: never
    # the other states already say the pair is not as usual; their own words (and the detector's) are kept
    assert pair_state_words("drifting", None, 0.9, 0.6) == "drifting"
    assert pair_state_words("out_of_tune", "out of tune since 12:34", 0.9, 0.6) == "out of tune since 12:34"


def test_card_words_never_say_in_tune_over_a_gauge_at_chance():
    """4 people, P3's synchrony with everyone falls to chance from 60 s, a snapshot every second: while the
    detector still says "in tune" (its evidence trails the drop), a pair whose smoothed drop is past the preset's
    repair threshold reads "in tune · dipping" (its state unchanged); P3's row never says "drifting away" beside a
    card of P3 that says plain "in tune"."""
    fs = FakeSession(n_people=4, rupture=(60.0, 200.0), withdrawer="P3", loss=None)
    repair = fs.model._repair_frac
    assert repair == get_preset("balanced").repair_frac
    dipping = 0
    while fs.model.t_now < 90:
        fs.advance(1)
        s = fs.model.snapshot(60)
        for ps in s.pair_states:
            drop = ps.get("drop")
            low = drop is not None and drop >= repair
            if ps["state"] == "attuned":
                assert ps["words"] == ("in tune \u00b7 dipping" if low else "in tune"), (s.t_now, ps["pair"], drop)
                dipping += low
            else:
                assert "dipping" not in ps["words"]
        if s.ties["P3"]["state"] == "drifting_away":
            assert all(ps["words"] != "in tune" for ps in s.pair_states if "P3" in ps["pair"]), s.t_now
    assert dipping >= 2   # the scripted drop really passes through that moment (P1-P3 and P2-P3 at 66 s)


# --- person_ties against its previous implementation (a scan of every pair per person), on random groups ---------

def _person_ties_reference(participants, pair_states, episodes, connectedness=None, chance=None,
                           tie_evidence=None) -> dict:
    """The previous implementation (one scan of every pair per person), verbatim."""
    n = len(participants)
    if n < 3:
        return {}
    states = {tuple(ps["pair"]): ps.get("state", "calibrating") for ps in pair_states}
    drops = {tuple(ps["pair"]): ps.get("drop") for ps in pair_states}
    named = set()
    for ep in episodes:
        people = ep.get("people") or []
        if (len(people) == 1 and ep.get("open", True) and not ep.get("repaired") and ep.get("review") != "dismiss"
                and states.get(tuple(ep["pair"])) in ("drifting", "possible_rupture")):
            named.add(people[0])
    mine, frac = {}, {}
    for who in participants:
        st = [s for pair, s in states.items() if who in pair]
        armed = [pair for pair, s in states.items() if who in pair and s not in UNARMED_STATES]
        dropping = [pair for pair in armed if states[pair] in _ALERT_STATES or (
            drops.get(pair) is not None and np.isfinite(drops[pair]) and drops[pair] >= TIE_DROP)]
        mine[who] = (st, armed, dropping)
        frac[who] = len(dropping) / len(armed) if armed else 0.0
    out = {}
    for i, who in enumerate(participants):
        st, armed, dropping = mine[who]
        others = [frac[o] for o in participants if o != who]
        ev = None if not tie_evidence else tie_evidence.get(who)
        most = (len(armed) >= 2 and len(dropping) >= max(2, (len(armed) + 1) // 2)
                and frac[who] > float(np.median(others)))
        if who in named or (ev is not None and ev >= TIE_DRIFT_FRAC) or most:
            state = "drifting_away"
        elif armed:
            state = "with_group"
        elif any(s == "calibrating" for s in st) or not st:
            state = "calibrating"
        else:
            state = "not_in_tune"
        c = float(connectedness[i]) if connectedness is not None and i < len(connectedness) else float("nan")
        ch = float(chance[i]) if chance is not None and i < len(chance) else float("nan")
        out[who] = {"state": state, "words": TIE_WORDS[state], "label": tie_label(state), "conn": c, "chance": ch,
                    "armed": len(armed), "ties": n - 1, "dropping": len(dropping), "evidence": ev}
    return out


def test_person_ties_as_before_on_random_groups():
    seen = set()
    for seed in range(40):
        seen |= _random_ties_as_before(seed)
    assert seen == {"drifting_away", "with_group", "calibrating", "not_in_tune"}


def _random_ties_as_before(seed: int) -> set:
    """A random group's ties, new and previous implementation; the tie states seen."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 14))
    people = [f"P{i}" for i in range(n)]
    states = list(STATE_WORDS) + ["calibrating"] * 3 + ["attuned"] * 3
    if seed % 4 == 0:  # nobody armed yet: learning, or not measurably in tune
        states = [s for s in STATE_WORDS if s in UNARMED_STATES and (seed % 8 or s != "calibrating")]
    pair_states = []
    for a, b in itertools.combinations(people, 2):
        ps = {"pair": (a, b) if rng.random() < 0.9 else [a, b]}
        if rng.random() < 0.95:
            ps["state"] = states[rng.integers(len(states))]
        r = rng.random()
        ps["drop"] = (None if r < 0.15 else math.nan if r < 0.2 else math.inf if r < 0.22
                      else np.float64(rng.uniform(0, 1.4)) if r < 0.5 else float(rng.uniform(0, 1.4)))
        if rng.random() < 0.03:
            continue  # a pair without a state (the model starts with none)
        pair_states.append(ps)
    pair_states.append({"pair": ("P0", "X9"), "state": "drifting", "drop": 0.9})  # someone not in the session
    episodes = []
    for _ in range(int(rng.integers(0, 6))):
        pair = tuple(people[i] for i in sorted(rng.choice(n, 2, replace=False)))
        episodes.append({"pair": pair, "people": [pair[int(rng.integers(2))]] if rng.random() < 0.7 else list(pair),
                         "open": bool(rng.random() < 0.7), "repaired": bool(rng.random() < 0.3),
                         "review": [None, "dismiss", "confirm"][int(rng.integers(3))]})
    conn = rng.uniform(-0.2, 0.8, n) if rng.random() < 0.8 else None
    chance = rng.uniform(-0.1, 0.2, n - int(rng.integers(0, 2))) if rng.random() < 0.8 else None
    ev = {p: float(rng.uniform(0, 0.6)) for p in people if rng.random() < 0.6} if rng.random() < 0.7 else None
    got = person_ties(people, pair_states, episodes, conn, chance, ev)
    want = _person_ties_reference(people, pair_states, episodes, conn, chance, ev)
    assert repr(got) == repr(want), seed
    return {v["state"] for v in got.values()}


def test_not_in_tune_words_give_the_evidence_and_the_rising_threshold():
    """A dyad at chance for 600 s: first full arming span at 120 s, so 480 s tested, 5 spans of 120 s: the threshold
    keeps 3 s.e.'s tail over 5, 3.46 standard errors; the words show the evidence and that need."""
    from attune_monitor.ui.model import tune_evidence_words

    rng = np.random.default_rng(3)
    cfg = get_preset("balanced")
    det = RuptureDetector(["A", "B"], modalities=("hr", "eda"), step_s=1.0, config=cfg, window_s=30.0)
    t = np.arange(600, dtype=float) + 1.0
    for m in ("hr", "eda"):
        sync = np.tanh(0.05 * rng.standard_normal((1, t.size)))
        det.update(m, t, sync, np.zeros_like(sync), np.full_like(sync, 0.25))
    ps = det.pair_states()[0]
    assert not ps["armed"] and ps["state"] == "not_in_tune"
    assert {d["arm_need"] for d in ps["modalities"].values()} == {3.46}
    hr = ps["modalities"]["hr"]
    words = tune_evidence_words(ps)
    assert words.startswith(f"vs chance: heart {hr['excess']:+.2f}\u00b1{hr['excess_se']:.2f} \u00b7 skin ")
    assert words.endswith(", needs 3.5 s.e.")
    assert tune_evidence_words({**ps, "armed": True}) == ""


def test_the_terminal_dates_an_episode_as_the_pair_state_does():
    """An onset of 290.75 s read "#1 04:50" in the episode line (truncated) and "out of tune since 04:51" in the
    pair's state (rounded) on the same screen."""
    from attune_monitor.dsp.detector import pair_words
    from attune_monitor.ui.headless import clock, episode_text

    ep = {"id": 1, "pair": ["P1", "P2"], "onset_s": 290.75, "offset_s": 530.75, "outcome": "unrepaired",
          "modalities": ["hr"], "confidence": 1.0, "repaired": False, "open": False}
    text = episode_text(ep)
    assert text.startswith("#1 04:51 ") and "out of tune since 04:51 (prompt closed at 08:51)" in text, text
    assert pair_words("out_of_tune", 290.75) == "out of tune since 04:51"
    assert clock(290.75) == "04:50"  # the running session clock still truncates
