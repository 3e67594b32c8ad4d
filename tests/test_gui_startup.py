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

import pytest

pytestmark = pytest.mark.gui
ROOT = Path(__file__).resolve().parents[1]

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
import sys
sys.path.insert(0, %r)
from gui_fake import FakeSession
from ui.gui.app import ensure_app
from ui.gui.main_window import MainWindow
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
    res = _run(WINDOW % str(ROOT / "tests"))
    assert res.returncode == 0, f"exit {res.returncode}; stderr:\n{res.stderr[-2000:]}"
    frames = int(res.stdout.split("frames")[1])
    assert frames >= 1
