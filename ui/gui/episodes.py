"""The episodes panel: flagged possible ruptures, with confirm / dismiss / label."""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from ui.model import RUPTURE_TYPES

from .style import MUTED, STATE_TEXT, fmt_time

COLUMNS = ("#", "flagged", "pair", "depth", "signals", "status", "time to repair", "label", "review")


def depth_words(depth: float) -> str:
    """Depth as the share of the way from the pair's usual synchrony to chance."""
    if depth is None:
        return "–"
    if depth >= 1.0:
        return "reached chance"
    return f"{depth:.0%} of the way to chance"


def episode_row(ep: dict) -> tuple:
    """Cell texts of one episode."""
    pair = " \u2013 ".join(ep["pair"])
    if len(ep.get("people", [])) == 1 and len(ep["pair"]) == 2:
        pair += f"  ({ep['people'][0]} drifting)"
    if ep.get("repaired"):
        status = "\u2713 repaired"
    elif ep.get("open", True):
        status = "\u25B2 open"
    else:
        status = "not repaired"
    ttr = ep.get("time_to_repair_s")
    return (
        str(ep["id"]), fmt_time(ep.get("flagged_s", ep["onset_s"])), pair, depth_words(ep.get("depth")),
        " + ".join([*({"hr": "heart", "eda": "skin"}.get(m, m) for m in ep.get("modalities", [])),
                    *(f"{w}'s arousal ({st})" for w, st in (ep.get("arousal") or {}).items())]), status,
        "–" if ttr is None else f"{ttr:.0f} s", ep.get("label") or "", ep.get("review") or "",
    )


def episode_times_tip(ep: dict) -> str:
    """When a possible rupture began (estimated), was flagged and ended, in words (the "flagged" cell's tooltip)."""
    parts = [f"began about {fmt_time(ep['onset_s'])} (estimated)", f"flagged at {fmt_time(ep.get('flagged_s', ep['onset_s']))}"]
    if ep.get("offset_s") is not None:
        parts.append(f"{'repaired' if ep.get('repaired') else 'ended'} about {fmt_time(ep['offset_s'])}")
    return "; ".join(parts)


class EpisodesPanel(QtWidgets.QWidget):
    """A table of episodes; selecting one emits :attr:`episode_selected` (the window scrolls there).

    Confirm / dismiss / label go to ``model.add_marker`` so they land in the recording.
    """

    episode_selected = QtCore.Signal(dict)

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self._rows: dict[int, int] = {}
        self._eps: dict[int, dict] = {}
        self._texts: dict[int, tuple] = {}
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        head = QtWidgets.QHBoxLayout()
        title = QtWidgets.QLabel("EPISODES")
        title.setObjectName("sectionTitle")
        head.addWidget(title)
        self.empty_hint = QtWidgets.QLabel("No possible ruptures flagged yet.")
        self.empty_hint.setStyleSheet(f"color:{MUTED}")
        head.addWidget(self.empty_hint)
        head.addStretch(1)
        self.confirm_btn = QtWidgets.QPushButton("\u2713 Confirm")
        self.confirm_btn.setToolTip("You saw it too: keep this episode (goes into the recording).")
        self.dismiss_btn = QtWidgets.QPushButton("\u2715 Dismiss")
        self.dismiss_btn.setToolTip("Not a rupture (e.g. movement, laughter): mark it dismissed in the recording.")
        self.label_box = QtWidgets.QComboBox()
        self.label_box.addItem("Label rupture type\u2026")
        for t in RUPTURE_TYPES:
            self.label_box.addItem(t)
        self.label_box.setToolTip("Rupture type (goes into the recording as a marker).")
        for w in (self.confirm_btn, self.dismiss_btn, self.label_box):
            w.setEnabled(False)
            head.addWidget(w)
        lay.addLayout(head)
        self.table = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(False)
        self.table.setShowGrid(False)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        lay.addWidget(self.table)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.cellClicked.connect(lambda row, col: self._selection_changed())
        self.confirm_btn.clicked.connect(lambda: self._review("confirm"))
        self.dismiss_btn.clicked.connect(lambda: self._review("dismiss"))
        self.label_box.activated.connect(self._label_chosen)

    # -- model -> table ------------------------------------------------------------------------------
    def update_view(self, snap) -> None:
        for ep in sorted(snap.episodes, key=lambda e: e["id"]):
            texts = episode_row(ep)
            self._eps[ep["id"]] = ep
            if self._texts.get(ep["id"]) == texts:
                continue
            self._texts[ep["id"]] = texts
            row = self._rows.get(ep["id"])
            if row is None:
                row = self.table.rowCount()
                self.table.insertRow(row)
                self._rows[ep["id"]] = row
                for c in range(len(COLUMNS)):
                    self.table.setItem(row, c, QtWidgets.QTableWidgetItem())
            colour = STATE_TEXT["repaired"] if ep.get("repaired") else STATE_TEXT["possible_rupture"]
            for c, text in enumerate(texts):
                item = self.table.item(row, c)
                item.setText(text)
                item.setData(QtCore.Qt.ItemDataRole.UserRole, ep["id"])
                if c == 1:
                    item.setToolTip(episode_times_tip(ep))
                if c == 5:
                    item.setForeground(QtGui.QColor(colour))
                if ep.get("review") == "dismiss":
                    item.setForeground(QtGui.QColor(MUTED))
        self.empty_hint.setVisible(not self._rows)

    def selected_id(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(QtCore.Qt.ItemDataRole.UserRole)

    def select_episode(self, ep_id: int) -> None:
        """Select an episode's row (as a click would)."""
        self.table.selectRow(self._rows[ep_id])

    # -- table -> model ------------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        ep_id = self.selected_id()
        for w in (self.confirm_btn, self.dismiss_btn, self.label_box):
            w.setEnabled(ep_id is not None)
        if ep_id is not None and ep_id in self._eps:
            self.episode_selected.emit(self._eps[ep_id])

    def _review(self, kind: str) -> None:
        ep_id = self.selected_id()
        if ep_id is not None:
            self.model.add_marker(kind, text=f"episode {ep_id}", episode=ep_id)

    def _label_chosen(self, index: int) -> None:
        ep_id = self.selected_id()
        if index <= 0 or ep_id is None:
            return
        self.model.add_marker("label", text=self.label_box.itemText(index), episode=ep_id)
        self.label_box.setCurrentIndex(0)
