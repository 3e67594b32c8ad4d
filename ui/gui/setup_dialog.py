"""Session setup: the LSL streams on the network, who wears which, a signal preview; or a recording to replay.

:class:`SetupDialog` lists what :func:`attune_monitor.acquisition.discovery.discover` finds
(in a worker thread: the window never waits on LSL), auto-assigns every stream
to a participant and a signal with :func:`attune_monitor.acquisition.roster.assign` (the
roster's rules, then the stream's ``participant`` element, then one person per
device), and lets the facilitator change both from combo boxes. The table is
the roster: :meth:`SetupDialog.roster` freezes it
(:meth:`attune_monitor.acquisition.roster.Roster.from_assignment`, streams marked "not used"
become ``[[ignore]]`` rules), "Save roster…" writes it and "Load roster…"
applies a saved one to the streams in view. Selecting a row previews the last
~10 s of that stream from a short-lived :class:`attune_monitor.acquisition.inlet.StreamReceiver`.

``attune monitor`` opens this dialog first in GUI mode when no ``--roster`` is
given; ``attune demo`` never does.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from .style import MUTED, OKABE_ITO, STYLESHEET

__all__ = [
    "SIGNAL_CHOICES", "KIND_LABEL", "COLUMNS", "COL_PARTICIPANT", "COL_SIGNAL", "COL_HOW", "COL_USE", "PREVIEW_S",
    "SetupDialog", "run_setup"
]

logger = logging.getLogger(__name__)

#: Signal choices in the table: label -> stream kind (None: leave the stream out).
SIGNAL_CHOICES = {
    "heart: RR intervals": "rr", "heart: ECG": "ecg", "heart: rate (device)": "hr", "heart: PPG": "ppg",
    "skin conductance (EDA)": "eda", "not used": None,
}
KIND_LABEL = {k: label for label, k in SIGNAL_CHOICES.items()}
COLUMNS = ("Stream", "Type", "Host", "Rate", "Participant", "Signal", "How assigned", "In use")
COL_PARTICIPANT, COL_SIGNAL, COL_HOW, COL_USE = 4, 5, 6, 7
#: Seconds of signal shown in the preview.
PREVIEW_S = 10.0


def _key(d) -> str:
    return d.source_id or d.uid


class SetupDialog(QtWidgets.QDialog):
    """Choose the streams and people of a live session, or a recording to replay.

    Parameters
    ----------
    roster : acquisition.roster.Roster | None
        Rules applied to the discovered streams first.
    match : str | None
        Only streams whose name, source_id, host or type match this glob.
    timeout : float
        Seconds each discovery waits for streams to answer.
    parent : QWidget | None

    Attributes
    ----------
    choice : {"live", "replay"} | None
        What the facilitator chose (None: cancelled).
    recording_path : str | None
        With ``choice == "replay"``.
    streams : list of acquisition.discovery.DiscoveredStream
        The streams in the table, in row order.
    """

    discovered = QtCore.Signal(object, object)   # (list of DiscoveredStream, error text or None)

    def __init__(self, roster=None, match: str | None = None, timeout: float = 1.0, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Attune \u2013 session setup")
        self.setStyleSheet(STYLESHEET)
        self.match = match
        self.timeout = float(timeout)
        self._roster = roster
        self.streams: list = []
        self.choice: str | None = None
        self.recording_path: str | None = None
        self.scans = 0                 # discoveries finished (tests wait on it)
        self._scanning = False
        self._preview_rx = None        # StreamReceiver of the previewed stream
        self._preview_key = None
        self.discovered.connect(self._on_discovered, QtCore.Qt.ConnectionType.QueuedConnection)

        intro = QtWidgets.QLabel(
            "<b>Who wears which sensor?</b> Attune found these streams and guessed the people from the streams' "
            "own labels (or one person per device). Change a participant or a signal in its row; save the roster "
            "to reuse it next time.")
        intro.setWordWrap(True)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(COLUMNS)):
            hh.setSectionResizeMode(c, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._selection_changed)

        self.status = QtWidgets.QLabel("Looking for streams\u2026")
        self.status.setStyleSheet(f"color:{MUTED}")
        self.status.setWordWrap(True)
        self.summary = QtWidgets.QLabel("")
        self.summary.setWordWrap(True)

        import pyqtgraph as pg

        self.preview = pg.PlotWidget()
        self.preview.setMinimumHeight(130)
        self.preview.setMaximumHeight(170)
        self.preview.setMouseEnabled(False, False)
        self.preview.hideButtons()
        self.preview.setLabel("bottom", "seconds")
        self.preview_curve = pg.PlotCurveItem(pen=pg.mkPen(OKABE_ITO["blue"], width=1.5))
        self.preview.addItem(self.preview_curve)
        self.preview_title = QtWidgets.QLabel("Select a stream to see its last 10 s.")
        self.preview_title.setStyleSheet(f"color:{MUTED}")
        self.preview_timer = QtCore.QTimer(self)
        self.preview_timer.timeout.connect(self.update_preview)

        self.rescan_btn = QtWidgets.QPushButton("\u21BB Look again")
        self.rescan_btn.clicked.connect(self.rescan)
        self.load_btn = QtWidgets.QPushButton("Load roster\u2026")
        self.load_btn.clicked.connect(self._load_clicked)
        self.save_btn = QtWidgets.QPushButton("Save roster\u2026")
        self.save_btn.clicked.connect(self._save_clicked)
        self.open_btn = QtWidgets.QPushButton("Open recording\u2026")
        self.open_btn.setToolTip("Replay a recorded session (XDF, E4 folder or CSV) instead")
        self.open_btn.clicked.connect(self._open_clicked)
        self.start_btn = QtWidgets.QPushButton("Start session")
        self.start_btn.setDefault(True)
        self.start_btn.setEnabled(False)
        self.start_btn.clicked.connect(self.start_live)
        cancel = QtWidgets.QPushButton("Cancel")
        cancel.clicked.connect(self.reject)

        top = QtWidgets.QHBoxLayout()
        for b in (self.rescan_btn, self.load_btn, self.save_btn):
            top.addWidget(b)
        top.addStretch(1)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.open_btn)
        bottom.addStretch(1)
        bottom.addWidget(cancel)
        bottom.addWidget(self.start_btn)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(top)
        lay.addWidget(self.table, 3)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)
        lay.addWidget(self.preview_title)
        lay.addWidget(self.preview, 1)
        lay.addLayout(bottom)
        self.resize(980, 620)
        self.rescan()

    # -- discovery (worker thread) ---------------------------------------------------------------------
    def rescan(self) -> None:
        """Look for streams again (in a worker; the table refills when it is done)."""
        if self._scanning:
            return
        self._scanning = True
        self.rescan_btn.setEnabled(False)
        self.status.setText("Looking for streams\u2026")

        def work():
            try:
                from attune_monitor.acquisition.discovery import discover

                found, err = discover(self.timeout, match=self.match, peek=0.5), None
            except Exception as exc:  # shown in the dialog, never a crash
                logger.exception("stream discovery failed")
                found, err = [], str(exc)
            try:
                self.discovered.emit(found, err)
            except RuntimeError:  # the dialog was closed meanwhile
                pass

        threading.Thread(target=work, name="attune-setup-discover", daemon=True).start()

    def _on_discovered(self, found, err) -> None:
        self._scanning = False
        self.rescan_btn.setEnabled(True)
        self.scans += 1
        if err:
            self.status.setText(f"Could not look for streams: {err}")
            return
        # keep the facilitator's edits for streams still there; assign the others automatically
        edits = self._row_choices(edited_only=True)
        self.streams = list(found)
        self._fill(self._auto(), keep=edits)
        if not self.streams:
            self.status.setText("No streams found yet. Switch the sensors on (or run `attune simulate`), "
                                "then press \u201cLook again\u201d \u2013 or open a recording.")
        else:
            n_bad = sum(not s.full_header for s in self.streams)
            self.status.setText(f"{len(self.streams)} stream(s) found." + (
                f" {n_bad} did not send their full header in time (participant unknown)." if n_bad else ""))

    # -- assignment ----------------------------------------------------------------------------------------
    def _auto(self):
        from attune_monitor.acquisition.roster import assign

        return assign([s.descriptor for s in self.streams], self._roster)

    def _fill(self, assignment, keep=None) -> None:
        """Fill the table from an assignment (``keep``: ``key -> (participant, kind)`` edits to keep)."""
        keep = keep or {}
        reasons = {_key(d): r for d, r in assignment.unassigned}
        people = list(assignment.participants)
        for p, _k in keep.values():
            if p and p not in people:
                people.append(p)
        for i in range(1, 9):
            if f"P{i}" not in people:
                people.append(f"P{i}")
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.streams))
        for row, s in enumerate(self.streams):
            d = s.descriptor
            a = assignment.for_stream(getattr(d, "key", None) or _key(d))   # by identity (name, type, source_id, host)
            who, kind, how = (a.participant, a.kind, {"roster": "roster", "desc": "stream label",
                                                      "device": "one per device"}.get(a.source, a.source)) if a else (
                "", None, reasons.get(_key(d), "not a heart or skin signal"))
            if _key(d) in keep:
                who, kind = keep[_key(d)]
                how = "edited"
            cells = (d.name, d.type, d.hostname, "irregular" if not d.srate else f"{d.srate:g} Hz")
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(f"source_id {d.source_id or '-'}")
                self.table.setItem(row, c, item)
            pbox = QtWidgets.QComboBox()
            pbox.setEditable(True)
            pbox.addItems(people)
            pbox.setCurrentText(who or "")
            pbox.setToolTip("Who wears this sensor (a pseudonym, never a real name)")
            pbox.currentTextChanged.connect(lambda _t, r=row: self._edited(r))
            self.table.setCellWidget(row, COL_PARTICIPANT, pbox)
            sbox = QtWidgets.QComboBox()
            sbox.addItems(list(SIGNAL_CHOICES))
            sbox.setCurrentText(KIND_LABEL.get(kind, "not used"))
            sbox.currentTextChanged.connect(lambda _t, r=row: self._edited(r))
            self.table.setCellWidget(row, COL_SIGNAL, sbox)
            self.table.setItem(row, COL_HOW, QtWidgets.QTableWidgetItem(how))
        self.table.blockSignals(False)
        self._update_summary()

    def _edited(self, row: int) -> None:
        item = self.table.item(row, COL_HOW)
        if item is not None:
            item.setText("edited")
        self._update_summary()

    def set_participant(self, row: int, participant: str) -> None:
        """Give the stream in ``row`` to ``participant`` (what picking in the combo box does)."""
        self.table.cellWidget(row, COL_PARTICIPANT).setCurrentText(participant)

    def set_signal(self, row: int, kind: str | None) -> None:
        """Use the stream in ``row`` as ``kind`` (``"rr"``, ``"ecg"``, ``"hr"``, ``"ppg"``, ``"eda"``; None: unused)."""
        self.table.cellWidget(row, COL_SIGNAL).setCurrentText(KIND_LABEL[kind])

    def row_of(self, source_id: str) -> int:
        """Table row of the stream with this source_id."""
        for row, s in enumerate(self.streams):
            if _key(s.descriptor) == source_id:
                return row
        raise KeyError(f"no stream with source_id {source_id!r} in the table")

    def _row_choices(self, edited_only: bool = False) -> dict:
        """``source_id -> (participant, kind)`` as the table shows now (``edited_only``: rows the user changed)."""
        out = {}
        for row, s in enumerate(self.streams):
            pbox, sbox = self.table.cellWidget(row, COL_PARTICIPANT), self.table.cellWidget(row, COL_SIGNAL)
            if pbox is None or sbox is None:
                continue
            how = self.table.item(row, COL_HOW)
            if edited_only and (how is None or how.text() != "edited"):
                continue
            out[_key(s.descriptor)] = (pbox.currentText().strip(), SIGNAL_CHOICES[sbox.currentText()])
        return out

    def roster(self):
        """The roster the table shows.

        Returns
        -------
        acquisition.roster.Roster
            One exact rule per used stream (kind as chosen; per person and
            signal the preferred kind is primary: RR > ECG > device HR > PPG),
            an ``[[ignore]]`` rule per stream marked "not used".

        Raises
        ------
        acquisition.roster.RosterError
            For an invalid participant id (the message says what is allowed).
        """
        from attune_monitor.acquisition.convention import KIND_MODALITY
        from attune_monitor.acquisition.roster import KIND_PREFERENCE, AssignedStream, Assignment, Roster, StreamRule

        chosen, ignore = [], []
        for s in self.streams:
            who, kind = self._row_choices().get(_key(s.descriptor), ("", None))
            d = s.descriptor
            if kind is None or not who:
                ignore.append(StreamRule(source_id=d.source_id) if d.source_id else StreamRule(name=d.name,
                                                                                               hostname=d.hostname))
                continue
            chosen.append(AssignedStream(who, KIND_MODALITY[kind], kind, d, "roster"))
        best: dict = {}
        for a in chosen:
            k = (a.participant, a.modality)
            if k not in best or KIND_PREFERENCE[a.kind] < KIND_PREFERENCE[best[k].kind]:
                best[k] = a
        for a in best.values():
            a.primary = True
        roster = Roster.from_assignment(Assignment(streams=chosen))
        # validate ids the way a roster file is validated
        roster = Roster.from_dict(_roster_dict(roster), source="the setup table")
        roster.ignore = ignore
        return roster

    def _primaries(self) -> set:
        """Keys of the streams the session will use: per person and signal the preferred kind (RR > ECG > HR > PPG)."""
        from attune_monitor.acquisition.convention import KIND_MODALITY
        from attune_monitor.acquisition.roster import KIND_PREFERENCE

        best: dict = {}
        for key, (who, kind) in self._row_choices().items():
            if who and kind:
                k = (who, KIND_MODALITY[kind])
                if k not in best or KIND_PREFERENCE[kind] < KIND_PREFERENCE[best[k][1]]:
                    best[k] = (key, kind)
        return {key for key, _ in best.values()}

    def _update_summary(self) -> None:
        used = self._primaries()
        choices = self._row_choices()
        for row, st in enumerate(self.streams):
            who, kind = choices.get(_key(st.descriptor), ("", None))
            text = "\u2713" if _key(st.descriptor) in used else ("spare" if who and kind else "\u2013")
            item = QtWidgets.QTableWidgetItem(text)
            item.setToolTip("Used for this person's signal" if _key(st.descriptor) in used else
                            "Not used: this person has a preferred stream of this signal (RR > ECG > device HR > PPG)")
            item.setTextAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
            self.table.setItem(row, COL_USE, item)
        by_person: dict = {}
        for who, kind in self._row_choices().values():
            if who and kind:
                by_person.setdefault(who, set()).add("skin" if kind == "eda" else "heart")
        ok = len(by_person) >= 2
        text = "; ".join(f"<b>{p}</b>: {' + '.join(sorted(m))}" for p, m in sorted(by_person.items())) or "nobody yet"
        warning = f" \u2014 <span style='color:{OKABE_ITO['vermillion']}'>synchrony needs at least 2 people</span>"
        self.summary.setText(f"People: {text}" + ("" if ok else warning))
        self.start_btn.setEnabled(ok)

    # -- roster files ---------------------------------------------------------------------------------------
    def save_roster(self, path) -> Path:
        """Write the table as a roster file (TOML); returns the path."""
        return self.roster().save(path)

    def load_roster(self, path) -> None:
        """Apply a roster file to the streams in view (its rules win over the automatic guesses).

        Raises
        ------
        acquisition.roster.RosterError
        """
        from attune_monitor.acquisition.roster import Roster

        self._roster = Roster.load(path)
        self._fill(self._auto())
        self.status.setText(f"Roster {Path(path).name} applied.")

    def _save_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Save roster", "roster.toml", "Roster (*.toml)")
        if path:
            try:
                self.save_roster(path)
                self.status.setText(f"Roster saved to {path}.")
            except (OSError, ValueError) as exc:
                QtWidgets.QMessageBox.warning(self, "Roster not saved", str(exc))

    def _load_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Load roster", "", "Roster (*.toml);;All files (*)")
        if path:
            try:
                self.load_roster(path)
            except (OSError, ValueError) as exc:
                QtWidgets.QMessageBox.warning(self, "Roster not loaded", str(exc))

    # -- preview --------------------------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        self.preview_stream(min(rows) if rows else None)

    def preview_stream(self, row: int | None) -> None:
        """Show the last ~10 s of the stream in ``row`` (opens a short-lived receiver; None stops)."""
        self._close_preview()
        if row is None or not 0 <= row < len(self.streams):
            return
        s = self.streams[row]
        try:
            from attune_monitor.acquisition.inlet import StreamReceiver

            self._preview_rx = StreamReceiver(s.info, s.descriptor, buffer_seconds=PREVIEW_S + 5).start()
            self._preview_key = _key(s.descriptor)
        except Exception as exc:  # the stream vanished: say so
            self.preview_title.setText(f"{s.descriptor.name}: no preview ({exc})")
            return
        from attune_monitor.acquisition.convention import CANONICAL_UNIT

        unit = CANONICAL_UNIT.get(s.descriptor.kind, s.descriptor.unit or "?").replace("uS", "\u00b5S")
        self.preview_title.setText(f"{s.descriptor.name} \u2013 last {PREVIEW_S:g} s ({unit})")
        self.preview_timer.start(200)

    def update_preview(self) -> int:
        """Redraw the preview from the receiver's buffer; returns the number of samples drawn."""
        rx = self._preview_rx
        if rx is None:
            return 0
        ts, vs = rx.get_window(PREVIEW_S)
        vs = np.asarray(vs, dtype=float)
        if vs.ndim == 2:
            vs = vs[:, min(rx.descriptor.channel_index, vs.shape[1] - 1)] if vs.shape[1] else vs[:, 0]
        if len(ts) == 0:
            self.preview_curve.setData([], [])
            return 0
        x = np.asarray(ts, dtype=float) - float(ts[-1])
        self.preview_curve.setData(x, vs)
        self.preview.setXRange(-PREVIEW_S, 0, padding=0.02)
        return int(len(ts))

    def _close_preview(self) -> None:
        self.preview_timer.stop()
        rx, self._preview_rx, self._preview_key = self._preview_rx, None, None
        if rx is not None:
            try:
                rx.close(timeout=1.0)
            except Exception:
                logger.exception("closing the preview receiver failed")
        self.preview_curve.setData([], [])

    # -- choices --------------------------------------------------------------------------------------------
    def start_live(self) -> None:
        """Start live with the streams as assigned (a warning instead when the roster is not valid)."""
        try:
            self.roster()
        except ValueError as exc:   # RosterError: an id that is not allowed
            QtWidgets.QMessageBox.warning(self, "Check the participants", str(exc))
            return
        self.choice = "live"
        self.accept()

    def _open_clicked(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open recording", "", "Recordings (*.xdf *.xdfz *.csv);;All files (*)")
        if path:
            self.open_recording(path)

    def open_recording(self, path) -> None:
        """Choose a recording to replay and close the dialog."""
        self.recording_path = str(path)
        self.choice = "replay"
        self.accept()

    def done(self, result: int) -> None:  # noqa: D401 - Qt override
        self._close_preview()
        super().done(result)


def _roster_dict(roster) -> dict:
    import tomllib

    return tomllib.loads(roster.to_toml())


def run_setup(roster=None, match: str | None = None, timeout: float = 1.0):
    """Show the setup dialog (modal) and return what was chosen.

    Returns
    -------
    choice : {"live", "replay"} | None
    roster : acquisition.roster.Roster | None
        With ``"live"``.
    recording_path : str | None
        With ``"replay"``.
    """
    from .app import ensure_app

    ensure_app()
    dlg = SetupDialog(roster=roster, match=match, timeout=timeout)
    dlg.exec()
    if dlg.choice == "live":
        return "live", dlg.roster(), None
    if dlg.choice == "replay":
        return "replay", None, dlg.recording_path
    return None, None, None
