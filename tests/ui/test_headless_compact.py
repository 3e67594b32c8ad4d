"""The terminal view of a large group: the people and pairs that need attention by name, the rest counted.

Known truth: a model of 8 people (28 pairs) is handed pair states and a signal status chosen here; the lines must
name exactly the odd person and the pairs in a state worth a look, and count every other pair by its state.
Below :data:`COMPACT_PEOPLE` people (and with ``compact=False``) every person and pair is listed as before.
"""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest

from attune_monitor.dsp.pipeline import Update
from attune_monitor.ui.headless import COMPACT_PEOPLE, HeadlessView, group_text, most_common, pair_rows, render
from attune_monitor.ui.model import SessionModel

MODS = ("hr", "eda")
WORDS = {"attuned": "in tune", "possible_rupture": "possible rupture", "drifting": "drifting",
         "not_in_tune": "not measurably in tune", "calibrating": "learning baseline"}
#: the pairs not in tune in the session below (every other pair is "attuned")
ODD_PAIRS = {("P1", "P3"): "possible_rupture", ("P2", "P3"): "drifting", ("P4", "P5"): "not_in_tune",
             ("P6", "P7"): "calibrating"}


def _model(n_people: int, lost: str | None = "P3"):
    people = [f"P{i + 1}" for i in range(n_people)]
    pairs = list(itertools.combinations(people, 2))
    model = SessionModel(people, MODS, pairs, 4.0, 1.0, 60.0)
    states = []
    for pair in pairs:
        st = ODD_PAIRS.get(pair, "attuned")
        states.append({"pair": pair, "state": st, "words": WORDS[st], "armed": st != "not_in_tune",
                       "modalities": {}})
    status = {p: {m: ("lost" if (p == lost and m == "hr") else "ok") for m in MODS} for p in people}
    model.apply(Update(grid_start=0, grid={m: np.full((n_people, 40), 70.0) for m in MODS},
                       quality={m: np.zeros((n_people, 40), np.uint8) for m in MODS}), states, status)
    return model, pairs


def _plain(model) -> str:
    out = io.StringIO()
    HeadlessView(model, out, tty=False, interval=0.0).draw(force=True)
    return out.getvalue()


def test_most_common_and_group_text():
    assert most_common({}) == (None, [])
    assert most_common({"A": "x", "B": "y", "C": "x"}) == ("x", ["B"])
    assert most_common({"A": "x", "B": "y"}) == ("x", ["B"])  # a tie goes to the first seen
    assert group_text({"A": "ok", "B": "ok"}) == "all 2: ok"
    assert group_text({"A": "ok", "B": "LOST", "C": "ok"}) == "B LOST; the other 2: ok"


def test_plain_view_of_eight_people_names_what_needs_attention_and_counts_the_rest():
    assert COMPACT_PEOPLE <= 8
    model, pairs = _model(8)
    text = _plain(model)
    assert "pairs: every two of them (28;" in text
    assert "] status: P3 hr=LOST eda=ok; the other 7: hr=ok eda=ok\n" in text
    assert "] arousal: all 8: learning baseline\n" in text
    listed = re.findall(r"\] pair (P\d+-P\d+): ", text)
    assert listed == ["P1-P3", "P2-P3"]  # the possible rupture and the drifting pair, in pair order
    assert "possible rupture" in text.split("pair P1-P3: ")[1].splitlines()[0]
    counted = re.search(r"\] pairs: (\d+) other pairs: (.*)\n", text)
    assert counted, text
    assert int(counted.group(1)) == 26
    parts = dict((w, int(c)) for c, w in (re.match(r"(\d+) (.*)", x).groups() for x in counted.group(2).split(", ")))
    assert parts == {"in tune": 24, "not measurably in tune": 1, "learning baseline": 1}
    assert sum(parts.values()) + len(listed) == len(pairs)


def test_terminal_frame_of_eight_people_lists_the_odd_person_and_pairs():
    model, _ = _model(8)
    lines = render(model.snapshot(), width=200)
    people = [ln.split()[0] for ln in lines[lines.index(next(ln for ln in lines if ln.startswith("People"))) + 1:
                                             lines.index(next(ln for ln in lines if ln.startswith("Pairs")))]]
    assert people == ["P3", "other"]
    other = next(ln for ln in lines if ln.startswith("  other 7"))
    assert other.split()[2:4] == ["ok", "ok"]
    pair_lines = [ln for ln in lines if re.match(r"  P\d+-P\d+ ", ln)]
    assert [ln.split()[0] for ln in pair_lines] == ["P1-P3", "P2-P3"]
    assert any(ln.strip() == "26 other pairs: 24 in tune, 1 not measurably in tune, 1 learning baseline"
               for ln in lines)
    full = render(model.snapshot(), width=200, compact=False)
    assert len([ln for ln in full if re.match(r"  P\d+-P\d+ ", ln)]) == 28
    assert len([ln for ln in full if re.match(r"  P\d ", ln)]) == 8


@pytest.mark.parametrize("n_people", [2, 4, COMPACT_PEOPLE - 1])
def test_small_groups_list_every_person_and_pair(n_people):
    model, pairs = _model(n_people, lost=None)
    text = _plain(model)
    assert len(re.findall(r"\] pair P\d+-P\d+: ", text)) == len(pairs)
    assert "] pairs: " not in text
    assert "] status: " + "; ".join(f"P{i + 1} hr=ok eda=ok" for i in range(n_people)) + "\n" in text


