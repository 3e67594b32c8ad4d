"""LSL outlets for tests that need a live person (loopback only: the tests' LSLAPICFG is in force)."""

from __future__ import annotations

import time


def wait_until(pred, timeout: float = 30.0, step: float = 0.02):
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; returns its last value (so ``assert
    wait_until(...)`` fails with what it last saw). Tests wait on what they need, never a fixed sleep: a loaded
    2-core machine can take many times longer than an idle one."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def hr_outlet(tag: str, who: str, srate: float = 4.0):
    """A heart-rate outlet (bpm) of participant ``who``, source_id ``f"{tag}-{who}"``.

    Returns
    -------
    outlet : pylsl.StreamOutlet
    """
    from attune_monitor.acquisition.lsl import pylsl

    info = pylsl.StreamInfo(f"{who} HR", "HR", 1, srate, "float32", f"{tag}-{who}")
    info.desc().append_child_value("participant", who)
    ch = info.desc().append_child("channels").append_child("channel")
    ch.append_child_value("label", "HR")
    ch.append_child_value("unit", "bpm")
    return pylsl.StreamOutlet(info)
