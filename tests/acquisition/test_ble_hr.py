"""The BLE heart-rate bridge: Heart Rate Measurement parser, beat timing, bridge end to end, CLI.

Packets are built field by field from the Bluetooth SIG definition of the Heart
Rate Measurement characteristic (GATT Specification Supplement, "Heart Rate
Measurement"; the same layout as the SIG's org.bluetooth.characteristic.
heart_rate_measurement XML): flags (bit 0 uint16 HR, bits 1-2 sensor contact,
bit 3 energy expended uint16 kJ, bit 4 RR-intervals uint16 1/1024 s, oldest
first, to the end of the packet), all little-endian. The bridge runs against a
fake BLE client (no bleak, no radio) and publishes on loopback LSL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from attune_monitor.acquisition import ble_hr
from attune_monitor.acquisition.ble_hr import (
    CONTACT_DETECTED,
    CONTACT_NOT_DETECTED,
    CONTACT_NOT_SUPPORTED,
    BeatClock,
    HeartRateBridge,
    MalformedPacket,
    ReconnectPolicy,
    bluetooth_unavailable_reason,
    device_identity,
    parse_heart_rate_measurement,
)
from attune_monitor.acquisition.convention import describe

ROOT = Path(__file__).resolve().parents[2]


def build_packet(hr: int, *, hr16: bool = False, contact_bits: int = 0, energy: int | None = None,
                 rr: tuple[int, ...] | None = None, reserved: int = 0) -> bytes:
    """Assemble a Heart Rate Measurement value from its fields (independent of the parser)."""
    flags = (0x01 if hr16 else 0) | (contact_bits << 1) | (0x08 if energy is not None else 0) \
        | (0x10 if rr is not None else 0) | (reserved << 5)
    out = bytes([flags]) + (struct.pack("<H", hr) if hr16 else struct.pack("<B", hr))
    if energy is not None:
        out += struct.pack("<H", energy)
    if rr is not None:
        out += b"".join(struct.pack("<H", v) for v in rr)
    return out


_CONTACT = {0b00: CONTACT_NOT_SUPPORTED, 0b01: CONTACT_NOT_SUPPORTED, 0b10: CONTACT_NOT_DETECTED,
            0b11: CONTACT_DETECTED}


@pytest.mark.parametrize("hr16, contact_bits, with_energy, n_rr", list(itertools.product(
    (False, True), (0, 1, 2, 3), (False, True), (0, 1, 2, 3, 9))))
def test_every_flag_combination(hr16, contact_bits, with_energy, n_rr):
    hr = 300 if hr16 else 72  # a uint16 value above 255 proves both bytes are read
    energy = 0xBEEF if with_energy else None
    rr = tuple(700 + 37 * i for i in range(n_rr)) if n_rr else None
    m = parse_heart_rate_measurement(build_packet(hr, hr16=hr16, contact_bits=contact_bits, energy=energy, rr=rr))
    assert m.heart_rate == hr
    assert m.contact == _CONTACT[contact_bits]
    assert m.contact_lost == (contact_bits == 0b10)
    assert m.energy_expended == energy
    assert m.rr_ticks == (rr or ())
    np.testing.assert_allclose(m.rr_ms, np.array(rr or (), float) * 1000 / 1024)
    np.testing.assert_allclose(m.rr_s, np.array(rr or (), float) / 1024)


def test_reserved_bits_are_ignored_and_extremes_decode():
    m = parse_heart_rate_measurement(build_packet(0xFFFF, hr16=True, contact_bits=3, energy=0, rr=(0xFFFF, 1),
                                                  reserved=0b111))
    assert (m.heart_rate, m.contact, m.energy_expended, m.rr_ticks) == (65535, CONTACT_DETECTED, 0, (65535, 1))
    # Input types the BLE stacks hand over: bytearray (bleak), memoryview.
    pkt = build_packet(61, rr=(1000, 1010))
    assert parse_heart_rate_measurement(bytearray(pkt)) == parse_heart_rate_measurement(memoryview(pkt))


# Notifications captured from real devices, as published:
REAL_PACKETS = [
    # Polar H7, gatttool log in cal-id/Polar-H7-Pi README.md ("Notification handle = 0x0012 value: ...").
    ("06 3c", 60, CONTACT_DETECTED, None, ()),
    ("16 3c 11 04", 60, CONTACT_DETECTED, None, (0x0411,)),
    ("16 3c f5 03", 60, CONTACT_DETECTED, None, (0x03F5,)),
    # Unbranded BLE/ANT+ strap, gatttool log in Stack Overflow question 60599696
    # ("Garmin BLE heart rate monitor - cannot get HRM data via bluetooth").
    ("16 34 e4 04", 52, CONTACT_DETECTED, None, (1252,)),
    ("16 33 de 04", 51, CONTACT_DETECTED, None, (1246,)),
    # Garmin HRM-Dual, forums.garmin.com Connect IQ thread 319496 ("HRM Dual - extra data in heart rate
    # characteristic data"): two RR values, the second (53 ticks = 52 ms) is spurious per the thread but is
    # what the device sent; the parser reports it, artefact handling is the DSP's job.
    ("10 38 2d 04 35 00", 56, CONTACT_NOT_SUPPORTED, None, (0x042D, 0x0035)),
    # Strap in MIT App Inventor community thread 61569 ("How to interpret data from BLE heartrate monitor"),
    # received as little-endian shorts 13842, 1144 -> bytes 12 36 78 04: bit 1 set without bit 2 ("supported")
    # means contact is NOT supported, not "no contact".
    ("12 36 78 04", 54, CONTACT_NOT_SUPPORTED, None, (1144,)),
    ("02 36", 54, CONTACT_NOT_SUPPORTED, None, ()),
    # Polar H7 as a byte list [22, 77, 22, 3] in a Stack Overflow answer ("RR = 790/1024 = 0.77 s").
    (bytes([22, 77, 22, 3]).hex(" "), 77, CONTACT_DETECTED, None, (790,)),
]


@pytest.mark.parametrize("hexstr, hr, contact, energy, rr", REAL_PACKETS)
def test_packets_from_real_devices(hexstr, hr, contact, energy, rr):
    m = parse_heart_rate_measurement(bytes.fromhex(hexstr))
    assert (m.heart_rate, m.contact, m.energy_expended, m.rr_ticks) == (hr, contact, energy, rr)


def test_real_packet_rr_values_in_ms():
    # The Stack Overflow answer's own arithmetic: 790 / 1024 s = 0.77 s.
    assert parse_heart_rate_measurement(bytes([22, 77, 22, 3])).rr_s[0] == pytest.approx(0.7715, abs=1e-4)
    # cal-id/Polar-H7-Pi: 0x0411 = 1041 ticks = 1016.6 ms at 60 bpm, plausible.
    assert parse_heart_rate_measurement(bytes.fromhex("163c1104")).rr_ms[0] == pytest.approx(1016.6, abs=0.05)


@pytest.mark.parametrize("hexstr, match", [
    ("", "too short: 0 byte"),
    ("16", "too short: 1 byte"),
    ("01 3c", "uint16 heart rate"),              # uint16 HR, one byte present
    ("08 3c", "energy expended"),                 # energy flag, no energy bytes
    ("08 3c 01", "energy expended"),              # energy cut in half
    ("10 3c", "RR-intervals"),                    # RR flag, no RR bytes
    ("10 3c 11", "RR-intervals"),                 # RR cut in half
    ("16 3c 11 04 f5", "RR-intervals"),           # second RR cut in half
    ("19 3c 00 10 00 11", "RR-intervals"),        # uint16 HR + energy + a single stray RR byte
])
def test_malformed_packets_raise_a_clear_error(hexstr, match):
    with pytest.raises(MalformedPacket, match=match):
        parse_heart_rate_measurement(bytes.fromhex(hexstr))


# --------------------------------------------------------------------------- beat timing


def _true_beats(rng, n, start=1000.0):
    rr = rng.uniform(0.6, 1.1, n)
    return rr, start + np.cumsum(rr)


def _notifications(rng, rr, beats):
    """Split beats into notifications of 0-3 beats, as straps do at ~1 Hz."""
    out, i = [], 0
    while i < len(rr):
        k = int(rng.integers(1, 4))
        out.append((i, min(i + k, len(rr))))
        i += k
    return out


def test_beat_clock_chains_exact_beat_times_despite_jittered_arrival(rng):
    rr, beats = _true_beats(rng, 300)
    clock = BeatClock()
    got, expected_offset = [], []
    best = np.inf
    for a, b in _notifications(rng, rr, beats):
        latency = rng.uniform(0.0, 0.5)  # the notification arrives a little after its newest beat
        best = min(best, latency)
        got.append(clock.assign(beats[b - 1] + latency, rr[a:b]))
        expected_offset += [best] * (b - a)
    got = np.concatenate(got)
    assert np.all(np.diff(got) > 0)
    # Chaining reproduces the true beat times up to a constant offset, the smallest notification latency seen
    # so far: the chain re-anchors only when a notification proves it too late (a beat after its arrival).
    np.testing.assert_allclose(got - beats, expected_offset, atol=1e-9)
    assert got[-1] - beats[-1] < 0.01  # 300 beats in, the offset is within 10 ms of the true beat time


def test_beat_clock_reanchors_after_lost_beats_and_on_a_fast_device_clock(rng):
    rr, beats = _true_beats(rng, 60)
    clock = BeatClock(max_lag=2.5)
    t1 = clock.assign(beats[9] + 0.2, rr[:10])
    # 5 beats lost on the radio (> 2.5 s): re-anchored on the arrival, newest beat at arrival.
    t2 = clock.assign(beats[19] + 0.2, rr[15:20])
    np.testing.assert_allclose(t2, beats[15:20] + 0.2, atol=1e-9)
    assert t2[0] > t1[-1]
    # Device clock 2 % fast: RR values too long, the chain would overtake the arrivals; never a beat after
    # its own notification arrived, and still strictly increasing.
    last = t2[-1]
    for a in range(20, 60, 2):
        arrival = beats[a + 1] + 0.05
        t = clock.assign(arrival, rr[a:a + 2] * 1.02)
        assert t[-1] <= arrival + 1e-12
        assert t[0] > last
        last = t[-1]


def test_beat_clock_stays_monotonic_when_reanchoring_would_go_back():
    clock = BeatClock()
    t1 = clock.assign(100.0, [1.0])
    clock.reanchor()
    t2 = clock.assign(100.3, [1.0, 0.2])  # walking back would put the first beat at 99.1 < 100.0
    assert t2[0] > t1[-1] and t2[1] > t2[0]
    assert t2[-1] == pytest.approx(100.3)
    assert clock.assign(100.4, []).size == 0


# --------------------------------------------------------------------------- device names, Bluetooth errors


@pytest.mark.parametrize("name, expected", [
    ("Polar H10 8554112A", ("Polar", "H10")),  # the name in spectHR's real XDF ('Polar H10 8554112A_ecg')
    ("Polar OH1 A4F6C92B", ("Polar", "OH1")),
    ("Polar Sense B5C3A82F", ("Polar", "Sense")),
    ("TICKR 2A3F", ("Wahoo", "TICKR")),
    ("HRM-Dual:929843", ("Garmin", "HRM-Dual")),  # as in the Garmin forum thread above
    ("Movesense 234130000540", ("Movesense", "Movesense")),  # serial as in tutorial_dyadic_movesense
    ("COOSPO H6 0012345", ("Coospo", "H6")),
    ("Mystery Band", ("unknown", "Mystery Band")),
    ("", ("unknown", "BLE HR")),
])
def test_device_identity_from_ble_names(name, expected):
    assert device_identity(name) == expected


def test_bluetooth_unavailable_reasons_without_bleak():
    assert "no D-Bus system bus" in bluetooth_unavailable_reason(FileNotFoundError(2, "No such file or directory"))
    assert bluetooth_unavailable_reason(TimeoutError()) is None
    assert bluetooth_unavailable_reason(OSError("le-connection-abort-by-local")) is None


def test_bluetooth_unavailable_reasons_from_real_bleak_exceptions():
    exc = pytest.importorskip("bleak.exc")
    no_bluez = exc.BleakDBusError("org.freedesktop.DBus.Error.ServiceUnknown",
                                  ["The name org.bluez was not provided by any .service files"])
    assert "BlueZ is not running" in bluetooth_unavailable_reason(no_bluez)
    assert "systemctl start bluetooth" in bluetooth_unavailable_reason(no_bluez)
    assert "powered off" in bluetooth_unavailable_reason(
        exc.BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"]))
    assert "no Bluetooth adapter" in bluetooth_unavailable_reason(exc.BleakError("No Bluetooth adapters found."))
    assert "no Bluetooth adapters found" in bluetooth_unavailable_reason(exc.BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", exc.BleakBluetoothNotAvailableReason.NO_BLUETOOTH))
    # A D-Bus error during a connection is a reason to retry, not to stop.
    assert bluetooth_unavailable_reason(exc.BleakDBusError("org.bluez.Error.Failed", ["le-connection-abort"])) is None


# --------------------------------------------------------------------------- scanning


class _Adv:
    def __init__(self, name, rssi, uuids):
        self.local_name, self.rssi, self.service_uuids = name, rssi, uuids


class _Dev:
    def __init__(self, name, address):
        self.name, self.address = name, address


def _fake_discover(devices):
    async def discover(timeout, return_adv, service_uuids):
        assert return_adv and service_uuids == [ble_hr.HEART_RATE_SERVICE_UUID]
        return {addr: (_Dev(name, addr), _Adv(name, rssi, uuids)) for name, addr, rssi, uuids in devices}
    return discover


def test_scan_lists_hr_devices_strongest_first_and_resolve_picks_or_explains():
    hrs = [ble_hr.HEART_RATE_SERVICE_UUID]
    devices = [("Polar H10 8554112A", "AA:00", -70, hrs), ("TICKR 2A3F", "AA:01", -50, hrs),
               ("Speaker", "AA:02", -30, ["0000110b-0000-1000-8000-00805f9b34fb"])]
    found = asyncio.run(ble_hr.scan_heart_rate_devices(0.1, _fake_discover(devices)))
    assert [(d.name, d.address, d.rssi) for d in found] == [("TICKR 2A3F", "AA:01", -50),
                                                            ("Polar H10 8554112A", "AA:00", -70)]
    d = asyncio.run(ble_hr.resolve_device(None, "8554112a", 0.1, _fake_discover(devices)))
    assert d.address == "AA:00"
    with pytest.raises(LookupError, match=r"Several heart-rate devices found \(TICKR 2A3F AA:01.*--address"):
        asyncio.run(ble_hr.resolve_device(None, None, 0.1, _fake_discover(devices)))
    with pytest.raises(LookupError, match="No heart-rate device named like 'Garmin'.*--scan"):
        asyncio.run(ble_hr.resolve_device(None, "Garmin", 0.1, _fake_discover(devices)))

    async def no_dbus(**kwargs):
        raise FileNotFoundError(2, "No such file or directory")
    with pytest.raises(ble_hr.BluetoothUnavailable, match="no D-Bus system bus"):
        asyncio.run(ble_hr.scan_heart_rate_devices(0.1, no_dbus))


# --------------------------------------------------------------------------- the bridge end to end


class FakeClock:
    """Virtual arrival times, set by the fake client just before it delivers a notification."""

    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


class FakeBleClient:
    """Stands in for bleak.BleakClient: plays one scripted session of notifications, then drops out."""

    def __init__(self, session, address, disconnected_callback, clock, gate):
        self.session, self.address, self._dropped = session, address, disconnected_callback
        self.clock, self.gate = clock, gate
        self.name = "Polar H10 0A1B2C3D"
        self.disconnects = 0

    async def connect(self):
        if self.session.get("fail"):
            raise OSError("[org.bluez.Error.Failed] le-connection-abort-by-local")
        await asyncio.sleep(0.01)

    async def start_notify(self, char, callback):
        assert char == ble_hr.HEART_RATE_MEASUREMENT_UUID
        asyncio.get_running_loop().create_task(self._play(callback))

    async def _play(self, callback):
        deadline = time.monotonic() + 10.0
        while not self.gate.is_set() and time.monotonic() < deadline:  # wait (bounded) for the test's inlets
            await asyncio.sleep(0.01)
        for arrival, packet in self.session["packets"]:
            self.clock.t = arrival
            callback(None, bytearray(packet))
            await asyncio.sleep(0.005)
        if self.session.get("drop"):
            self._dropped(self)
        else:
            self.session["done"].set()

    async def disconnect(self):
        self.disconnects += 1


def _script(t0, rng):
    """Three sessions: notifications then a drop-out; a failed reconnect; notifications again.

    Returns the sessions and, in publication order, the true beat times, the offset the beat clock should
    add to them (the smallest notification latency so far in the session), RR ticks and HR values.
    """
    rr1 = [[1024], [990, 980], [1000], [], [1010]]
    lat1 = [0.15, 0.40, 0.30, 0.5, 0.25]
    flags1 = [dict(contact_bits=3), dict(contact_bits=3), dict(), dict(contact_bits=2), dict(contact_bits=3)]
    hr1 = [60, 62, 63, 0, 61]
    rr3 = [[1030, 1040], [1000], [1020, 1015, 1005]]
    lat3 = [0.35, 0.20, 0.50]
    flags3 = [dict(hr16=True, contact_bits=3), dict(contact_bits=3, energy=120), dict(contact_bits=3)]
    hr3 = [64, 65, 66]

    beats, offsets, ticks, hrs, packets = [], [], [], [], {1: [], 3: []}
    t = t0
    for session, (rrs, lats, flags, hr_values) in {1: (rr1, lat1, flags1, hr1), 3: (rr3, lat3, flags3, hr3)}.items():
        if session == 3:
            t += 6.0  # the strap is out of range for 6 s: these beats are lost
        best = np.inf
        for rr, lat, fl, hr in zip(rrs, lats, flags, hr_values):
            for v in rr:
                t += v / 1024
                beats.append(t)
                ticks.append(v)
            if rr:
                best = min(best, lat)
                offsets += [best] * len(rr)
            packets[session].append((t + lat, build_packet(hr, rr=tuple(rr) if rr else None, **fl)))
            hrs.append(hr)
    # malformed packets in between: logged and skipped
    packets[1].insert(2, (t0 + 2.5, bytes.fromhex("10")))
    packets[1].insert(3, (t0 + 2.6, bytes.fromhex("19 3c 00 10 00 11")))
    done = threading.Event()
    sessions = [dict(packets=packets[1], drop=True, done=done), dict(fail=True, packets=[], done=done),
                dict(packets=packets[3], drop=False, done=done)]
    return sessions, np.array(beats), np.array(offsets), np.array(ticks), np.array(hrs, float), done


def _pull_all(inlet, n, timeout):
    values, stamps = [], []
    deadline = time.monotonic() + timeout
    while len(values) < n and time.monotonic() < deadline:
        chunk, ts = inlet.pull_chunk(timeout=0.1)
        values += [c[0] for c in chunk]
        stamps += list(ts)
    return np.array(values), np.array(stamps)


def test_bridge_end_to_end_with_fake_client_drop_out_and_reconnect(rng, caplog):
    from attune_monitor.acquisition.lsl import pylsl

    sid = f"test-blehr-{uuid.uuid4()}"
    t0 = pylsl.local_clock() + 1.0
    sessions, beats, offsets, ticks, hrs, done = _script(t0, rng)
    clock = FakeClock(t0)
    gate = threading.Event()
    clients = []
    it = iter(sessions)

    def factory(address, disconnected_callback):
        c = FakeBleClient(next(it), address, disconnected_callback, clock, gate)
        clients.append(c)
        return c

    statuses = []
    bridge = HeartRateBridge("0A:1B:2C:3D:4E:5F", "P7", client_factory=factory, source_id=sid, clock=clock,
                             policy=ReconnectPolicy(first_delay=0.05, max_delay=0.2, max_attempts=3,
                                                    connect_timeout=2.0),
                             on_status=lambda s: statuses.append(s.state))
    errors = []

    def runner():
        try:
            asyncio.run(bridge.run(duration=30.0))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    caplog.set_level(logging.INFO, logger="attune_monitor.acquisition.ble_hr")
    thread = threading.Thread(target=runner, daemon=True)
    thread.start()
    rr_inlet = hr_inlet = None
    try:
        rr_info = pylsl.resolve_byprop("source_id", f"{sid}-RR", 1, 10.0)
        hr_info = pylsl.resolve_byprop("source_id", f"{sid}-HR", 1, 10.0)
        assert rr_info and hr_info, "the bridge's outlets did not appear on LSL"
        rr_inlet = pylsl.StreamInlet(rr_info[0], max_buflen=60)
        hr_inlet = pylsl.StreamInlet(hr_info[0], max_buflen=60)
        # The full headers follow the convention: the monitor needs no roster.
        rr_desc, hr_desc = describe(rr_inlet.info(5.0).as_xml()), describe(hr_inlet.info(5.0).as_xml())
        assert (rr_desc.kind, rr_desc.participant, rr_desc.unit, rr_desc.scale) == ("rr", "P7", "ms", 1e-3)
        assert (hr_desc.kind, hr_desc.participant, hr_desc.unit, hr_desc.scale) == ("hr", "P7", "bpm", 1.0)
        assert (rr_desc.manufacturer, rr_desc.device, rr_desc.name) == ("Polar", "H10", "P7 Polar H10 RR")
        assert rr_desc.srate == 0.0 and hr_desc.srate == 0.0
        rr_inlet.open_stream(timeout=5.0)
        hr_inlet.open_stream(timeout=5.0)
        gate.set()
        rr_vals, rr_ts = _pull_all(rr_inlet, len(ticks), 10.0)
        hr_vals, hr_ts = _pull_all(hr_inlet, len(hrs), 10.0)
        assert done.wait(10.0)
    finally:
        bridge.stop()
        thread.join(10.0)
        if rr_inlet is not None:
            rr_inlet.close_stream()
            hr_inlet.close_stream()
        bridge.close()
    assert not thread.is_alive() and not errors, errors
    # Every RR interval and HR value arrives as sent (float32 on the wire).
    np.testing.assert_allclose(rr_vals, ticks * 1000 / 1024, rtol=1e-6)
    np.testing.assert_array_equal(hr_vals, hrs)
    # Beat times: strictly increasing; the true beat times plus the smallest latency seen, both before the
    # drop-out (walk back, then chaining) and after the reconnect (re-anchored on its first arrival).
    assert np.all(np.diff(rr_ts) > 0)
    np.testing.assert_allclose(rr_ts, beats + offsets, atol=1e-6)
    assert np.all(np.diff(hr_ts) > 0)
    # Drop-out, failed attempt, reconnect, contact loss and malformed packets are all visible.
    assert statuses.count("connected") == 2 and "lost" in statuses and statuses.count("waiting") >= 2
    assert "contact_lost" in statuses and "contact_ok" in statuses
    assert bridge.n_malformed == 2 and bridge.n_connections == 2
    text = caplog.text
    assert "skipped a malformed packet: Heart Rate Measurement too short" in text
    assert "announce RR-intervals" in text
    assert "could not connect" in text and "no skin contact" in text


def test_bridge_gives_up_after_bounded_attempts_and_stops_on_missing_bluetooth():
    attempts = []

    def unreachable(address, cb):
        class C:
            name = ""

            async def connect(self):
                attempts.append(time.monotonic())
                raise TimeoutError("device not found")

            async def disconnect(self):
                pass
        return C()

    bridge = HeartRateBridge("AA", "P1", client_factory=unreachable, clock=lambda: 0.0,
                             policy=ReconnectPolicy(first_delay=0.02, max_delay=0.05, max_attempts=4))
    t = time.monotonic()
    with pytest.raises(ble_hr.GaveUp, match="gave up after 4 failed connection attempts"):
        asyncio.run(asyncio.wait_for(bridge.run(), 10.0))
    assert len(attempts) == 4 and time.monotonic() - t < 5.0
    # Backoff grows and is capped: 0.02, 0.04, 0.05.
    gaps = np.diff(attempts)
    assert gaps[0] >= 0.015 and gaps[1] >= 0.035 and np.all(gaps < 1.0)

    def no_dbus(address, cb):
        raise FileNotFoundError(2, "No such file or directory")

    bridge = HeartRateBridge("AA", "P1", client_factory=no_dbus, clock=lambda: 0.0)
    with pytest.raises(ble_hr.BluetoothUnavailable, match="no D-Bus system bus"):
        asyncio.run(asyncio.wait_for(bridge.run(), 10.0))


def test_a_broken_notification_handler_never_kills_the_callback(caplog):
    bridge = HeartRateBridge("AA", "P1", client_factory=lambda a, c: None, clock=lambda: 5.0,
                             on_measurement=lambda m: 1 / 0)
    bridge._notify_callback(None, bytearray(b"\x16\x3c\x11\x04"))
    assert "error handling a notification" in caplog.text
    assert bridge.handle_notification(b"\x01") is None and bridge.n_malformed == 1


# --------------------------------------------------------------------------- the CLI


def _cli(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_cli_without_bluetooth_says_what_is_missing():
    pytest.importorskip("bleak")
    if Path("/var/run/dbus/system_bus_socket").exists() or Path("/run/dbus/system_bus_socket").exists():
        pytest.skip("this computer has a D-Bus system bus: the no-Bluetooth path cannot be shown here")
    r = _cli("bridge", "ble-hr", "--scan", "--scan-time", "1")
    assert r.returncode == 2, r
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["attune bridge: error: Bluetooth is not available: no D-Bus system bus was found, which "
                     "bleak needs to talk to BlueZ; install and start BlueZ (e.g. 'sudo apt install bluez && "
                     "sudo systemctl start bluetooth'), or run the bridge on a computer with Bluetooth."], r.stderr
    r = _cli("bridge", "ble-hr", "--address", "AA:BB:CC:DD:EE:FF", "--participant", "P1")
    assert r.returncode == 2 and "Bluetooth is not available" in r.stderr and "Traceback" not in r.stderr


def test_cli_usage_errors():
    r = _cli("bridge", "ble-hr", "--address", "AA:BB:CC:DD:EE:FF")
    assert r.returncode == 2 and "--participant is required" in r.stderr
    r = _cli("bridge", "ble-hr", "--scan", "--scan-time", "0")
    assert r.returncode == 2 and "Invalid value for '--scan-time'" in r.stderr
    r = _cli("bridge")
    assert r.returncode == 2 and "expected one of: ble-hr" in r.stderr
