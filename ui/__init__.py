"""Attune user interfaces: the ``attune`` CLI, the headless terminal monitor and the PySide6 GUI."""
