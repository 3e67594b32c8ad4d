"""The live / replay window: traces, synchrony timelines, meters, matrix, episodes, markers, record/replay.

One ``QTimer`` drives every redraw: each tick checks ``model.version`` and, if
it changed (or the view moved), takes one :meth:`attune_monitor.ui.model.SessionModel.snapshot`
and hands it to every view. Widgets are touched only here, on the GUI thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from attune_monitor.ui.model import DISCLAIMER
from attune_monitor.ui.words import arming_words

from .episodes import EpisodesPanel
from .matrix import SyncMatrix
from .meter import MeterPanel
from .plots import TimeTicks
from .settings import Settings, SettingsDialog
from .style import AROUSAL_STYLE, INK, MODALITY_COLOURS, MUTED, OKABE_ITO, STATE_TEXT, STYLESHEET, fmt_time
from .sync_view import PairTimelines
from .traces import PeopleTraces

__all__ = [
    "MAX_GROUP_PAIR_PLOTS", "SPEEDS", "MARKER_STYLE", "legend_html", "sync_legend_tip", "people_legend_html",
    "MainWindow"
]

logger = logging.getLogger(__name__)

#: At most this many pair plots in a group's "pairs to look at" (more are named, a click on the matrix shows one):
#: each one costs time in every frame, and a person drifting away from everyone is already one card and one row.
MAX_GROUP_PAIR_PLOTS = 3
#: Replay speeds offered.
SPEEDS = (0.5, 1, 2, 4, 8, 16, 32, 64)
#: Marker kinds drawn on the timelines: colour and short text.
MARKER_STYLE = {
    "rupture_noticed": (OKABE_ITO["vermillion"], "noticed"),
    "repair": (OKABE_ITO["blue"], "repair"),
    "note": (MUTED, None),
}


def legend_html(modalities, compact: bool = False) -> str:
    """The timeline legend (``compact``: the lines only, for a group's narrow pair column)."""
    names = {"hr": "heart", "eda": "skin", "combined": "combined"}
    parts = [f"<span style='color:{MODALITY_COLOURS[m]}'>\u2501</span> {names[m]}" for m in (*modalities, "combined")]
    parts += [f"<span style='color:{MUTED}'>\u2505</span> chance",
              "<span style='background:#CCE9E0'>&nbsp;&nbsp;&nbsp;</span> usual range",
              "<span style='background:#F5C9AE'>&nbsp;&nbsp;&nbsp;</span> possible rupture",
              "<span style='background:#CDE7F6'>&nbsp;&nbsp;&nbsp;</span> repaired"]
    if not compact:
        parts += ["<span style='color:#6B7280'>////</span> signal lost",
                  f"<span style='color:{AROUSAL_STYLE['climbing'][0]}'>\u2501</span>"
                  f"<span style='color:{AROUSAL_STYLE['flattening'][0]}'>\u2501</span> arousal moving away"]
    return f"<span style='color:{INK}'>" + " &nbsp;&nbsp; ".join(parts) + "</span>"


def sync_legend_tip(modalities, window_s: float | None = None) -> str:
    """What each synchrony line is (the legend's tooltip), over the session's synchrony window ``window_s`` (s)."""
    span = f"the last {window_s:g} s" if window_s else "the synchrony window"
    lines = {"hr": f"heart: correlation of the two heart rates over {span}",
             "eda": f"skin: co-occurring skin-conductance responses over {span} (correlation of the changes, "
                    "one person up to 3 s after the other)"}
    return "\n".join([*(lines[m] for m in modalities if m in lines),
                      "combined: the mean of the two (Fisher z)",
                      "chance: what two people who are not interacting reach (a partner shifted in time)",
                      "A drop towards chance is a prompt to check in, never a diagnosis."])


def people_legend_html(group: bool = False) -> str:
    """The legend of the people's arousal shading (and, in a group, of the "with the others" column)."""
    def swatch(st):
        *rgb, a = AROUSAL_STYLE[st][2]
        r, g, b = (round(255 - (255 - x) * a / 255) for x in rgb)  # the shade on white, as the traces show it
        return f"<span style='background:#{r:02X}{g:02X}{b:02X}'>&nbsp;&nbsp;&nbsp;</span>"
    arousal = (f"{swatch('climbing')} {AROUSAL_STYLE['climbing'][1]} climbing &nbsp; "
               f"{swatch('flattening')} {AROUSAL_STYLE['flattening'][1]} flattening")
    if group:
        return (f"<span style='color:{INK}'>{arousal} <span style='color:{MUTED}'>arousal moving away</span> &nbsp; "
                f"\u2501 synchrony with the others <span style='color:{MUTED}'>\u2505 chance</span></span>")
    return (f"<span style='color:{INK}'>{arousal} &nbsp;"
            f"<span style='color:{MUTED}'>arousal moving away from the others' and the person's own "
            "baseline</span></span>")


class MainWindow(QtWidgets.QMainWindow):
    """Attune's session window.

    Parameters
    ----------
    model : ui.model.SessionModel
    runner : ui.runner.Runner | None
        Source of the controls (record, seek, speed, pause); None for a view of a model alone.
    settings : Settings | None
    fps : float
        Redraw timer rate (Hz).
    """

    def __init__(self, model, runner=None, settings: Settings | None = None, fps: float = 30.0, title: str = "Attune"):
        super().__init__()
        self.model = model
        self.runner = runner
        self.settings = settings or Settings()
        self.setWindowTitle(title)
        self.setStyleSheet(STYLESHEET)
        self._last_version = -1
        self._dirty = True
        self.follow = True
        self.view_end: float | None = None
        self.frames = 0           # redraws done (for the fps measurement)
        self.ticks = 0
        self.redraw_s = 0.0       # cumulative time spent redrawing
        self.snapshot = None
        self._seen_episodes: dict = {}   # (pair, onset) -> episode, survives replay seeks
        #: replay: every episode of the recording (same pipeline, run ahead in a worker); None until known
        self.episode_index: list | None = None
        self._index_thread: threading.Thread | None = None
        self._next_pending = False    # "next episode" pressed before the index was ready
        self._show_after_seek = None  # episode to show once the seek has reached it
        self._slider_busy = False
        n = len(model.participants)
        self.group = n >= 3
        #: a big group shows cards only for what is flagged (people drifting away, pairs) or selected
        self.big = n >= 5
        self.selected_pair: tuple | None = None
        self.time_ticks = TimeTicks()

        # -- views -------------------------------------------------------------------------------
        self.traces = PeopleTraces(model.participants, model.modalities, ticks=self.time_ticks, group=self.group)
        self.timelines = PairTimelines(model.pairs, model.modalities, stacked=not self.group,
                                       preset=self.settings.preset, ticks=self.time_ticks,
                                       shown=None if not self.group else [])
        self.meters = MeterPanel(model.pairs, shown=[] if self.big else None,
                                 columns=(1 if n == 3 else 2) if self.group else None)
        self.matrix = SyncMatrix(model.participants) if self.group else None
        self.episodes = EpisodesPanel(model)

        people_legend = QtWidgets.QLabel(people_legend_html(self.group))
        people_legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        people_legend.setWordWrap(True)
        people_legend.setStyleSheet("font-size: 9pt")
        self.people_scroll = self._scroll(self.traces)
        left = self._section("PEOPLE", people_legend, self.people_scroll)
        legend = QtWidgets.QLabel(legend_html(model.modalities, compact=self.group))
        legend.setToolTip(sync_legend_tip(model.modalities, model.window_s))
        legend.setTextFormat(QtCore.Qt.TextFormat.RichText)
        legend.setWordWrap(True)
        legend.setStyleSheet("font-size: 9pt")
        self.sync_legend = legend
        self.timeline_scroll = self._scroll(self.timelines)
        self.timeline_scroll.verticalScrollBar().valueChanged.connect(lambda _v: setattr(self, "_dirty", True))
        self.pairs_hint = QtWidgets.QLabel("")
        self.pairs_hint.setWordWrap(True)
        self.pairs_hint.setStyleSheet(f"color:{MUTED}")
        if not self.group:
            centre = self._section("SYNCHRONY PER PAIR", legend, self.timeline_scroll)
            right = self._section("ATTUNEMENT", self.meters)
            right.setMinimumWidth(300)
            self.meters.setMinimumHeight(240)
            self.meters.setMaximumHeight(340)
            right.layout().addStretch(1)
            columns = (left, centre, right)
            stretch = (4, 5, 3)
        else:
            pairs_title = QtWidgets.QLabel("PAIRS TO LOOK AT")
            pairs_title.setObjectName("sectionTitle")
            cards = QtWidgets.QWidget()
            cl = QtWidgets.QVBoxLayout(cards)
            cl.setContentsMargins(0, 0, 0, 0)
            cl.setSpacing(4)
            for w in (pairs_title, self.meters, self.pairs_hint):
                cl.addWidget(w)
            cl.addStretch(1)
            cl.setStretch(1, 1)
            row = QtWidgets.QWidget()
            hl = QtWidgets.QHBoxLayout(row)
            hl.setContentsMargins(0, 0, 0, 0)
            hl.setSpacing(8)
            hl.addWidget(self.matrix, 1)
            hl.addWidget(cards, 1)
            self.timeline_scroll.setMinimumHeight(0)
            right = self._section("GROUP NOW", row, legend, self.timeline_scroll)
            rl = right.layout()
            rl.setStretch(1, 0)
            rl.setStretch(3, 1)   # pair plots take what is left
            right.setMinimumWidth(420)
            columns = (left, right)
            stretch = (5, 4)
        top = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        for w in columns:
            top.addWidget(w)
        for i, k in enumerate(stretch):
            top.setStretchFactor(i, k)
        top.setChildrenCollapsible(False)
        self.top_splitter = top
        vsplit = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        vsplit.addWidget(top)
        vsplit.addWidget(self.episodes)
        vsplit.setStretchFactor(0, 5)
        vsplit.setStretchFactor(1, 1)
        vsplit.setChildrenCollapsible(False)
        self.episodes.setMinimumHeight(120)
        wrap = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(wrap)
        lay.setContentsMargins(8, 6, 8, 4)
        lay.addWidget(vsplit)
        self.setCentralWidget(wrap)
        self._build_toolbar()
        self._build_statusbar()

        self.meters.pair_clicked.connect(self.select_pair)
        if self.matrix is not None:
            self.matrix.pair_clicked.connect(self.select_pair)
        self.episodes.episode_selected.connect(self.show_episode)

        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.tick)
        self.timer.start(int(round(1000 / fps)))
        self.resize(1366, 768)

    # -- layout helpers ------------------------------------------------------------------------------
    @staticmethod
    def _scroll(widget) -> QtWidgets.QScrollArea:
        sa = QtWidgets.QScrollArea()
        sa.setWidget(widget)
        sa.setWidgetResizable(True)
        sa.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        sa.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        return sa

    @staticmethod
    def _section(title: str, *widgets) -> QtWidgets.QWidget:
        w = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(w)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(4)
        label = QtWidgets.QLabel(title)
        label.setObjectName("sectionTitle")
        lay.addWidget(label)
        for x in widgets:
            lay.addWidget(x)
        return w

    def _build_toolbar(self) -> None:
        tb = QtWidgets.QToolBar("Session")
        tb.setMovable(False)
        self.addToolBar(tb)
        brand = QtWidgets.QLabel("<b style='font-size:14pt'>Attune</b>")
        brand.setContentsMargins(4, 0, 10, 0)
        tb.addWidget(brand)
        self.session_label = QtWidgets.QLabel("")
        self.session_label.setStyleSheet(f"color:{MUTED}; font-size: 11pt")
        tb.addWidget(self.session_label)
        # while the baseline is being learned: how long until the pairs are measured (session time)
        self.arming_label = QtWidgets.QLabel("")
        self.arming_label.setStyleSheet(f"color:{STATE_TEXT['calibrating']}; font-size: 11pt; padding-left: 8px")
        self.arming_label.setToolTip("Each pair's synchrony is measured against chance over its first "
                                     "minutes; until then no rupture can be flagged. Time in session time.")
        self.arming_action = tb.addWidget(self.arming_label)
        self.arming_action.setVisible(False)
        tb.addSeparator()
        # record
        self.record_btn = QtWidgets.QPushButton("\u25CF Record")
        self.record_btn.setCheckable(True)
        self.record_btn.setShortcut(QtGui.QKeySequence("Ctrl+R"))
        can_record = self.runner is not None and hasattr(self.runner, "start_recording")
        self.record_btn.setEnabled(can_record)
        self.record_btn.setToolTip("Record every stream and your markers to an XDF file (Ctrl+R)." if can_record
                                   else "Recording is not available for this source.")
        self.record_btn.clicked.connect(self.toggle_recording)
        self.record_action = tb.addWidget(self.record_btn)
        self.record_label = QtWidgets.QLabel("")
        self.record_label.setStyleSheet(f"color:{MUTED}")
        self.record_label_action = tb.addWidget(self.record_label)
        # replay
        self.replay_box = QtWidgets.QWidget()
        rl = QtWidgets.QHBoxLayout(self.replay_box)
        rl.setContentsMargins(6, 0, 6, 0)
        # the platform's media icons: the media-control characters (U+23F8 ...) are missing from common fonts
        icon = self.style().standardIcon
        self._icons = {"pause": icon(QtWidgets.QStyle.StandardPixmap.SP_MediaPause),
                       "play": icon(QtWidgets.QStyle.StandardPixmap.SP_MediaPlay)}
        self.play_btn = QtWidgets.QPushButton(self._icons["pause"], "Pause")
        self.play_btn.setToolTip("Play / pause the replay (Space)")
        self.play_btn.clicked.connect(self.toggle_pause)
        self.scrubber = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.scrubber.setMinimumWidth(120)
        self.scrubber.setRange(0, 0)
        self.scrubber.sliderPressed.connect(lambda: setattr(self, "_slider_busy", True))
        self.scrubber.sliderReleased.connect(self._scrub_released)
        self.pos_label = QtWidgets.QLabel("0:00 / 0:00")
        self.speed_box = QtWidgets.QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}\u00d7", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1))
        self.speed_box.activated.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.next_btn = QtWidgets.QPushButton(icon(QtWidgets.QStyle.StandardPixmap.SP_MediaSkipForward), "Next episode")
        self.next_btn.setToolTip("Jump to the next flagged episode (E)")
        self.next_btn.clicked.connect(self.next_episode)
        for w in (self.play_btn, self.scrubber, self.pos_label, self.speed_box, self.next_btn):
            rl.addWidget(w)
        self.replay_action = tb.addWidget(self.replay_box)
        self.replay_action.setVisible(False)
        spacer = QtWidgets.QWidget()
        spacer.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        # live-follow
        self.live_btn = QtWidgets.QPushButton("\u25B6 Back to now")
        self.live_btn.setToolTip("Follow the newest data again")
        self.live_btn.clicked.connect(self.follow_live)
        self.live_action = tb.addWidget(self.live_btn)
        self.live_action.setVisible(False)
        # markers
        self.noticed_btn = QtWidgets.QPushButton("\u25B2 Rupture noticed (R)")
        self.repair_btn = QtWidgets.QPushButton("\u21BB Repair (P)")
        self.note_btn = QtWidgets.QPushButton("\u270E Note (N)")
        self.noticed_btn.clicked.connect(lambda: self.add_marker("rupture_noticed"))
        self.repair_btn.clicked.connect(lambda: self.add_marker("repair"))
        self.note_btn.clicked.connect(self.add_note)
        for w in (self.noticed_btn, self.repair_btn, self.note_btn):
            w.setToolTip("Put a marker on the timelines and into the recording")
            tb.addWidget(w)
        self.settings_btn = QtWidgets.QPushButton("\u2699")
        self.settings_btn.setToolTip("Settings")
        self.settings_btn.clicked.connect(self.open_settings)
        tb.addWidget(self.settings_btn)
        for key, fn in (("R", lambda: self.add_marker("rupture_noticed")), ("P", lambda: self.add_marker("repair")),
                        ("N", self.add_note), ("Space", self.toggle_pause), ("E", self.next_episode),
                        ("Home", self.follow_live)):
            sc = QtGui.QShortcut(QtGui.QKeySequence(key), self)
            sc.activated.connect(fn)

    def _build_statusbar(self) -> None:
        sb = self.statusBar()
        disc = QtWidgets.QLabel(DISCLAIMER)
        disc.setStyleSheet(f"color:{MUTED}; padding-left: 6px")
        sb.addWidget(disc, 1)
        self.message_label = QtWidgets.QLabel("")
        self.message_label.setStyleSheet(f"color:{MUTED}")
        sb.addPermanentWidget(self.message_label)
        self.fps_label = QtWidgets.QLabel("")
        self.fps_label.setStyleSheet("color:#9CA3AF")
        sb.addPermanentWidget(self.fps_label)

    # -- the one timer ---------------------------------------------------------------------------------
    def tick(self) -> None:
        """Redraw if the model (or the view) changed."""
        self.ticks += 1
        v = self.model.version
        if v == self._last_version and not self._dirty:
            return
        self.redraw()

    def x_range(self, t_now: float) -> tuple[float, float]:
        """The time span shown: the last ``display_s`` seconds (or up to ``view_end`` when not following).

        In the first minutes, while less than ``display_s`` has been seen, the span is the first of 1, 2, ...
        minutes that holds the data (plus 5 s), so the first signals fill the plots instead of a sliver at their
        left edge; it widens a minute at a time (not every frame) until it reaches ``display_s``. Following,
        the span ends at the newest sample rounded up to about a pixel of the narrowest plot.
        """
        d = self.settings.display_s
        if self.follow or self.view_end is None:
            if t_now + 5.0 < d:
                return 0.0, float(min(d, 60.0 * math.ceil((t_now + 5.0) / 60.0)))
            # the view moves in steps of about one pixel of the narrowest plot (the newest sample at most a pixel
            # from the edge): a sub-pixel scroll looks the same and costs a repaint of every plot
            q = d / max(100.0, float(self.traces.master.vb.width()))
            x1 = math.ceil(t_now / q) * q
            return max(0.0, x1 - d), max(d, x1)
        x0 = max(0.0, self.view_end - d)
        return x0, x0 + d

    def redraw(self) -> None:
        """Take one snapshot and hand it to every view."""
        t0 = time.perf_counter()
        v = self.model.version
        t_now = self.model.t_now
        x0, x1 = self.x_range(t_now)
        snap = self.model.snapshot(seconds=max(self.settings.display_s, t_now - x0 + 2.0))
        self.snapshot = snap
        self._last_version = v
        self._dirty = False
        markers = {}
        for i, m in enumerate(snap.markers):
            style = MARKER_STYLE.get(m["kind"])
            if style is None or not (x0 - 1 <= m["t"] <= x1 + 1):
                continue
            colour, text = style
            markers[(i, m["kind"])] = (m["t"], colour, text if text is not None else (m["text"] or "note")[:24])
        if self.group:
            self._choose_pairs(snap)
        self.time_ticks.fit(x0, x1)
        self.traces.update_view(snap, (x0, x1), markers)
        vbar = self.timeline_scroll.verticalScrollBar()
        top = vbar.value()
        self.timelines.update_view(snap, (x0, x1), markers, (top, top + self.timeline_scroll.viewport().height()))
        self.meters.update_view(snap)
        if self.matrix is not None:
            self.matrix.update_view(snap)
        self.episodes.update_view(snap)
        for ep in snap.episodes:
            self._seen_episodes[(tuple(ep["pair"]), round(ep["onset_s"]))] = ep
        self._update_controls(snap)
        self.frames += 1
        self.redraw_s += time.perf_counter() - t0

    def _choose_pairs(self, snap) -> None:
        """A group: which pairs get a card and a synchrony plot, and what is left out.

        A group: which pairs get a card and a synchrony plot (the flagged ones, the selected one), and the
        line that says what is left out or why nothing is shown.
        """
        order = {"possible_rupture": 0, "repairing": 1, "drifting": 2}
        states = {tuple(ps["pair"]): ps.get("state") for ps in snap.pair_states}
        flagged = sorted((p for p, st in states.items() if st in order), key=lambda p: (order[states[p]], p))
        ties = getattr(snap, "ties", {}) or {}
        drifting = [who for who, t in ties.items() if t.get("state") == "drifting_away"]
        away = [who for who in drifting if ties[who].get("dropping", 0) >= 2]
        drops = {tuple(ps["pair"]): ps.get("drop") for ps in snap.pair_states}
        # then the pairs of whoever is drifting away (not flagged yet), the farthest down first
        theirs = sorted((p for p in states if set(p) & set(drifting) and p not in flagged
                         and drops.get(p) is not None and np.isfinite(drops[p])), key=lambda p: -drops[p])
        plots = ([self.selected_pair] if self.selected_pair else []) + [
            p for p in (*flagged, *theirs) if p != self.selected_pair]
        room = max(1, int(self.timeline_scroll.viewport().height() // 105)) if self.timeline_scroll.isVisible() else 1
        room = min(room, MAX_GROUP_PAIR_PLOTS)
        shown_plots = plots[:room]
        self.timelines.set_shown(shown_plots)
        self.timeline_scroll.setVisible(bool(shown_plots))
        self.sync_legend.setVisible(bool(shown_plots))
        left_out = len(plots) - len(shown_plots)
        if self.big:
            cards: list = [(who, "*") for who in away]
            covered = set(away)
            if self.selected_pair:
                cards.insert(0, self.selected_pair)
            cards += [p for p in flagged if not (set(p) & covered) and p not in cards]
            more = ""
            if len(cards) > 4:
                more = f"+{len(cards) - 4} more flagged: see the episodes below"
                cards = cards[:4]
            self.meters.set_shown(cards, more)
        arming = getattr(snap, "arming", {}) or {}
        if shown_plots:
            hint = (f"+{left_out} more pair{'s' if left_out > 1 else ''} to look at (click a cell of the matrix to "
                    "see one)" if left_out else "")
            if not flagged and drifting and not self.selected_pair:
                hint = (f"Not flagged (yet): {' and '.join(drifting)}'s synchrony with the others is down towards "
                        "chance." + (f" {hint}" if hint else ""))
        elif arming.get("learning"):
            ready = arming_words(arming).replace("learning baseline \u00b7 ", "")
            hint = ("Learning how in tune each pair usually is" + (f": {ready}" if ready != "learning baseline" else "")
                    + ". Meanwhile the signals and their quality are on the left.")
        else:
            hint = "No pair flagged. A pair's synchrony shows here when it is flagged, or click a cell of the matrix."
        if hint != self.pairs_hint.text():
            self.pairs_hint.setText(hint)
        self.pairs_hint.setVisible(bool(hint))

    def select_pair(self, key) -> None:
        """A click on a pair's card or matrix cell: show that pair (again: unselect).

        A person's card: their most flagged pair.
        """
        key = tuple(key)
        if len(key) == 2 and key[1] == "*":
            snap = self.snapshot
            mine = [tuple(ps["pair"]) for ps in (snap.pair_states if snap else []) if key[0] in ps["pair"]
                    and ps.get("state") in ("possible_rupture", "repairing", "drifting")]
            key = mine[0] if mine else None
        if not self.group:
            if key is not None:
                self.scroll_to_pair(key)
            return
        self.selected_pair = None if key == self.selected_pair else key
        if self.matrix is not None:
            self.matrix.set_selected(self.selected_pair)
        self._dirty = True

    def clock_s(self, snap) -> float:
        """The session clock the header shows: in a replay, the replay position (the scrubber's clock)."""
        rp = snap.replay
        return float(rp.get("position_s", snap.t_now)) if rp is not None else float(snap.t_now)

    def _update_controls(self, snap) -> None:
        mode = snap.label or ("Replay" if snap.replay is not None else "Live")
        # one clock: in a replay the scrubber's label has it
        clock = "" if snap.replay is not None else f" \u00b7 {fmt_time(self.clock_s(snap))}"
        self.session_label.setText(f"{mode} \u00b7 {len(snap.participants)} people{clock}")
        text = arming_words(getattr(snap, "arming", None))
        self.arming_label.setText(f"\u25CC {text}" if text else "")
        # a replay's controls fill the toolbar: there the cards and the pairs' line carry the countdown
        self.arming_action.setVisible(bool(text) and snap.replay is None)
        self.record_action.setVisible(snap.replay is None)   # a replay is a recording already
        self.record_label_action.setVisible(snap.replay is None)
        rec = snap.recording
        if rec:
            elapsed = rec.get("elapsed_s", rec.get("seconds"))  # runner's status, or the recorder's own
            if elapsed is None and rec.get("started_wall") is not None:
                elapsed = time.time() - rec["started_wall"]
            self.record_label.setText(f"\u25CF {fmt_time(elapsed)}  {Path(str(rec.get('path', ''))).name}")
            self.record_label.setStyleSheet(f"color:{OKABE_ITO['vermillion']}; font-weight:600")
            self.record_btn.setChecked(True)
            self.record_btn.setText("\u25A0 Stop")
        else:
            self.record_label.setText("")
            self.record_btn.setChecked(False)
            self.record_btn.setText("\u25CF Record")
        rp = snap.replay
        self.replay_action.setVisible(rp is not None)
        if rp is not None:
            pos, dur = float(rp.get("position_s", 0.0)), float(rp.get("duration_s", 0.0))
            if not self._slider_busy:
                self.scrubber.blockSignals(True)
                self.scrubber.setRange(0, int(dur))
                self.scrubber.setValue(int(pos))
                self.scrubber.blockSignals(False)
            self.pos_label.setText(f"{fmt_time(self.clock_s(snap))} / {fmt_time(dur)}")
            paused = bool(rp.get("paused"))
            if self.play_btn.text() != ("Play" if paused else "Pause"):
                self.play_btn.setText("Play" if paused else "Pause")
                self.play_btn.setIcon(self._icons["play" if paused else "pause"])
            speed = rp.get("speed", 1.0)
            if speed in SPEEDS:
                self.speed_box.setCurrentIndex(SPEEDS.index(speed))
            self.start_episode_index()
            if self._next_pending and self.episode_index is not None:
                self._next_pending = False
                self.next_episode()
            ep = self._show_after_seek
            if ep is not None and (snap.t_now >= ep.get("flagged_s", ep["onset_s"]) or any(
                    tuple(e["pair"]) == tuple(ep["pair"]) and abs(e["onset_s"] - ep["onset_s"]) < 1
                    for e in snap.episodes)):
                self._show_after_seek = None
                self.show_episode(ep)
        if snap.messages:
            self.message_label.setText(snap.messages[-1])

    # -- navigation -----------------------------------------------------------------------------------
    def show_episode(self, ep: dict) -> None:
        """Scroll the timelines to an episode (stops following live until "Back to now")."""
        d = self.settings.display_s
        self.follow = False
        end = ep["offset_s"] if ep.get("offset_s") is not None else ep.get("flagged_s", ep["onset_s"])
        self.view_end = min(max(end + 0.3 * d, ep["onset_s"] + 0.5 * d), max(self.model.t_now, ep["onset_s"] + 10))
        self.live_action.setVisible(True)
        self.scroll_to_pair(tuple(ep["pair"]))
        self._dirty = True

    def follow_live(self) -> None:
        """Follow the present again (after looking back at an episode)."""
        self.follow = True
        self.view_end = None
        self.live_action.setVisible(False)
        self._dirty = True

    def scroll_to_pair(self, pair) -> None:
        """Show the pair's timeline (choosing it in a group) and scroll to it."""
        pair = tuple(pair)
        if self.group and pair not in self.timelines.shown:
            self.selected_pair = pair
            if self.matrix is not None:
                self.matrix.set_selected(pair)
            if self.snapshot is not None:
                self._choose_pairs(self.snapshot)
        row_plots = self.timelines.plots_for(self.timelines.pairs.index(pair))
        item = row_plots[0]["plot"]
        y = int(item.mapRectToScene(item.boundingRect()).top())
        self.timeline_scroll.ensureVisible(0, max(0, y), 0, max(50, int(self.timeline_scroll.height() * 0.9)))
        self.timeline_scroll.verticalScrollBar().setValue(max(0, y - 4))

    # -- facilitator actions ----------------------------------------------------------------------------
    def add_marker(self, kind: str, text: str = "") -> dict:
        """Add a marker now, say so in the status bar and return it."""
        m = self.model.add_marker(kind, text=text)
        self.statusBar().showMessage(f"Marker: {kind.replace('_', ' ')} at {fmt_time(m['t'])}", 3000)
        self._dirty = True
        return m

    def add_note(self) -> None:
        """Ask for a note and add it at the moment the key was pressed."""
        t = self.model.t_now  # the moment the key was pressed, not when the dialog closes
        text, ok = QtWidgets.QInputDialog.getText(self, "Note", f"Note at {fmt_time(t)}:")
        if ok and text.strip():
            self.model.add_marker("note", text=text.strip(), t=t)
            self._dirty = True

    def toggle_recording(self) -> None:
        """Start recording into the settings' folder, or stop (nothing in a replay)."""
        if self.runner is None or not hasattr(self.runner, "start_recording") or self.model.replay is not None:
            return  # a replay is a recording already
        if self.model.recording:
            self.runner.stop_recording()
            return
        folder = Path(self.settings.recordings_dir).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / time.strftime("attune-%Y%m%d-%H%M%S.xdf")
            self.runner.start_recording(path)
        except Exception as exc:  # XdfWriteError, folder not writable ...: say so, the session goes on
            self.record_btn.setChecked(False)
            self.model.message(f"Recording not started: {exc}")
            self.notify("Recording not started",
                        f"Could not start recording in {folder}:\n{exc}\n\n"
                        "The session goes on. Choose a folder you can write to in Settings (\u2699), "
                        "then press Record again.")
        else:
            self.statusBar().showMessage(f"Recording to {path}", 5000)
        self._dirty = True

    def notify(self, title: str, text: str) -> QtWidgets.QMessageBox:
        """A warning box that does not block the session (the timer keeps redrawing behind it)."""
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setObjectName("notice")
        box.setAttribute(QtCore.Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    # -- replay ------------------------------------------------------------------------------------------
    def _call(self, name: str, *args) -> None:
        fn = getattr(self.runner, name, None) if self.runner is not None else None
        if fn is not None:
            fn(*args)
            self._dirty = True

    def toggle_pause(self) -> None:
        """Pause or resume the replay (nothing when live)."""
        rp = self.model.replay
        if rp is None:
            return
        self._call("resume" if rp.get("paused") else "pause")

    def set_speed(self, speed: float) -> None:
        """Set the replay speed (1.0: real time)."""
        self._call("set_speed", float(speed))

    def seek(self, t: float) -> None:
        """Jump the replay to session time ``t`` (s) and follow it."""
        self._call("seek", float(t))
        self.follow_live()

    def _scrub_released(self) -> None:
        self._slider_busy = False
        self.seek(self.scrubber.value())

    def start_episode_index(self) -> None:
        """Replay: find every episode of the recording in a worker (the live pipeline, run at full speed).

        The pipeline is causal and deterministic, so these are the episodes the
        replay will flag (``attune analyze`` == replay); "next episode" seeks to them.
        """
        src = getattr(self.runner, "source", None)
        rec = getattr(src, "recording", None)
        if rec is None or self._index_thread is not None:
            return
        config = self.runner.config
        modalities, assign = getattr(self.runner, "modalities", None), getattr(src, "assign", None)

        def work():
            from attune_monitor.dsp.detector import episode_dict
            from attune_monitor.ui.runner import analyze_recording

            try:
                found = analyze_recording(rec, config, assign=assign, modalities=modalities).episodes
                self.episode_index = sorted((episode_dict(e) for e in found), key=lambda e: e["onset_s"])
            except Exception as exc:  # the replay goes on; "next episode" then uses what was seen
                logger.exception("finding the recording's episodes failed")
                self.model.message(f"Could not look ahead for episodes: {exc}")
                self.episode_index = []

        self._index_thread = threading.Thread(target=work, name="attune-episode-index", daemon=True)
        self._index_thread.start()

    def next_episode(self) -> None:
        """Replay: jump to just after the next episode is flagged (and show it)."""
        rp = self.model.replay
        if rp is None:
            return
        if self.episode_index is None:
            self.start_episode_index()
            if self._index_thread is not None:
                self._next_pending = True
                self.statusBar().showMessage("Looking ahead for the next episode\u2026", 3000)
                return
        pos = float(rp.get("position_s", self.model.t_now))
        known = {(tuple(e["pair"]), round(e["onset_s"])): e for e in (self.episode_index or [])}
        for key, e in self._seen_episodes.items():
            known.setdefault(key, e)
        ahead = sorted((e for e in known.values() if e["onset_s"] > pos + 1), key=lambda e: e["onset_s"])
        if not ahead:
            self.statusBar().showMessage("No further episode in this recording.", 4000)
            return
        ep = ahead[0]
        # the pipeline's output trails the replay clock (causal beat detection and filters): seek that much
        # further, so the flag has been processed when the seek lands
        lag = pos - self.model.t_now if self.model.t_now > 0 else 10.0
        target = ep.get("flagged_s", ep["onset_s"]) + min(max(lag, 0.0), 30.0) + 2.0
        self.seek(min(float(rp.get("duration_s", 1e12)), target))
        self._show_after_seek = ep

    # -- settings ------------------------------------------------------------------------------------------
    def open_settings(self) -> None:
        """Open the settings dialog; apply and save what it accepts."""
        dlg = SettingsDialog(self.settings, self)
        if dlg.exec():
            self.settings = dlg.settings
            self.settings.save()
            self._dirty = True

    def closeEvent(self, event):  # noqa: N802
        self.timer.stop()
        super().closeEvent(event)
