"""Attune acquisition layer: samples in and out.

LSL inlets and outlets, the synthetic wearables, XDF and vendor files. Imports
no Qt. Every module that needs pylsl imports it through
:mod:`attune_monitor.acquisition.lsl`, which puts the loopback-only ``lsl_api.cfg`` in force
first.

The public API, loaded on first use (PEP 562; ``import attune_monitor.acquisition`` imports
neither pylsl nor the readers):

:func:`read_recording`
    Read an XDF recording (Attune's or LabRecorder's), a CSV file or a vendor
    folder (Empatica E4 ...) into a :class:`Recording` (the same function as
    :func:`attune_monitor.acquisition.files.load_recording`).
:class:`Recording`
    Its streams, markers, problems and roster.
:class:`RecordingError`
    Raised for a file that cannot be read (a :class:`attune_monitor.errors.AttuneError`).
"""

if __name__ != "attune_monitor.acquisition":  # pragma: no cover - only a wrong import gets here
    raise ImportError(
        f"import this package as 'attune_monitor.acquisition', not '{__name__}' (a second copy under another name "
        "would break the guarantee that LSL's loopback configuration is in force before pylsl loads); install Attune "
        "with 'make install' or 'pip install -e .' and write 'from attune_monitor import acquisition'")

#: public name -> (module, name there)
_HOME = {
    "read_recording": (".files", "load_recording"),
    "load_recording": (".files", "load_recording"),
    "Recording": (".files", "Recording"),
    "RecordingError": (".files", "RecordingError"),
}

__all__ = list(_HOME)


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home[0], __name__), home[1])
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
