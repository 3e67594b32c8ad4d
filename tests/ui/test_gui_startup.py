"""Start-up in a subprocess: the PySide6 + pyqtgraph multi-plot pitfall, and the window itself.

PySide6 6.12.0 + pyqtgraph aborts ("none_dealloc") when a GraphicsLayoutWidget
with several plots is shown; pyproject pins PySide6-Essentials<6.12. These
tests run the pattern in a fresh interpreter, so a future bump that brings the
abort back fails here instead of on a facilitator's laptop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[2]

MULTIPLOT = r"""
import sys
from PySide6 import QtCore, QtWidgets
import pyqtgraph as pg
import numpy as np
app = QtWidgets.QApplication(sys.argv[:1])
w = pg.GraphicsLayoutWidget()
for r in range(3):
    for c in range(2):
        p = w.addPlot(row=r, col=c)
        p.plot(np.random.default_rng(r).normal(size=200))
w.resize(640, 480)
w.show()
QtCore.QTimer.singleShot(300, app.quit)
app.exec()
w.close()
del w
print("shown", flush=True)
"""

WINDOW = r"""
from tests.helpers.gui_fake import FakeSession
from attune_monitor.ui.gui.app import ensure_app
from attune_monitor.ui.gui.main_window import MainWindow
from PySide6 import QtCore
app = ensure_app()
fs = FakeSession(n_people=4, withdrawer="P3", rupture=(60, 200), loss=None)
fs.advance(90)
w = MainWindow(fs.model)
w.show()
QtCore.QTimer.singleShot(500, app.quit)
app.exec()
print("frames", w.frames, flush=True)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)


def test_graphicslayoutwidget_with_several_plots_does_not_abort():
    res = _run(MULTIPLOT)
    assert res.returncode == 0, f"exit {res.returncode}; stderr:\n{res.stderr[-2000:]}"
    assert "shown" in res.stdout


def test_main_window_starts_and_redraws_in_a_fresh_process():
    res = _run(WINDOW)  # cwd=ROOT: the tests package is importable
    assert res.returncode == 0, f"exit {res.returncode}; stderr:\n{res.stderr[-2000:]}"
    frames = int(res.stdout.split("frames")[1])
    assert frames >= 1


@pytest.mark.skipif(not (ROOT / "recordings" / "sample-couple.xdf").exists(), reason="sample recording missing")
def test_replay_gui_uses_stored_settings_and_flags_win(tmp_path):
    """`attune replay` in GUI mode builds its pipeline from the stored Settings (signals, window, sensitivity);
    a command-line flag beats the stored value; the terminal view ignores the GUI's settings."""
    from PySide6 import QtCore

    from attune_monitor.ui.gui.settings import Settings, qsettings

    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(tmp_path))
    Settings(window_s=45, preset="sensitive", modalities="heart only").save(qsettings())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_CONFIG_HOME=str(tmp_path))
    sample = str(ROOT / "recordings" / "sample-couple.xdf")

    def replay(*extra):
        return subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "replay", sample, "--speed", "64",
                               "--quit-after", "1.5",
                               *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    gui = replay("--preset", "conservative")
    assert gui.returncode == 0, gui.stderr
    assert "signals heart only, window 45 s, sensitivity conservative" in gui.stderr
    term = replay("--headless")
    assert term.returncode == 0, term.stderr
    assert "signals heart + skin, window 30 s, sensitivity balanced" in term.stderr


def test_session_settings_change_the_pipeline(tmp_path):
    """Stored Settings -> Runner: only the chosen signals are processed, with the chosen window and preset."""
    import argparse

    from PySide6 import QtCore

    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.sources import RecordingSource
    from attune_monitor.ui.commands.options import make_runner, session_settings
    from attune_monitor.ui.errors import UsageError
    from attune_monitor.ui.gui.settings import Settings, qsettings

    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(tmp_path))
    Settings(window_s=30, preset="sensitive", modalities="skin only").save(qsettings())
    args = argparse.Namespace(preset=None, window=None, signals=None)
    config, modalities, settings = session_settings(args, gui=True)
    assert (config.window_s, config.preset, modalities) == (30, "sensitive", ("eda",))
    rec = load_recording(ROOT / "recordings" / "sample-couple.xdf")
    runner = make_runner(RecordingSource(rec, speed=1e9), config, modalities)
    assert runner.model.modalities == ("eda",) and runner.pipeline.modalities == ("eda",)
    assert runner.pipeline.engine.config.window_s == 30 and runner.pipeline.cfg.preset == "sensitive"
    while not runner.finished.is_set():
        runner.step()
    snap = runner.model.snapshot(600)
    assert set(snap.grid) == {"eda"} and np.isfinite(snap.grid["eda"][1]).mean() > 0.9
    # same as analysing with those settings (independent run of the same causal pipeline)
    from attune_monitor.ui.runner import analyze_recording

    ref = analyze_recording(rec, config, modalities=("eda",))
    assert [round(e["onset_s"], 2) for e in snap.episodes] == [round(e.onset_s, 2) for e in ref.episodes]
    t, s, _ = snap.sync["eda"]
    np.testing.assert_allclose(s[0], ref.sync["eda"]["sync"][0][-t.size:], equal_nan=True)
    # flags win; a choice that leaves fewer than 2 people is a usage error
    config, modalities, _ = session_settings(argparse.Namespace(preset="conservative", window=None, signals="both"),
                                             True)
    assert config.preset == "conservative" and modalities is None and config.window_s == 30
    with pytest.raises(UsageError, match="window"):
        session_settings(argparse.Namespace(preset=None, window=2.0, signals=None), True)

    class OnePersonEda:
        inputs = [type(runner.source.inputs[0])("P1", "eda", 4.0, "x"),
                  type(runner.source.inputs[0])("P2", "hr", 1.0, "y")]
        origin = 0.0

        def poll(self, *args, **kwargs):  # a Source (acquisition.protocols): nothing to give
            return [], None, {}

        def close(self):
            pass

    with pytest.raises(UsageError, match="synchrony needs 2"):
        make_runner(OnePersonEda(), config, ("eda",))
