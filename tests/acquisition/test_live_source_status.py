"""The status words a live source gives the views, from each inlet's state.

A stream whose inlet is still opening showed as "lost" (a red cross in the GUI, ``LOST`` in the terminal) for the
first seconds of a session. It is "connecting" now; lost and stale streams still read "lost". A stand-in session
(receivers with a real stream descriptor and a settable inlet state), so every state is reached on purpose.
"""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.acquisition.convention import describe
from attune_monitor.acquisition.sources import LiveSource


def _descriptor(who: str, kind: str):
    typ, unit = {"rr": ("RR", "ms"), "eda": ("EDA", "uS")}[kind]
    return describe(f"<info><name>{who} {typ}</name><type>{typ}</type><channel_count>1</channel_count>"
                    f"<nominal_srate>{0 if kind == 'rr' else 4}</nominal_srate><channel_format>float32"
                    f"</channel_format><source_id>{who}-{kind}</source_id><desc><participant>{who}</participant>"
                    f"<channels><channel><label>{typ}</label><unit>{unit}</unit><type>{typ}</type></channel>"
                    "</channels></desc></info>")


class _Receiver:
    def __init__(self, who, kind):
        self.descriptor = _descriptor(who, kind)
        self.key = (who, kind)
        self.state = "connecting"

    def read_new(self, cursor):
        return np.zeros(0), np.zeros(0), cursor


class _Session:
    def __init__(self):
        self.participants = ["P1", "P2"]
        self.by = {(w, m): _Receiver(w, k) for w in self.participants for m, k in (("hr", "rr"), ("eda", "eda"))}
        self.receivers = {r.key: r for r in self.by.values()}

    def receiver_for(self, who, modality):
        return self.by.get((who, modality))


@pytest.mark.parametrize("state, word", [("connecting", "connecting"), ("connected", "ok"), ("noisy", "noisy"),
                                         ("recovered", "recovered"), ("stale", "lost"), ("lost", "lost"),
                                         ("closed", "lost")])
def test_each_inlet_state_reads_as_the_status_word_the_views_show(state, word):
    session = _Session()
    src = LiveSource(session)
    assert [(s.participant, s.modality) for s in src.inputs] == [("P1", "hr"), ("P1", "eda"), ("P2", "hr"),
                                                                 ("P2", "eda")]
    session.by[("P2", "eda")].state = state
    _, _, status = src.poll()
    assert status["P2"]["eda"] == word
    assert status["P1"] == {"hr": "connecting", "eda": "connecting"}  # still opening: not lost


def test_the_views_show_connecting_grey_not_a_red_cross():
    from attune_monitor.ui.gui.style import STATUS_STYLE
    from attune_monitor.ui.gui.traces import display_status
    from attune_monitor.ui.headless import _STATUS_WORDS

    assert STATUS_STYLE["connecting"] != STATUS_STYLE["lost"]
    assert display_status("connecting", "no_data") == "connecting"  # no samples yet is not a loss while opening
    assert _STATUS_WORDS["connecting"] == "connecting" and _STATUS_WORDS["lost"] == "LOST"
