"""A live source is made once the session's streams have settled (or every expected stream is in).

A stream that resolves after the source is made gets no slot (it is only announced), so a demo whose streams
resolved a second apart under load once ran without P1's skin conductance and P2's heart: the pair could never
be measured. The session here is a clock-driven stand-in (streams appear at known times), so the waits are exact.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from attune_monitor.ui.commands import options
from attune_monitor.ui.commands.options import UsageError, wait_for_source


class _Session:
    """Streams appear at given seconds after creation: ``[(t, participant, source_id)]``."""

    def __init__(self, schedule, rescan_interval=0.5):
        self.t0, self.schedule, self.rescan_interval = time.monotonic(), schedule, rescan_interval

    def _now(self):
        return [(who, sid) for t, who, sid in self.schedule if time.monotonic() - self.t0 >= t]

    @property
    def receivers(self):
        return {sid: SimpleNamespace(descriptor=SimpleNamespace(source_id=sid, name=f"{sid} stream", hostname="lab",
                                                                type="x"))
                for _, sid in self._now()}

    @property
    def participants(self):
        return sorted({who for who, _ in self._now()})


@pytest.fixture
def made(monkeypatch):
    """What each LiveSource was made from: the source ids seen, and when."""
    made = []

    def live_source(session):
        made.append((sorted(session.receivers), time.monotonic() - session.t0))
        return made[-1]

    monkeypatch.setattr("attune_monitor.acquisition.sources.LiveSource", live_source)
    return made


def test_a_stream_resolving_late_is_waited_for(made):
    # 2 people at 0.2 s; P2's second stream 1.6 s later (the old fixed 1-s grace had made the source without it)
    session = _Session([(0.0, "P1", "p1-hr"), (0.2, "P2", "p2-eda"), (1.0, "P1", "p1-eda"), (1.8, "P2", "p2-hr")])
    ids, at = wait_for_source(session, wait_s=15)
    assert ids == ["p1-eda", "p1-hr", "p2-eda", "p2-hr"]
    assert 1.8 + options.SETTLE_S <= at < 1.8 + options.SETTLE_S + 1.5  # (slack for a loaded machine)


def test_settling_waits_one_rescan_beyond_the_grace(made):
    # a session rescanning every 2 s (attune monitor's default) can list a stream 2 s after the one before it
    session = _Session([(0.0, "P1", "a"), (0.0, "P2", "b"), (2.2, "P2", "c")], rescan_interval=2.0)
    ids, at = wait_for_source(session, wait_s=15)
    assert ids == ["a", "b", "c"] and 2.2 + 2.5 <= at < 2.2 + 4.0


def test_expected_streams_are_all_waited_for_and_no_longer(made):
    session = _Session([(0.0, "P1", "a"), (0.0, "P2", "b"), (3.0, "P2", "c")], rescan_interval=5.0)
    ids, at = wait_for_source(session, wait_s=15, expected={"a", "b", "c"})
    assert ids == ["a", "b", "c"] and 3.0 <= at < 4.5   # no settling (5.5 s) once every expected stream is in


def test_at_the_deadline_what_is_there_is_used_or_a_clear_error(made):
    session = _Session([(0.0, "P1", "a"), (0.0, "P2", "b")])
    ids, at = wait_for_source(session, wait_s=1.5, expected={"a", "b", "never"})
    assert ids == ["a", "b"] and 1.5 <= at < 3.0
    lonely = _Session([(0.0, "P1", "a")])
    with pytest.raises(UsageError, match=r"no session to monitor after 1 s: found streams of 1 participant\(s\) "
                                         r"\(P1\); synchrony needs at least 2.*--wait"):
        wait_for_source(lonely, wait_s=1.0)


def _roster(text):
    from attune_monitor.acquisition.roster import Roster

    return Roster.from_toml("version = 1\n" + text)


ROSTER = """
[[participant]]
id = "P1"
  [[participant.streams]]
  source_id = "a"
[[participant]]
id = "P2"
  [[participant.streams]]
  name = "b stream"
  [[participant.streams]]
  source_id = "c*"
"""


def test_a_rosters_streams_are_all_waited_for(made):
    # P2's second stream comes 4 s in, well after the streams "settled" (2.5 s with no new one): the roster says it
    # is coming, so the source waits for it, and no longer
    session = _Session([(0.0, "P1", "a"), (0.0, "P2", "b"), (4.0, "P2", "c-eda")], rescan_interval=0.5)
    roster = _roster(ROSTER)
    ids, at = wait_for_source(session, wait_s=15, roster=roster)
    assert ids == ["a", "b", "c-eda"] and 4.0 <= at < 5.0
    assert options.roster_missing(roster, session.receivers) == []


def test_a_roster_stream_that_never_comes_is_named_after_the_wait(made):
    session = _Session([(0.0, "P1", "a"), (0.0, "P2", "b")])
    roster = _roster(ROSTER)
    ids, at = wait_for_source(session, wait_s=1.5, roster=roster)
    assert ids == ["a", "b"] and 1.5 <= at < 3.0
    assert options.roster_missing(roster, session.receivers) == ["P2: source_id 'c*'"]
