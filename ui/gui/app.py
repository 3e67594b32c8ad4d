"""QApplication set-up, the error dialog, and :func:`run_gui` (used by demo, monitor and replay)."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import traceback
from pathlib import Path

__all__ = ["GUI_MISSING", "has_display", "ensure_app", "ErrorReporter", "recording_guard", "run_gui"]

#: What a missing [gui] extra (PySide6 / pyqtgraph) is called in messages (the commands show the terminal view).
GUI_MISSING = "no GUI installed (pip install 'attune-monitor[gui]')"

try:
    from PySide6 import QtCore, QtGui, QtWidgets
except ModuleNotFoundError as exc:  # the [gui] extra is not installed: say how to install it
    raise ModuleNotFoundError(GUI_MISSING, name=exc.name) from None
if importlib.util.find_spec("pyqtgraph") is None:  # the plots (imported when the window opens)
    raise ModuleNotFoundError(GUI_MISSING, name="pyqtgraph")

logger = logging.getLogger(__name__)


def has_display() -> bool:
    """True when Qt can open windows.

    A display server that answers (not only a ``$DISPLAY`` that is set: Qt aborts on one with no server behind it), or
    an explicit offscreen/minimal platform (:func:`attune_monitor.ui.gui.display.display_usable` says why not).
    """
    from .display import display_usable

    return display_usable()[0]


def ensure_app(argv=None) -> QtWidgets.QApplication:
    """The QApplication (created once: high-DPI pass-through scaling, pyqtgraph options, app font)."""
    app = QtWidgets.QApplication.instance()
    if app is not None:
        return app
    QtGui.QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        QtCore.Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
    app = QtWidgets.QApplication(list(argv or sys.argv[:1]))
    app.setApplicationName("Attune")
    app.setOrganizationName("Attune")
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=False, background=None, foreground="#374151", useOpenGL=False)
    font = app.font()
    font.setPointSizeF(max(font.pointSizeF(), 10.0))
    app.setFont(font)
    return app


class ErrorReporter(QtCore.QObject):
    """Shows unhandled exceptions (GUI thread or any other thread) in a dialog instead of crashing.

    ``on_error`` (e.g. flushing the recording) runs first, so the recording is
    safe whatever the user does with the dialog.
    """

    raised = QtCore.Signal(str, str)

    def __init__(self, parent=None, on_error=None, show_dialog: bool = True):
        super().__init__(parent)
        self.on_error = on_error
        self.show_dialog = show_dialog
        self.errors: list[str] = []
        self._showing = False
        self.raised.connect(self._show, QtCore.Qt.ConnectionType.QueuedConnection)

    def install(self) -> ErrorReporter:
        """Report uncaught exceptions of every thread (sys and threading hooks); returns self."""
        self._prev_hook, self._prev_thread_hook = sys.excepthook, threading.excepthook
        sys.excepthook = self._hook
        threading.excepthook = lambda a: self._hook(a.exc_type, a.exc_value, a.exc_traceback)
        return self

    def uninstall(self) -> None:
        """Restore the exception hooks that were there before :meth:`install`."""
        sys.excepthook, threading.excepthook = self._prev_hook, self._prev_thread_hook

    def _hook(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            QtWidgets.QApplication.quit()
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        logger.error("unhandled error:\n%s", details)
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:  # the safety net must not throw
                logger.exception("error handler failed")
        self.raised.emit(f"{exc_type.__name__}: {exc}", details)

    def _show(self, message: str, details: str) -> None:
        self.errors.append(message)
        if not self.show_dialog or self._showing:
            return
        self._showing = True
        try:
            box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Critical, "Attune: unexpected error",
                                        f"{message}\n\nThe session keeps running and any recording is kept safe. "
                                        "If this repeats, please report it with the details below.")
            box.setDetailedText(details)
            box.exec()
        finally:
            self._showing = False


def recording_guard(runner):
    """The error hook of a session: flush its recording to disk (``runner.flush_recording``) before the dialog."""

    def keep_recording_safe(exc):
        flush = getattr(runner, "flush_recording", None)
        if flush is not None:
            flush()

    return keep_recording_safe


def run_gui(runner, screenshot: str | Path | None = None, quit_after: float | None = None, settings=None,
            title: str = "Attune") -> int:
    """Open the session window on ``runner.model`` and run the Qt event loop.

    Parameters
    ----------
    runner : ui.runner.Runner
        Started here if it has not been (``runner.start()``); stopped on exit.
    screenshot : path | None
        Save a PNG of the window after ``quit_after`` seconds (default 10) and exit.
    quit_after : float | None
        Exit after this many seconds (wall clock).
    settings : ui.gui.settings.Settings | None
        Default: the user's remembered settings.

    Returns
    -------
    exit_code : int
    """
    from attune_monitor.ui.runner import session_heap_frozen

    from .main_window import MainWindow
    from .settings import Settings

    app = ensure_app()
    settings = settings or Settings.load()

    reporter = ErrorReporter(app, on_error=recording_guard(runner)).install()
    win = MainWindow(runner.model, runner, settings=settings, title=title)
    if screenshot is not None and quit_after is None:
        quit_after = 10.0
    if quit_after is not None:
        def finish():
            if screenshot is not None:
                win.redraw()
                app.processEvents()
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                ok = win.grab().save(str(screenshot))
                logger.info("screenshot %s: %s", screenshot, "saved" if ok else "FAILED")
            win.close()
            app.quit()

        QtCore.QTimer.singleShot(int(quit_after * 1000), finish)
    # the session's long-lived objects (pipeline, detector, model, the window's widgets) out of the collector's
    # scans while it runs, as `attune monitor --headless` runs it (ui.headless.run_headless)
    with session_heap_frozen():
        try:
            if getattr(runner, "_thread", None) is None and hasattr(runner, "start"):
                runner.start()
            win.show()
            code = app.exec()
        finally:
            reporter.uninstall()
            try:
                runner.stop()
            except Exception:
                logger.exception("stopping the session failed")
    return int(code)
