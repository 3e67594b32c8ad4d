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

Two library modules sit over acquisition and dsp (no Qt):
:mod:`attune_monitor.analysis` runs the live pipeline over a whole recording
(what ``attune analyze`` does) and :mod:`attune_monitor.evaluation` scores its
episodes against ground truth (``attune evaluate``). Every error Attune raises
about its input derives from :class:`attune_monitor.errors.AttuneError`.

Importing this package imports none of them; ``from attune_monitor import dsp``
gives the public DSP API, and :func:`read_recording` / :func:`analyze_recording`
are loaded from here on first use.

Use from Python
---------------
Run from the repository's root (the sample recording is in ``recordings/``)::

    import numpy as np

    from attune_monitor import analyze_recording, read_recording
    from attune_monitor.dsp import rolling_pearson

    recording = read_recording("recordings/sample-couple.xdf")
    analysis = analyze_recording(recording)   # the live pipeline, as fast as possible
    for ep in analysis.episodes:              # times in session seconds
        print(f"{ep.pair[0]}-{ep.pair[1]}: possible rupture from {ep.onset_s:.0f} s, flagged at {ep.flagged_s:.0f} s")

    fs = 4.0                                  # rolling Pearson r of two signals on a 4-Hz grid
    t = np.arange(0.0, 120.0, 1.0 / fs)
    a = np.sin(2 * np.pi * t / 20.0)
    b = a + 0.3 * np.random.default_rng(0).standard_normal(t.size)
    m = rolling_pearson(np.vstack([a, b]), fs, window_s=30.0, step_s=1.0)
    print(f"{m.values.shape[1]} windows, median r = {np.median(m.values[0]):.2f}")
"""

from pathlib import Path as _Path

# Run from a source checkout (the current directory on sys.path, e.g. `python -c ...` at the clone's root), this
# folder is found before the installed package, and the layers are its siblings (setuptools maps them there on
# install): look for them there too, so `import attune_monitor.dsp` works from the clone's root however Attune was
# installed. An installed copy has no pyproject.toml beside it and is left as it is.
_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "dsp" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - the package's own __path__

#: public name -> (module, name there), loaded on first use (PEP 562) so that ``import attune_monitor`` stays cheap
_HOME = {
    "read_recording": ("attune_monitor.acquisition.files", "load_recording"),
    "analyze_recording": ("attune_monitor.analysis", "analyze_recording"),
    "AttuneError": ("attune_monitor.errors", "AttuneError"),
}

__all__ = ["__version__", *_HOME]


def _installed_version() -> str:
    """The installed distribution's version; read on first use (``importlib.metadata`` costs every command ~40 ms)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attune-monitor")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout that was never installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        globals()[name] = value = _installed_version()
        return value
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home[0]), home[1])
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
