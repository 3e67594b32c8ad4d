"""Session setup dialog against LSL streams published by the test (unique source_ids, bounded waits)."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("tmp_qsettings")]
SAMPLE = Path(__file__).resolve().parents[2] / "recordings" / "sample-couple.xdf"


@pytest.fixture
def streams(qtbot):
    """Four streams: P1 HR + EDA and P2 HR labelled in their desc, one EDA stream without a participant."""
    from attune_monitor.acquisition.lsl import pylsl

    tag = f"attune-setuptest-{uuid.uuid4().hex[:8]}"
    spec = {  # key: (name, type, unit, participant)
        "p1hr": ("Polar P1 HR", "HR", "bpm", "P1"),
        "p1eda": ("Shimmer P1 EDA", "EDA", "uS", "P1"),
        "p2hr": ("Polar P2 HR", "HR", "bpm", "P2"),
        "anon": ("Shimmer 7A2F EDA", "EDA", "uS", None),
    }
    outs = {}
    for key, (name, typ, unit, who) in spec.items():
        info = pylsl.StreamInfo(name, typ, 1, 8.0, "float32", f"{tag}-{key}")
        if who:
            info.desc().append_child_value("participant", who)
        ch = info.desc().append_child("channels").append_child("channel")
        ch.append_child_value("label", typ)
        ch.append_child_value("unit", unit)
        outs[key] = pylsl.StreamOutlet(info)
    k = [0]

    def push():
        k[0] += 1
        for key, o in outs.items():
            v = 70.0 + 5 * math.sin(k[0] / 8) if spec[key][1] == "HR" else 4.0 + 0.5 * math.sin(k[0] / 20)
            o.push_sample([v])

    timer = QtCore.QTimer()
    timer.timeout.connect(push)
    timer.start(125)
    yield tag, outs
    timer.stop()


def _dialog(qtbot, tag, n=4, **kw):
    from attune_monitor.ui.gui.setup_dialog import SetupDialog

    dlg = SetupDialog(match=f"{tag}*", timeout=1.0, **kw)
    qtbot.addWidget(dlg)
    dlg.show()
    for attempt in range(3):   # liblsl may answer a resolve in waves: look again, bounded
        qtbot.waitUntil(lambda a=attempt: dlg.scans > a, timeout=8000)
        if dlg.table.rowCount() >= n:
            break
        dlg.rescan()
    assert dlg.table.rowCount() == n, [s.descriptor.name for s in dlg.streams]
    return dlg


def test_table_fills_edit_participant_saved_roster_assigns_it(qtbot, streams, tmp_path):
    from attune_monitor.acquisition.roster import Roster, assign
    from attune_monitor.ui.gui.setup_dialog import COL_HOW, COL_PARTICIPANT, COL_SIGNAL

    tag, _ = streams
    dlg = _dialog(qtbot, tag)
    row = {s.descriptor.source_id.rsplit("-", 1)[1]: i for i, s in enumerate(dlg.streams)}
    cell = lambda key, col: dlg.table.cellWidget(row[key], col).currentText()  # noqa: E731
    # auto-assignment: the desc's participant, else one person per device
    assert (cell("p1hr", COL_PARTICIPANT), cell("p1hr", COL_SIGNAL)) == ("P1", "heart: rate (device)")
    assert (cell("p1eda", COL_PARTICIPANT), cell("p1eda", COL_SIGNAL)) == ("P1", "skin conductance (EDA)")
    assert cell("p2hr", COL_PARTICIPANT) == "P2"
    assert dlg.table.item(row["p1hr"], COL_HOW).text() == "stream label"
    assert dlg.table.item(row["anon"], COL_HOW).text() == "one per device"
    assert cell("anon", COL_PARTICIPANT) not in ("P1", "P2", "")
    assert dlg.table.item(row["p1hr"], 3).text() == "8 Hz"
    assert dlg.start_btn.isEnabled()
    # the facilitator says the anonymous EDA sensor is P2's (picked in the combo box)
    dlg.set_participant(row["anon"], "P2")
    assert dlg.table.item(row["anon"], COL_HOW).text() == "edited"
    path = dlg.save_roster(tmp_path / "couple.toml")
    # independent check: the saved file, loaded and applied by the roster module, gives that assignment
    descs = [s.descriptor for s in dlg.streams]
    a = assign(descs, Roster.load(path))
    by = a.by_participant()
    assert set(by) == {"P1", "P2"}
    assert by["P2"]["eda"].descriptor.source_id == f"{tag}-anon"
    assert by["P2"]["hr"].descriptor.source_id == f"{tag}-p2hr"
    assert by["P1"]["eda"].descriptor.source_id == f"{tag}-p1eda"
    # "not used" -> an ignore rule; the stream is left out
    dlg.set_signal(row["p1eda"], None)
    a2 = assign(descs, dlg.roster())
    assert "eda" not in a2.by_participant()["P1"]
    assert dlg.table.item(row["p1eda"], 7).text() == "\u2013"
    dlg.set_signal(row["p1eda"], "hr")   # a second heart stream for P1: the device-HR one stays in use
    assert [dlg.table.item(row[k], 7).text() for k in ("p1hr", "p1eda")] == ["\u2713", "spare"]
    dlg.set_signal(row["p1eda"], "eda")
    # a rescan keeps the edit
    dlg.rescan()
    qtbot.waitUntil(lambda: dlg.scans >= 2 and not dlg._scanning, timeout=8000)
    row = {s.descriptor.source_id.rsplit("-", 1)[1]: i for i, s in enumerate(dlg.streams)}
    assert dlg.table.cellWidget(row["anon"], COL_PARTICIPANT).currentText() == "P2"


def test_load_roster_applies_it_and_preview_shows_the_stream(qtbot, streams, tmp_path):
    from attune_monitor.ui.gui.setup_dialog import COL_HOW, COL_PARTICIPANT

    tag, _ = streams
    dlg = _dialog(qtbot, tag)
    roster = tmp_path / "r.toml"
    roster.write_text('version = 1\n[[participant]]\nid = "Client"\n  [[participant.streams]]\n'
                      f'  source_id = "{tag}-p2hr"\n'
                      f'[[participant]]\nid = "Partner"\n  [[participant.streams]]\n  source_id = "{tag}-anon"\n')
    dlg.load_roster(roster)
    row = {s.descriptor.source_id.rsplit("-", 1)[1]: i for i, s in enumerate(dlg.streams)}
    assert dlg.table.cellWidget(row["p2hr"], COL_PARTICIPANT).currentText() == "Client"
    assert dlg.table.item(row["p2hr"], COL_HOW).text() == "roster"
    assert dlg.table.cellWidget(row["anon"], COL_PARTICIPANT).currentText() == "Partner"
    assert dlg.table.cellWidget(row["p1hr"], COL_PARTICIPANT).currentText() == "P1"   # not in the roster: its label
    # a bad roster file: a clear error, the table stays
    bad = tmp_path / "bad.toml"
    bad.write_text("[[participant]]\nname = 'x'\n")
    with pytest.raises(ValueError, match="participant"):
        dlg.load_roster(bad)
    assert dlg.table.rowCount() == 4
    # preview: select the P1 HR row -> its last seconds, values as published (65..75 bpm)
    dlg.table.selectRow(row["p1hr"])
    qtbot.waitUntil(lambda: dlg.update_preview() >= 8, timeout=8000)
    x, y = dlg.preview_curve.getData()
    assert x[-1] == pytest.approx(0.0) and x[0] >= -10.5
    assert 64.5 <= np.min(y) and np.max(y) <= 75.5
    assert "Polar P1 HR" in dlg.preview_title.text() and "bpm" in dlg.preview_title.text()
    assert dlg.table.item(row["p1hr"], 7).text() == "\u2713"
    dlg.table.clearSelection()
    assert dlg._preview_rx is None


def test_open_recording_and_nothing_found(qtbot):
    from attune_monitor.ui.gui.setup_dialog import SetupDialog

    dlg = SetupDialog(match=f"attune-nothing-{uuid.uuid4().hex}*", timeout=0.5)
    qtbot.addWidget(dlg)
    qtbot.waitUntil(lambda: dlg.scans >= 1, timeout=8000)
    assert dlg.table.rowCount() == 0 and "No streams found" in dlg.status.text()
    assert not dlg.start_btn.isEnabled()
    dlg.open_recording(SAMPLE)
    assert dlg.choice == "replay" and dlg.recording_path == str(SAMPLE) and dlg.result() == 1
