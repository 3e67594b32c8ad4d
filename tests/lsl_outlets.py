"""LSL outlets for tests that need a live person (loopback only: the tests' LSLAPICFG is in force)."""

from __future__ import annotations


def hr_outlet(tag: str, who: str, srate: float = 4.0):
    """A heart-rate outlet (bpm) of participant ``who``, source_id ``f"{tag}-{who}"``.

    Returns
    -------
    outlet : pylsl.StreamOutlet
    """
    from acquisition.lsl import pylsl

    info = pylsl.StreamInfo(f"{who} HR", "HR", 1, srate, "float32", f"{tag}-{who}")
    info.desc().append_child_value("participant", who)
    ch = info.desc().append_child("channels").append_child("channel")
    ch.append_child_value("label", "HR")
    ch.append_child_value("unit", "bpm")
    return pylsl.StreamOutlet(info)
