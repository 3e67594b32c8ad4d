"""Attune acquisition layer: samples in and out.

LSL inlets and outlets, the synthetic wearables, XDF and vendor files. Imports
no Qt. Every module that needs pylsl imports it through
:mod:`acquisition.lsl`, which puts the loopback-only ``lsl_api.cfg`` in force
first.
"""
