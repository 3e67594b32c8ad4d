"""The episodes panel: flagged possible ruptures, with confirm / dismiss / label.

In a group, the episodes of one person drifting away from several others at once are one row ("P3 drifting
away — 3 of 3 ties dropped", :func:`attune_monitor.ui.model.group_episodes`) with its pairs underneath (expand the row).
An
episode's status is the state its pair's card shows (:func:`attune_monitor.ui.words.episode_status`): a card never says
"repairing" while the table says something else.
"""

from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from attune_monitor.ui.model import RUPTURE_TYPES
from attune_monitor.ui.words import depth_words, disconnecting_words, episode_status

from .style import MUTED, STATE_TEXT, fmt_time

__all__ = ["COLUMNS", "STATUS_COLUMN", "STATUS_TEXT", "episode_row", "group_row", "episode_times_tip", "EpisodesPanel"]

COLUMNS = ("#", "flagged", "who", "deepest", "signals", "status", "time to repair", "label", "review")
#: Column of the status words, and the colour of each status.
STATUS_COLUMN = 5
STATUS_TEXT = {**STATE_TEXT, "unrepaired": STATE_TEXT["out_of_tune"], "interrupted": MUTED, "session_end": MUTED,
               "dismissed": MUTED}


def episode_row(ep: dict) -> tuple:
    """Cell texts of one episode."""
    pair = " \u2013 ".join(ep["pair"])
    who = disconnecting_words(ep.get("people", []), ep["pair"], ep.get("arousal"))
    if len(ep.get("people", [])) == 1 and len(ep["pair"]) == 2:
        pair += f"  ({who} drifting)"
    status = (ep.get("status") or episode_status(ep))[1]
    ttr = ep.get("time_to_repair_s")
    return (
        str(ep["id"]), fmt_time(ep.get("flagged_s", ep["onset_s"])), pair, depth_words(ep.get("depth")),
        " + ".join([*({"hr": "heart", "eda": "skin"}.get(m, m) for m in ep.get("modalities", [])),
                    *(f"{w}'s arousal ({st})" for w, st in (ep.get("arousal") or {}).items())]), status,
        "\u2013" if ttr is None else f"{ttr:.0f} s", ep.get("label") or "", ep.get("review") or "",
    )


def group_row(group: dict) -> tuple:
    """Cell texts of a group episode (one person drifting away from several others)."""
    eps = group["episodes"]
    depths = [e.get("depth") for e in eps if e.get("depth") is not None]
    ttrs = [e.get("time_to_repair_s") for e in eps]
    mods = []
    for e in eps:
        for m in e.get("modalities", []):
            if m not in mods:
                mods.append(m)
    status = next((e.get("status") or episode_status(e)) for e in eps
                  if (e.get("status") or episode_status(e))[0] == group["state"])[1]
    labels = {e.get("label") for e in eps if e.get("label")}
    reviews = {e.get("review") for e in eps if e.get("review")}
    return (
        f"{eps[0]['id']}\u2013{eps[-1]['id']}" if len(eps) > 1 else str(eps[0]["id"]),
        fmt_time(min(e.get("flagged_s", e["onset_s"]) for e in eps)), group["words"],
        depth_words(max(depths)) if depths else "\u2013",
        " + ".join({"hr": "heart", "eda": "skin"}.get(m, m) for m in mods), status,
        "\u2013" if any(x is None for x in ttrs) else f"{max(ttrs):.0f} s",
        ", ".join(sorted(labels)), ", ".join(sorted(reviews)),
    )


def episode_times_tip(ep: dict) -> str:
    """When a possible rupture began (estimated), was flagged and ended, in words (the "flagged" cell's tooltip)."""
    parts = [f"began about {fmt_time(ep['onset_s'])} (estimated)",
             f"flagged at {fmt_time(ep.get('flagged_s', ep['onset_s']))}"]
    if ep.get("offset_s") is not None:
        parts.append(f"{'repaired' if ep.get('repaired') else 'ended'} about {fmt_time(ep['offset_s'])}")
    return "; ".join(parts)


