"""Attune acquisition layer: samples in and out.

LSL inlets and outlets, the synthetic wearables, XDF and vendor files. Imports
no Qt. Every module that needs pylsl imports it through
:mod:`attune_monitor.acquisition.lsl`, which puts the loopback-only ``lsl_api.cfg`` in force
first.
"""

if __name__ != "attune_monitor.acquisition":  # pragma: no cover - only a wrong import gets here
    raise ImportError(
        f"import this package as 'attune_monitor.acquisition', not '{__name__}' (a second copy under another name would "
        "break the guarantee that LSL's loopback configuration is in force before pylsl loads); install Attune with "
        "'make install' or 'pip install -e .' and write 'from attune_monitor import acquisition'")

