"""Reading a stream's header does not leak (issue 21).

``pylsl.StreamInfo.as_xml`` (pylsl 1.18) never frees the string ``lsl_get_xml`` allocates for it; a live session
reads the header of every stream on the machine every rescan (``LiveSession.scan``, every 2 s), so the monitor's
resident memory grew by the headers' size with wall time. :func:`attune_monitor.acquisition.lsl.stream_xml` reads
it and frees liblsl's copy.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

from attune_monitor.acquisition.lsl import pylsl, stream_xml

ROOT = Path(__file__).resolve().parents[2]
CALLS = 20_000


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use() -> int:
    """Bytes the C allocator has handed out and not had back, over all arenas (glibc ``mallinfo2``)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _info():
    info = pylsl.StreamInfo("P1 E4 EDA", "EDA", 1, 4.0, pylsl.cf_float32, "test-xml-leak")
    desc = info.desc()
    desc.append_child_value("manufacturer", "Empatica")
    desc.append_child_value("note", "Zoë's wristband, µS")  # non-ASCII text: decoded as pylsl decodes it
    chans = desc.append_child("channels")
    for k in range(8):
        chans.append_child("channel").append_child_value("label", f"EDA{k}")
    return info


def test_stream_xml_is_the_header_pylsl_returns():
    info = _info()
    text = stream_xml(info)
    assert text == info.as_xml()
    assert "Zoë's wristband, µS" in text and text.count("<channel>") == 8


def test_stream_xml_hands_liblsls_copy_back_while_pylsls_as_xml_keeps_it():
    info = _info()
    size = len(stream_xml(info).encode())
    assert size > 600
    stream_xml(info)
    before = _malloc_in_use()
    for _ in range(CALLS):
        stream_xml(info)
    ours = _malloc_in_use() - before
    before = _malloc_in_use()
    for _ in range(CALLS):
        info.as_xml()
    theirs = _malloc_in_use() - before
    # pylsl's keeps each header's bytes (the measurement sees a leak of that size); ours keeps nothing per call
    assert theirs >= 0.9 * CALLS * size, (theirs, size)
    assert ours < 0.01 * CALLS * size, (ours, size)


def test_no_attune_code_calls_pylsls_leaking_as_xml():
    """Every header Attune reads goes through stream_xml (tests may call as_xml: they run once)."""
    calls = []
    for folder in ("acquisition", "ui", "dsp", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"\.as_xml\(\)", code) and "``" not in code:
                    calls.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert calls == []


def test_a_live_sessions_rescans_keep_no_memory():
    """``LiveSession.scan`` (every 2 s of a session) reads every listed stream's header: 1,500 rescans of a
    session with 3 streams keep no C memory for it (with pylsl's as_xml: ~700 bytes per stream per rescan)."""
    import time
    import uuid

    from attune_monitor.acquisition.live import LiveSession

    tag = f"xmlleak-{uuid.uuid4().hex[:8]}"
    outlets = []
    for who in ("P1", "P2", "P3"):
        info = pylsl.StreamInfo(f"{who} E4 EDA", "EDA", 1, 4.0, pylsl.cf_float32, f"{tag}-{who}")
        info.desc().append_child_value("manufacturer", "Empatica")
        outlets.append(pylsl.StreamOutlet(info))
    session = LiveSession(match=f"{tag}*", rescan_interval=3600.0, discover_timeout=2.0).start()
    try:
        deadline = time.monotonic() + 15
        while len(session.receivers) < 3 and time.monotonic() < deadline:
            session.scan()
            time.sleep(0.2)
        assert len(session.receivers) == 3
        listed = len(session._resolver.results())   # every stream on the machine is read, not only ours
        for _ in range(1000):  # first calls: caches and free lists settle (~160 kB)
            session.scan()
        before = _malloc_in_use()
        for _ in range(1500):
            session.scan()
        grown = _malloc_in_use() - before
    finally:
        session.close()
    # the leak kept >= 600 bytes per stream per rescan; what moves without it is a 64-kB block now and then
    assert grown < 0.25 * 1500 * listed * 600, (grown, listed)


def test_rescans_with_match_read_each_streams_header_once(monkeypatch):
    """With ``--match``, a rescan reads a listed stream's header only the first time its uid is listed: 50
    rescans with 2 of our streams listed (and whatever else runs on the machine) test no header again; a stream
    that appears later is tested once and received, one that does not match is tested once and never received."""
    import time
    import uuid

    from attune_monitor.acquisition import discovery
    from attune_monitor.acquisition.live import LiveSession

    described: list[str] = []  # source ids of the headers a rescan read to test the match
    real = discovery.matches

    def counting(descriptor, pattern):
        described.append(descriptor.source_id)
        return real(descriptor, pattern)

    monkeypatch.setattr(discovery, "matches", counting)
    tag = f"matchonce-{uuid.uuid4().hex[:8]}"

    def outlet(who: str, prefix: str):
        info = pylsl.StreamInfo(f"{who} E4 EDA", "EDA", 1, 4.0, pylsl.cf_float32, f"{prefix}-{who}")
        return pylsl.StreamOutlet(info)

    outlets = [outlet("P1", tag), outlet("P2", tag)]
    session = LiveSession(match=f"{tag}*", rescan_interval=3600.0, discover_timeout=2.0).start()
    try:
        deadline = time.monotonic() + 15
        while len(session.receivers) < 2 and time.monotonic() < deadline:
            session.scan()
            time.sleep(0.2)
        assert len(session.receivers) == 2
        described.clear()
        for _ in range(50):
            session.scan()
        assert described == [], described  # nothing new listed: no header read again
        outlets += [outlet("P3", tag), outlet("P4", f"other-{tag}")]
        deadline = time.monotonic() + 15
        while len(session.receivers) < 3 and time.monotonic() < deadline:
            session.scan()
            time.sleep(0.2)
        for _ in range(20):
            session.scan()
        assert len(session.receivers) == 3
        ours = [sid for sid in described if tag in sid]
        assert sorted(set(ours)) == sorted([f"{tag}-P3", f"other-{tag}-P4"])
        assert len(ours) == len(set(ours)), described  # each new uid read once
    finally:
        session.close()
        del outlets