class EpisodesPanel(QtWidgets.QWidget):
    """A tree of episodes (group episodes with their pairs underneath).

    Selecting one emits :attr:`episode_selected` (the window scrolls there).

    Confirm / dismiss / label go to ``model.add_marker`` (for every pair of a group row) so they land in the
    recording.
    """

    episode_selected = QtCore.Signal(dict)

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self._items: dict = {}      # key -> QTreeWidgetItem; key: ("ep", id) or ("group", first id)
        self._texts: dict = {}
        self._eps: dict[int, dict] = {}
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
        self.label_box.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToContents)
        for w in (self.confirm_btn, self.dismiss_btn, self.label_box):
            w.setEnabled(False)
            head.addWidget(w)
        lay.addLayout(head)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tree.setIndentation(14)
        hh = self.tree.header()
        hh.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        hh.setStretchLastSection(True)
        lay.addWidget(self.tree)
        self.tree.itemSelectionChanged.connect(self._selection_changed)
        self.tree.itemClicked.connect(lambda *_: self._selection_changed())
        self.confirm_btn.clicked.connect(lambda: self._review("confirm"))
        self.dismiss_btn.clicked.connect(lambda: self._review("dismiss"))
        self.label_box.activated.connect(self._label_chosen)

    # -- model -> tree -------------------------------------------------------------------------------
    def _item(self, key, parent=None) -> QtWidgets.QTreeWidgetItem:
        item = self._items.get(key)
        want = parent or self.tree.invisibleRootItem()
        if item is not None and (item.parent() or self.tree.invisibleRootItem()) is not want:
            (item.parent() or self.tree.invisibleRootItem()).removeChild(item)
            want.addChild(item)
        if item is None:
            item = QtWidgets.QTreeWidgetItem()
            want.addChild(item)
            self._items[key] = item
        return item

    def _fill(self, item, key, texts: tuple, ids: list, state: str, dismissed: bool, tip: str | None) -> None:
        if self._texts.get(key) == texts:
            return
        self._texts[key] = texts
        colour = QtGui.QColor(MUTED if dismissed else STATUS_TEXT.get(state, MUTED))
        for c, text in enumerate(texts):
            item.setText(c, text)
            item.setData(c, QtCore.Qt.ItemDataRole.UserRole, ids)
            if c == STATUS_COLUMN or dismissed:
                item.setForeground(c, colour)
        if tip:
            item.setToolTip(1, tip)
        item.setToolTip(2, texts[2])

    def update_view(self, snap) -> None:
        """Show the snapshot's episodes, grouped, updating only rows that changed."""
        groups = getattr(snap, "groups", None)
        if groups is None:
            from attune_monitor.ui.model import group_episodes

            groups = group_episodes(sorted(snap.episodes, key=lambda e: e["id"]), snap.participants)
        seen = set()
        for g in groups:
            eps = g["episodes"]
            for ep in eps:
                self._eps[ep["id"]] = ep
            if len(eps) >= 2 and g.get("words"):
                gkey = ("group", eps[0]["id"])
                gitem = self._item(gkey)
                seen.add(gkey)
                self._fill(gitem, gkey, group_row(g), [e["id"] for e in eps], g["state"],
                           all(e.get("review") == "dismiss" for e in eps), episode_times_tip(eps[0]))
                parent = gitem
            else:
                parent = None
            for ep in eps:
                key = ("ep", ep["id"])
                seen.add(key)
                item = self._item(key, parent)
                st = (ep.get("status") or episode_status(ep))[0]
                self._fill(item, key, episode_row(ep), [ep["id"]], st, ep.get("review") == "dismiss",
                           episode_times_tip(ep))
        for key in [k for k in self._items if k not in seen]:   # a pair that joined a group: its own row goes
            item = self._items.pop(key)
            self._texts.pop(key, None)
            (item.parent() or self.tree.invisibleRootItem()).removeChild(item)
        self.empty_hint.setVisible(not self._items)

    def count(self) -> int:
        """Rows at the top level (a group episode counts once)."""
        return self.tree.topLevelItemCount()

    def row_texts(self, row: int) -> tuple:
        """The cell texts of a top-level row (for tests)."""
        item = self.tree.topLevelItem(row)
        return tuple(item.text(c) for c in range(len(COLUMNS)))

    def selected_ids(self) -> list[int]:
        """Episode ids of the selected row (a group row holds several); empty when none."""
        items = self.tree.selectedItems()
        if not items:
            return []
        return list(items[0].data(0, QtCore.Qt.ItemDataRole.UserRole) or [])

    def selected_id(self) -> int | None:
        """The first selected episode id, None when nothing is selected."""
        ids = self.selected_ids()
        return ids[0] if ids else None

    def select_episode(self, ep_id: int) -> None:
        """Select an episode's row (as a click would)."""
        item = self._items.get(("ep", ep_id))
        if item is not None:
            if item.parent() is not None:
                item.parent().setExpanded(True)
            self.tree.setCurrentItem(item)

    def item_of(self, ep_id: int):
        """The tree item of an episode (for tests)."""
        return self._items.get(("ep", ep_id))

    # -- tree -> model ------------------------------------------------------------------------------
    def _selection_changed(self) -> None:
        ids = self.selected_ids()
        for w in (self.confirm_btn, self.dismiss_btn, self.label_box):
            w.setEnabled(bool(ids))
        if ids and ids[0] in self._eps:
            self.episode_selected.emit(self._eps[ids[0]])

    def _review(self, kind: str) -> None:
        for ep_id in self.selected_ids():
            self.model.add_marker(kind, text=f"episode {ep_id}", episode=ep_id)

    def _label_chosen(self, index: int) -> None:
        ids = self.selected_ids()
        if index <= 0 or not ids:
            return
        for ep_id in ids:
            self.model.add_marker("label", text=self.label_box.itemText(index), episode=ep_id)
        self.label_box.setCurrentIndex(0)
