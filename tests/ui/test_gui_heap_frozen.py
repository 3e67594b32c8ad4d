"""The GUI runs its session with the heap frozen out of the collector's scans, as the headless monitor does.

:func:`attune_monitor.ui.runner.session_heap_frozen` (``gc.freeze()`` for the session, ``gc.unfreeze()`` at its
end) keeps a large group's detector out of the full collections that fall on the heavy tick. ``attune monitor
--headless`` has it (``ui.headless.run_headless``); the window's path (``ui.gui.app.run_gui``, behind ``attune
monitor``, ``replay`` and ``demo``) must have it too.
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")
from PySide6 import QtCore  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("tmp_qsettings")]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "recordings" / "sample-couple.xdf"


@pytest.mark.skipif(not SAMPLE.exists(), reason="sample recording missing (make recordings)")
def test_run_gui_runs_its_session_with_the_heap_frozen_and_thaws_it_at_the_end(qtbot):
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.gui.app import run_gui
    from attune_monitor.ui.gui.settings import Settings
    from attune_monitor.ui.runner import Runner

    assert gc.get_freeze_count() == 0
    runner = Runner(RecordingSource(load_recording(SAMPLE), speed=32.0))
    frozen_at_tick = []  # gc.get_freeze_count() on the worker thread, at every pipeline update
    runner.listeners.append(lambda upd: frozen_at_tick.append(gc.get_freeze_count()))
    window_objects = []

    def in_session():  # on the Qt thread, while the event loop runs
        window_objects.append(gc.get_freeze_count())

    QtCore.QTimer.singleShot(1000, in_session)
    try:
        code = run_gui(runner, quit_after=2.0, settings=Settings())
    finally:
        runner.stop()
        gc.unfreeze()  # (a failure must not leave the rest of the test session frozen)
    assert code == 0
    assert len(frozen_at_tick) > 5, "the session did not run"
    # the objects built before the session started (modules, the pipeline, the window) are frozen while it runs
    assert min(frozen_at_tick) > 1000 and window_objects and window_objects[0] > 1000
    assert gc.get_freeze_count() == 0  # handed back to the collector when the session ended