# --------------------------------------------------------------------------- clock offsets (issue 21, part 2)
# liblsl (pylsl 1.18.6) measures an inlet's clock offset every TimeUpdateInterval (2 s) from its first
# time_correction() / proc_clocksync pull on, and each round leaves one more receive pending on the inlet's UDP
# socket until the inlet is destroyed (~250 bytes a round): a receiver's memory grew with wall time.


def _outlet(tag: str, srate: float = 32.0):
    info = pylsl.StreamInfo("P1 E4 EDA", "EDA", 1, srate, pylsl.cf_float32, tag)
    info.desc().append_child_value("manufacturer", "Empatica")
    return pylsl.StreamOutlet(info)


def _resolve(tag: str):
    found = pylsl.resolve_byprop("source_id", tag, 1, 10.0)
    assert found, f"stream {tag} not found"
    return found[0]


def test_a_clock_offset_is_what_time_correction_measures_and_goes_on_across_renewals():
    import time
    import uuid

    from attune_monitor.acquisition.lsl import ClockOffset

    tag = f"clockoffset-{uuid.uuid4().hex[:8]}"
    outlet = _outlet(tag)
    info = _resolve(tag)
    reference = pylsl.StreamInlet(info, recover=False)
    clock = ClockOffset(info, renew_s=2.5)
    try:
        first = clock.measure(5.0)
        assert first is not None
        expected = reference.time_correction(5.0)
        # the same machine's clock, measured by liblsl's own NTP-like probes: both within a few ms of 0 and equal
        assert abs(first - expected) < 0.005 and abs(first) < 0.005, (first, expected)
        deadline = time.monotonic() + 20
        while clock.renewals < 2 and time.monotonic() < deadline:
            value = clock.measure()
            assert value is not None and abs(value - expected) < 0.005
            time.sleep(0.05)
        assert clock.renewals >= 2  # each successor measured, then took over
    finally:
        clock.close()
        del reference, outlet


_RECEIVERS_SCRIPT = """
import ctypes, json, sys, time, uuid
import numpy as np
from attune_monitor.acquisition import lsl
from attune_monitor.acquisition.inlet import StreamReceiver
from attune_monitor.acquisition.lsl import pylsl

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
def in_use():
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)

n, seconds = int(sys.argv[1]), float(sys.argv[2])
lsl.CLOCK_RENEW_S = float(sys.argv[3])
tag = "clockmem-" + uuid.uuid4().hex[:8]
outlet = pylsl.StreamOutlet(pylsl.StreamInfo("P1 E4 EDA", "EDA", 1, 32.0, pylsl.cf_float32, tag))
info = pylsl.resolve_byprop("source_id", tag, 1, 10.0)[0]
receivers = [StreamReceiver(info, buffer_seconds=10.0, poll_interval=0.05).start() for _ in range(n)]
floors = {}
t0 = time.monotonic()
sent = 0
while (elapsed := time.monotonic() - t0) < seconds:
    due = int(elapsed * 32.0)
    if due > sent:
        outlet.push_chunk(np.full((due - sent, 1), 5.0, np.float32))
        sent = due
    window = int(elapsed // 5)
    floors[window] = min(floors.get(window, 1 << 62), in_use())
    time.sleep(0.05)
states = [r.state for r in receivers]
written = [r.buffer.n_written for r in receivers]
for r in receivers:
    r.close()
print(json.dumps({"floors": [floors[w] for w in sorted(floors)], "states": states, "written": written}))
"""


def test_receivers_keep_no_memory_for_their_clock_synchronisation():
    """32 receivers on one stream for 50 s (in a process of their own: only they allocate): the C memory they
    hold stops growing once their time-only inlets are renewed (every 3 s here). With liblsl's ``proc_clocksync``
    on the data inlets it grew by ~250 bytes per inlet per 2-s round, ~100 kB over the 25 s measured, for as long
    as the receivers ran."""
    import json
    import os
    import subprocess
    import sys

    n = 32
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", _RECEIVERS_SCRIPT, str(n), "50", "3"], capture_output=True,
                          text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(s in ("connected", "noisy") for s in out["states"]), out["states"]
    assert min(out["written"]) > 1000
    floors = out["floors"]  # the least C memory in use of each 5-s window: what is held, not what is in flight
    # from 20-25 s (every receiver opened, its clock measured and renewed several times) to 45-50 s
    grown = floors[9] - floors[4]
    leak = n * 250 * 25 / 2.0  # what liblsl's clock synchronisation of the data inlets kept meanwhile: ~100 kB
    assert grown < 0.4 * leak, (grown, leak, [f - floors[4] for f in floors])
