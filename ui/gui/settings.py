"""User settings (window lengths, sensitivity, modalities), remembered between runs with QSettings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from attune_monitor.dsp.detector import PRESETS

from ..commands.options import MODALITY_CHOICES, WINDOW_RANGE_S  # shared with the CLI's --signals / --window

__all__ = ["ORGANIZATION", "APPLICATION", "Settings", "qsettings", "SettingsDialog"]

ORGANIZATION = "Attune"
APPLICATION = "attune"


@dataclass
class Settings:
    """What the facilitator can set.

    Attributes
    ----------
    display_s : float
        Seconds of history the traces and timelines show (120-300).
    window_s : float
        Synchrony window (s, all modalities); applies to the next session.
    preset : str
        Detector sensitivity (``conservative`` / ``balanced`` / ``sensitive``); next session.
    modalities : str
        ``"heart + skin"``, ``"heart only"`` or ``"skin only"``; next session.
    recordings_dir : str
        Where the record button writes.
    """

    display_s: float = 180.0
    window_s: float = 30.0
    preset: str = "balanced"
    modalities: str = "heart + skin"
    recordings_dir: str = str(Path.home() / "attune-recordings")

    def validate(self) -> Settings:
        """Clamp numbers into range and fall back on unknown choices (settings files can be stale)."""
        self.display_s = float(min(max(self.display_s, 60.0), 600.0))
        self.window_s = float(min(max(self.window_s, WINDOW_RANGE_S[0]), WINDOW_RANGE_S[1]))
        if self.preset not in PRESETS:
            self.preset = "balanced"
        if self.modalities not in MODALITY_CHOICES:
            self.modalities = "heart + skin"
        return self

    def pipeline_config(self, **overrides):
        """A :class:`attune_monitor.dsp.pipeline.PipelineConfig` from these settings."""
        from attune_monitor.dsp.pipeline import PipelineConfig

        kw = dict(window_s=self.window_s, preset=self.preset)
        kw.update(overrides)
        return PipelineConfig(**kw)

    @property
    def modality_tuple(self) -> tuple:
        """The modalities to use, e.g. ``("hr", "eda")``."""
        return MODALITY_CHOICES[self.modalities]

    @classmethod
    def load(cls, store: QtCore.QSettings | None = None) -> Settings:
        """Read from ``store`` (default: the user's Attune settings)."""
        store = store or qsettings()
        s = cls()
        for f in fields(cls):
            v = store.value(f.name)
            if v is None:
                continue
            try:
                setattr(s, f.name, type(getattr(s, f.name))(v))
            except (TypeError, ValueError):
                pass
        return s.validate()

    def save(self, store: QtCore.QSettings | None = None) -> None:
        """Write to ``store`` (default: the user's Attune settings)."""
        store = store or qsettings()
        for k, v in asdict(self.validate()).items():
            store.setValue(k, v)
        store.sync()


def qsettings() -> QtCore.QSettings:
    """The user's Attune settings (tests point ``QSettings.setPath`` at a temporary directory)."""
    return QtCore.QSettings(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, ORGANIZATION,
                            APPLICATION)


class SettingsDialog(QtWidgets.QDialog):
    """Edit :class:`Settings`; ``accept`` leaves the result in :attr:`settings`."""

    def __init__(self, settings: Settings, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Attune settings")
        self.settings = Settings(**asdict(settings))
        form = QtWidgets.QFormLayout(self)
        self.display = QtWidgets.QSpinBox()
        self.display.setRange(60, 600)
        self.display.setSingleStep(30)
        self.display.setSuffix(" s")
        self.display.setValue(int(settings.display_s))
        form.addRow("Show the last", self.display)
        self.sync_win = QtWidgets.QDoubleSpinBox()
        self.sync_win.setRange(*WINDOW_RANGE_S)
        self.sync_win.setSuffix(" s")
        self.sync_win.setDecimals(0)
        self.sync_win.setValue(settings.window_s)
        form.addRow("Synchrony window", self.sync_win)
        self.preset = QtWidgets.QComboBox()
        self.preset.addItems(list(PRESETS))
        self.preset.setCurrentText(settings.preset)
        self.preset.setToolTip(
            "conservative: fewer, deeper flags; sensitive: more, earlier prompts (more of them false).")
        form.addRow("Sensitivity", self.preset)
        self.modalities = QtWidgets.QComboBox()
        self.modalities.addItems(list(MODALITY_CHOICES))
        self.modalities.setCurrentText(settings.modalities)
        form.addRow("Signals used", self.modalities)
        self.rec_dir = QtWidgets.QLineEdit(settings.recordings_dir)
        form.addRow("Recordings folder", self.rec_dir)
        note = QtWidgets.QLabel("Windows, sensitivity and signals apply when the next session starts.")
        note.setWordWrap(True)
        note.setStyleSheet("color:#6B7280")
        form.addRow(note)
        buttons = QtWidgets.QDialogButtonBox(QtWidgets.QDialogButtonBox.StandardButton.Ok
                                             | QtWidgets.QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        self.settings = Settings(
            display_s=float(self.display.value()), window_s=self.sync_win.value(),
            preset=self.preset.currentText(), modalities=self.modalities.currentText(),
            recordings_dir=self.rec_dir.text().strip() or Settings().recordings_dir,
        ).validate()
        super().accept()
