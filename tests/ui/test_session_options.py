"""The session options have one home (ui/commands/options.py) that the CLI and the GUI both follow.

* ``--signals`` and the GUI's "Signals used" menu give the same modalities for the same choice;
* the GUI's settings clamp and offer the synchrony windows ``--window`` accepts;
* the synchrony legend's tooltip says the session's own window, not a fixed 30 s;
* the extras the docs and messages tell users to install exist, and ``make``'s ``.[dev]`` includes them.
"""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path

import pytest

from attune_monitor.ui.commands.options import (
    MODALITY_CHOICES,
    SIGNALS,
    WINDOW_RANGE_S,
    describe_settings,
    session_settings,
)

ROOT = Path(__file__).resolve().parents[2]


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(**{"preset": None, "window": None, "signals": None, **given})


@pytest.fixture
def qsettings_in(tmp_path):
    """QSettings in a temporary folder (never the user's own settings)."""
    QtCore = pytest.importorskip("PySide6.QtCore")
    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(tmp_path))
    return tmp_path


def test_cli_signals_and_gui_menu_choose_the_same_modalities(qsettings_in):
    """Each --signals choice: the CLI's modalities (no GUI) equal the GUI's, whose menu shows the same words."""
    from attune_monitor.ui.gui.settings import Settings, qsettings

    Settings().save(qsettings())
    for choice in SIGNALS:
        _, cli, _ = session_settings(_args(signals=choice), gui=False)
        _, gui, settings = session_settings(_args(signals=choice), gui=True)
        assert settings is not None and settings.modalities in MODALITY_CHOICES
        assert cli == gui, (choice, cli, gui)
    # what the session then says on stderr names the signals in the menu's words
    assert [describe_settings(session_settings(_args(signals=c), gui=False)[0],
                              session_settings(_args(signals=c), gui=False)[1]).split(",")[0] for c in SIGNALS] == \
        ["signals heart + skin", "signals heart only", "signals skin only"]
    assert session_settings(_args(), gui=False)[1] is None  # unset: every signal the streams have


def test_gui_settings_offer_the_windows_the_cli_accepts(qtbot, qsettings_in):
    """The settings clamp a stale window into --window's range, and the dialog's spin box offers exactly it."""
    from attune_monitor.ui.gui.settings import Settings, SettingsDialog

    low, high = WINDOW_RANGE_S
    assert Settings(window_s=high * 10).validate().window_s == high
    assert Settings(window_s=low / 10).validate().window_s == low
    dialog = SettingsDialog(Settings())
    qtbot.addWidget(dialog)
    assert (dialog.sync_win.minimum(), dialog.sync_win.maximum()) == (low, high)
    assert [dialog.modalities.itemText(i) for i in range(dialog.modalities.count())] == list(MODALITY_CHOICES)
    config, _, _ = session_settings(_args(window=high), gui=False)
    assert config.window_s == high


def test_synchrony_tooltip_says_the_sessions_window(qtbot, qsettings_in):
    """A 45-s session's legend says 'over the last 45 s' (it said 30 s whatever the window)."""
    from PySide6 import QtWidgets

    from attune_monitor.ui.gui.main_window import MainWindow, sync_legend_tip
    from attune_monitor.ui.gui.settings import Settings
    from attune_monitor.ui.model import SessionModel

    model = SessionModel(["P1", "P2"], ("hr", "eda"), [("P1", "P2")], 4.0, 1.0, 600.0, window_s=45.0)
    win = MainWindow(model, settings=Settings(recordings_dir="/nonexistent"))
    qtbot.addWidget(win)
    tips = [w.toolTip() for w in win.findChildren(QtWidgets.QLabel) if "usual range" in w.text()]
    assert len(tips) == 1
    assert tips[0].count("over the last 45 s") == 2 and "30 s" not in tips[0], tips[0]
    assert "over the last 12 s" in sync_legend_tip(("hr",), 12.0)


def test_extras_named_in_docs_and_messages_exist_and_make_installs_them():
    """`pip install 'attune-monitor[X]'` in the docs or in a message names an extra of pyproject; `.[dev]` has it."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = meta["optional-dependencies"]
    texts = [*ROOT.glob("*.md"), *ROOT.glob("docs/*.md"), *ROOT.glob("acquisition/*.py"), *ROOT.glob("ui/**/*.py")]
    named = {m for p in texts for m in re.findall(r"attune-monitor\[(\w+)\]", p.read_text(encoding="utf-8"))}
    assert "ble" in named and named <= set(extras), (named, set(extras))
    assert all(re.match(r"bleak\b", d) is None for d in meta["dependencies"])  # only the BLE bridge needs it
    assert any(d.startswith("bleak") for d in extras["ble"])
    dev_extras = {m for d in extras["dev"] for m in re.findall(r"attune-monitor\[([\w,]+)\]", d)}
    assert set(extras) - {"dev"} <= {e for group in dev_extras for e in group.split(",")}
    assert re.search(r"pip install .*-e '\.\[dev\]'", (ROOT / "Makefile").read_text(encoding="utf-8"))