def test_a_group_with_every_pair_quiet_is_one_line():
    model, pairs = _model(8, lost=None)
    snap = model.snapshot()
    snap.pair_states = [dict(ps, state="attuned", words="in tune") for ps in snap.pair_states]
    listed, counted = pair_rows(snap)
    assert listed == [] and counted == f"all {len(pairs)} pairs: in tune"


def _episode(i, pair, onset, person="P3", repaired_at=None):
    return {"id": i, "pair": pair, "onset_s": onset, "flagged_s": onset + 15.0, "people": [person],
            "modalities": ["hr", "eda"], "confidence": 1.0, "open": repaired_at is None,
            "repaired": repaired_at is not None, "offset_s": repaired_at,
            "outcome": "repaired" if repaired_at is not None else "open"}


class _Frozen:
    """A model whose snapshot is the one given (the view reads nothing else)."""

    def __init__(self, snap):
        self.snap = snap

    def snapshot(self, seconds=30.0):
        return self.snap


def test_one_persons_episodes_with_the_group_are_one_line_in_a_large_group():
    from attune_monitor.ui.model import group_episodes

    model, _ = _model(8, lost=None)
    snap = model.snapshot()
    # P3 flagged with five of the others within seconds (ids out of pair order), and one unrelated pair
    eps = [_episode(1, ("P3", "P6"), 320.0), _episode(2, ("P1", "P3"), 321.0), _episode(3, ("P3", "P8"), 321.0),
           _episode(4, ("P2", "P3"), 322.0), _episode(5, ("P3", "P4"), 322.0),
           _episode(6, ("P5", "P7"), 100.0, person="P5", repaired_at=160.0)]
    snap.episodes = eps
    snap.groups = group_episodes(eps, snap.participants)
    out = io.StringIO()
    view = HeadlessView(_Frozen(snap), out, tty=False, interval=0.0)
    view.draw(force=True)
    text = out.getvalue()
    groups = re.findall(r"\] group episode (.*)\n", text)
    assert groups == ["05:20 P3 drifting away \u2014 5 of 7 ties dropped (#1-#5, with P1 P2 P4 P6 P8); open: check in"]
    singles = re.findall(r"\] episode (#\d+) ", text)
    assert singles == ["#6"]  # a pair episode of its own keeps its line
    view.draw(force=True)  # nothing changed: no line repeated
    assert out.getvalue().count("group episode") == 1
    for e in eps[:5]:
        e.update(open=False, repaired=True, offset_s=e["onset_s"] + 40.0, outcome="repaired")
    snap.groups = group_episodes(eps, snap.participants)
    view.draw(force=True)
    last = re.findall(r"\] group episode (.*)\n", out.getvalue())[-1]
    assert last == "05:20 P3 drifted away \u2014 5 of 7 ties dropped (#1-#5, with P1 P2 P4 P6 P8); repaired by 06:02"
    frame = render(snap, width=300)
    assert "  group " + last in frame
    assert sum(ln.startswith("  #") for ln in frame) == 1  # P5-P7's own episode
    assert sum(ln.startswith("  #") for ln in render(snap, width=300, compact=False)) == 6


def test_current_sync_is_each_pairs_last_finite_value():
    from types import SimpleNamespace

    from attune_monitor.ui.headless import current_sync

    rng = np.random.default_rng(0)
    s = rng.uniform(-1, 1, (7, 12))
    s[rng.random(s.shape) < 0.4] = np.nan
    s[2] = np.nan  # a pair with nothing yet
    s[3, -1] = 0.25  # the newest column finite
    s[4, :] = np.nan
    s[4, 0] = -0.5  # only the oldest
    snap = SimpleNamespace(pairs=[("a", str(k)) for k in range(7)],
                           sync={"hr": (np.arange(12.0), s, s), "eda": (np.zeros(0), np.zeros((0, 0)), None)})
    got = current_sync(snap)
    for p in range(7):
        fin = [v for v in s[p] if np.isfinite(v)]
        assert (np.isnan(got["hr"][p]) if not fin else got["hr"][p] == fin[-1]), p
    assert got["hr"][3] == 0.25 and got["hr"][4] == -0.5 and np.isnan(got["hr"][2])
    assert got["eda"].shape == (7,) and np.isnan(got["eda"]).all()


def test_a_new_block_comes_for_what_is_listed_not_for_a_count():
    model, pairs = _model(8, lost=None)
    out = io.StringIO()
    view = HeadlessView(model, out, tty=False, interval=0.0)
    view.draw()
    assert out.getvalue().count("] pairs: ") == 1

    def states(changes):
        rows = []
        for pair in pairs:
            st = changes.get(pair, ODD_PAIRS.get(pair, "attuned"))
            rows.append({"pair": pair, "state": st, "words": WORDS[st], "armed": st != "not_in_tune",
                         "modalities": {}})
        return rows

    model.apply(Update(), states({("P1", "P2"): "not_in_tune"}))  # 23 in tune, 2 not: the same states counted
    view.draw()
    assert out.getvalue().count("] pairs: ") == 1
    model.apply(Update(), states({("P1", "P2"): "drifting"}))  # a pair to look at
    view.draw()
    text = out.getvalue()
    assert text.count("] pairs: ") == 2 and "] pair P1-P2: " in text
    assert text.rstrip().splitlines()[-1].endswith("pairs: 25 other pairs: 23 in tune, 1 not measurably in tune, "
                                                   "1 learning baseline")
