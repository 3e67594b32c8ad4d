"""Attune user interfaces: the ``attune`` CLI, the headless terminal monitor and the PySide6 GUI."""

if __name__ != "attune_monitor.ui":  # pragma: no cover - only a wrong import gets here
    raise ImportError(
        f"import this package as 'attune_monitor.ui', not '{__name__}' (a second copy under another name would "
        "break the guarantee that LSL's loopback configuration is in force before pylsl loads); install Attune with "
        "'make install' or 'pip install -e .' and write 'from attune_monitor import ui'")

__all__: list[str] = []  # nothing here: the CLI, the headless monitor and the GUI are its modules
