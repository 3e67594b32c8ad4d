"""Attune DSP core: pure numpy/scipy preprocessing, synchrony and rupture/repair detection.

Imports neither Qt nor pylsl. Windows and steps are given in seconds; array
shapes are stated in docstrings; streaming state is explicit so that feeding
data in chunks gives the same numbers as processing it all at once.
"""

if __name__ != "attune_monitor.dsp":  # pragma: no cover - only a wrong import gets here
    raise ImportError(
        f"import this package as 'attune_monitor.dsp', not '{__name__}' (a second copy under another name would "
        "break the guarantee that LSL's loopback configuration is in force before pylsl loads); install Attune with "
        "'make install' or 'pip install -e .' and write 'from attune_monitor import dsp'")

