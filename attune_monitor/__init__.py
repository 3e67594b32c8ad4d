"""Attune: a real-time interpersonal physiological synchrony (attunement) monitor.

The package has three layers, imported as ``attune_monitor.<layer>``; data flows
one way, acquisition -> dsp -> ui:

``attune_monitor.acquisition``
    LSL inlets and outlets, the synthetic wearables, XDF and vendor files. No Qt.
``attune_monitor.dsp``
    Vectorised synchrony (rolling correlation, windowed cross-correlation,
    skin-conductance concordance, surrogates), the streaming engine and the
    rupture/repair detector. Neither Qt nor pylsl.
``attune_monitor.ui``
    The ``attune`` command line, the headless monitor and the PySide6 GUI.

Importing this package imports none of them; ``from attune_monitor import dsp``
gives the public DSP API.
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("attune-monitor")
except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
