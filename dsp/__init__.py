"""Attune DSP core: pure numpy/scipy preprocessing, synchrony and rupture/repair detection.

Imports neither Qt nor pylsl. Windows and steps are given in seconds; array
shapes are stated in docstrings; streaming state is explicit so that feeding
data in chunks gives the same numbers as processing it all at once.
"""
