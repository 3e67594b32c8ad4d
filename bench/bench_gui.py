"""GUI frame rate and CPU with N people: one QTimer redraws while a worker thread updates the model.

A worker thread applies scripted updates (tests/helpers/gui_fake.py) to the SessionModel
every ``--update-ms`` (default 20 ms, faster than the 30 Hz timer, so every
tick has something new to draw: the worst case). The window's own QTimer
redraws; we count redraws actually painted and the process CPU time. The session
is the flagged group layout (P3 drifting away from everyone: person card, P3's
pair plots, one group episode), the worst case of the group view.

``capacity_fps`` is frames per second of GUI-thread CPU (what the window could
draw with a core of its own); ``redraws_per_s`` what it drew with the worker
thread and whatever else runs on the machine (``load_avg_1min``).

    python bench/bench_gui.py --people 8 12 --seconds 10 --size 1366x768
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests package (tests/helpers/gui_fake.py)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def measure(people: int = 8, seconds: float = 10.0, update_ms: float = 20.0, fps: float = 30.0,
            size=(1600, 1000)) -> dict:
    from PySide6 import QtCore

    from attune_monitor.ui.gui.app import ensure_app
    from attune_monitor.ui.gui.main_window import MainWindow
    from tests.helpers.gui_fake import FakeSession

    app = ensure_app()
    fs = FakeSession(n_people=people, withdrawer="P3", rupture=(120, 400), loss=None)
    for _ in range(180):
        fs.advance(1.0)   # three minutes of history: full traces
    win = MainWindow(fs.model, fps=fps)
    win.resize(*size)
    win.show()
    painted = [0]

    class PaintCounter(QtCore.QObject):
        def eventFilter(self, obj, ev):  # noqa: N802
            if ev.type() == QtCore.QEvent.Type.Paint:
                painted[0] += 1
            return False

    counter = PaintCounter()
    win.timelines.viewport().installEventFilter(counter)
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            fs.advance(update_ms / 1000.0 * 4)  # the session runs at 4x: plenty of new data per frame
            stop.wait(update_ms / 1000.0)

    for _ in range(10):
        app.processEvents()
    th = threading.Thread(target=worker, daemon=True)
    th.start()
    f0, r0, p0 = win.frames, win.redraw_s, painted[0]
    cpu0, wall0, main0 = time.process_time(), time.perf_counter(), time.thread_time()
    QtCore.QTimer.singleShot(int(seconds * 1000), app.quit)
    app.exec()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    main_cpu = time.thread_time() - main0
    stop.set()
    th.join(2)
    frames = win.frames - f0
    out = {
        "people": people, "pairs": len(fs.model.pairs), "seconds": round(wall, 2),
        "redraws_per_s": round(frames / wall, 1), "paints_per_s": round((painted[0] - p0) / wall, 1),
        "update_ms_mean": round(1000 * (win.redraw_s - r0) / max(frames, 1), 1),
        "gui_thread_cpu_ms_per_frame": round(1000 * main_cpu / max(frames, 1), 1),
        "capacity_fps": round(frames / max(main_cpu, 1e-9), 1),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 0), "cores": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    win.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, nargs="+", default=[2, 4, 8, 12])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--update-ms", type=float, default=20.0)
    ap.add_argument("--size", default="1600x1000", help="window size WxH (default 1600x1000)")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.lower().split("x"))
    for n in args.people:
        print({**measure(n, args.seconds, args.update_ms, size=size), "size": args.size}, flush=True)


if __name__ == "__main__":
    main()
