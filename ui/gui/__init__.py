"""Attune's desktop GUI (PySide6 + pyqtgraph): the face a facilitator glances at.

Everything here runs on the Qt GUI thread and only *reads* the Qt-free
:class:`attune_monitor.ui.model.SessionModel` (one ``QTimer`` takes a snapshot when the
model's version changed and hands it to every view). Acquisition and signal
processing run in :class:`attune_monitor.ui.runner.Runner`'s worker thread. Facilitator
actions (markers, episode labels) go back through
:meth:`attune_monitor.ui.model.SessionModel.add_marker`, which hands them to the recorder.

Entry point: :func:`attune_monitor.ui.gui.app.run_gui`.
"""

__all__: list[str] = []  # nothing here: the GUI is its modules
