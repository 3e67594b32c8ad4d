"""A live session says each assignment warning once, not on every rescan.

``LiveSession.scan`` assigns the visible streams again every few seconds; a stream whose header names no participant
used to log "names no participant" on each of those rescans (every 2 s for the whole session).
"""

from __future__ import annotations

import logging
import time
import uuid

from attune_monitor.acquisition.lsl import pylsl, stream_xml
from attune_monitor.acquisition.roster import assign


def test_a_warning_is_logged_once_per_session_and_still_reported(caplog):
    from attune_monitor.acquisition.live import LiveSession

    tag = f"warnonce-{uuid.uuid4().hex[:8]}"
    outlets = []
    for serial in ("A1", "B2"):  # two devices, neither naming its wearer
        info = pylsl.StreamInfo(f"E4 EDA {serial}", "EDA", 1, 4.0, pylsl.cf_float32, f"{tag}-{serial}")
        info.desc().append_child_value("manufacturer", "Empatica")
        outlets.append(pylsl.StreamOutlet(info))
    session = LiveSession(match=f"{tag}*", rescan_interval=3600.0, discover_timeout=2.0).start()
    try:
        with caplog.at_level(logging.WARNING):
            deadline = time.monotonic() + 15
            while len(session.receivers) < 2 and time.monotonic() < deadline:
                session.scan()
                time.sleep(0.2)
            assert len(session.receivers) == 2
            for _ in range(10):
                session.scan()
        said = [r.getMessage() for r in caplog.records if "names no participant" in r.getMessage()]
        # once per device, however many rescans
        assert len(said) == 2 and len(set(said)) == 2, said
        # the status (what the views show) still carries both, on every read
        status = session.status()
        assert sum("names no participant" in w for w in status.warnings) == 2
    finally:
        session.close()


def test_assign_without_logging_returns_the_same_warnings(caplog):
    from attune_monitor.acquisition.convention import describe

    info = pylsl.StreamInfo("Polar H10 1234ABCD RR", "RR", 1, 0.0, pylsl.cf_float32, "warnonce-rr")
    d = describe(stream_xml(info))
    with caplog.at_level(logging.WARNING, logger="attune_monitor.acquisition.roster"):
        quiet = assign([d], log=False)
        assert caplog.records == []
        loud = assign([d])
    assert quiet.warnings == loud.warnings and len(loud.warnings) == 1
    assert [r.getMessage() for r in caplog.records] == loud.warnings
