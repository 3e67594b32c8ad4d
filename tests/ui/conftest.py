"""Fixtures of the GUI tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def tmp_qsettings(tmp_path):
    """Keep QSettings away from the user's real settings: an INI folder under the test's ``tmp_path``.

    Used by the GUI test modules through ``pytest.mark.usefixtures("tmp_qsettings")``; yields the folder.
    """
    from PySide6 import QtCore

    folder = tmp_path / "qs"
    QtCore.QSettings.setPath(QtCore.QSettings.Format.IniFormat, QtCore.QSettings.Scope.UserScope, str(folder))
    yield folder
