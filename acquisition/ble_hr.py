"""Bluetooth LE heart-rate straps to LSL: parser of the Heart Rate Measurement and the bridge.

Any device exposing the standard Heart Rate Service (0x180D) works: Polar
H10/H9/OH1/Verity Sense, Wahoo TICKR, Garmin HRM straps and watches in HR
broadcast mode, Movesense, Coospo ...

Each notification of the Heart Rate Measurement characteristic (0x2A37) is
(Bluetooth SIG, GATT Specification Supplement, "Heart Rate Measurement")::

    byte 0        flags
                    bit 0    heart-rate value format: 0 = uint8, 1 = uint16
                    bits 1-2 sensor contact: 0b0x not supported, 0b10 supported
                             but not detected, 0b11 supported and detected
                    bit 3    energy expended present (uint16, kJ)
                    bit 4    RR-intervals present (uint16 each, 1/1024 s)
                    bits 5-7 reserved (ignored)
    bytes 1(-2)   heart rate, bpm
    [2 bytes]     energy expended, kJ, little-endian
    [2*n bytes]   RR intervals, oldest first, little-endian, to the end of the packet

The bridge publishes two LSL streams per device following
:mod:`attune_monitor.acquisition.convention`: ``RR`` (one sample per beat, ms, irregular
rate) and ``HR`` (one sample per notification, bpm, irregular rate), each
with the participant, manufacturer and device in its desc, so the monitor
assigns them with no roster.

Beat times
----------
The strap sends the RR intervals of the beats since its last notification,
about once a second. The newest beat happened at most one notification period
before the notification arrived. :class:`BeatClock` assigns beat times by
walking back from the arrival time through the intervals for the first
notification, then chains each new beat onto the previous one (beat time =
previous beat + RR), which keeps the series continuous and exact as long as no
beat was lost. It re-anchors on the arrival time when the chain would put a
beat after its own notification arrived (device clock faster than ours) or
lags the arrival by more than ``max_lag`` seconds (beats lost on the radio, or
a reconnect). The offset between assigned and true beat times therefore
settles on the smallest notification latency seen (a few ms after a minute
with a 1 Hz strap), and stays constant while the chain holds, so RR intervals
and beat times agree exactly. Beat times are strictly increasing across
notifications and reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from attune_monitor.errors import AttuneError

from .convention import desc_fields

__all__ = [
    "HEART_RATE_SERVICE_UUID", "HEART_RATE_MEASUREMENT_UUID", "RR_TICKS_PER_SECOND", "CONTACT_NOT_SUPPORTED",
    "CONTACT_NOT_DETECTED", "CONTACT_DETECTED", "MalformedPacket", "HeartRateMeasurement",
    "parse_heart_rate_measurement", "BeatClock", "device_identity", "BluetoothUnavailable",
    "bluetooth_unavailable_reason", "FoundDevice", "scan_heart_rate_devices", "HeartRateClient", "ClientFactory",
    "bleak_client_factory", "ReconnectPolicy", "BridgeStatus", "GaveUp", "HeartRateBridge", "resolve_device"
]

logger = logging.getLogger(__name__)

#: Heart Rate Service and Heart Rate Measurement characteristic, as 128-bit UUID strings.
HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"

#: RR intervals come in 1/1024 s ticks.
RR_TICKS_PER_SECOND = 1024

_FLAG_HR_UINT16 = 0x01
_FLAG_CONTACT_DETECTED = 0x02
_FLAG_CONTACT_SUPPORTED = 0x04
_FLAG_ENERGY = 0x08
_FLAG_RR = 0x10

#: Sensor-contact states, from flag bits 1-2.
CONTACT_NOT_SUPPORTED = "not_supported"
CONTACT_NOT_DETECTED = "not_detected"
CONTACT_DETECTED = "detected"


class MalformedPacket(ValueError, AttuneError):
    """A Heart Rate Measurement notification that does not follow the specification."""


@dataclass(frozen=True)
class HeartRateMeasurement:
    """One decoded Heart Rate Measurement notification.

    Attributes
    ----------
    flags : int
        The raw flags byte.
    heart_rate : int
        Heart rate in beats per minute, as sent.
    contact : str
        ``"not_supported"``, ``"not_detected"`` or ``"detected"``.
    energy_expended : int | None
        Cumulative energy expended in kilojoules, when present.
    rr_ticks : tuple of int, shape (n_rr,)
        RR intervals in 1/1024 s, oldest first (empty when none were sent).
    """

    flags: int
    heart_rate: int
    contact: str
    energy_expended: int | None
    rr_ticks: tuple[int, ...]

    @property
    def rr_ms(self) -> np.ndarray:
        """RR intervals in milliseconds, shape (n_rr,), oldest first."""
        return np.asarray(self.rr_ticks, dtype=float) * (1000.0 / RR_TICKS_PER_SECOND)

    @property
    def rr_s(self) -> np.ndarray:
        """RR intervals in seconds, shape (n_rr,), oldest first."""
        return np.asarray(self.rr_ticks, dtype=float) / RR_TICKS_PER_SECOND

    @property
    def contact_lost(self) -> bool:
        """True when the device supports contact detection and reports no skin contact."""
        return self.contact == CONTACT_NOT_DETECTED


def parse_heart_rate_measurement(data: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    """Decode one Heart Rate Measurement (0x2A37) notification.

    Parameters
    ----------
    data : bytes-like, shape (n_bytes,)
        The characteristic value as delivered by the notification.

    Returns
    -------
    measurement : HeartRateMeasurement

    Raises
    ------
    MalformedPacket
        When the packet is shorter than its flags say (heart-rate value,
        energy expended or RR-intervals missing or cut in half).
    """
    buf = bytes(data)
    if len(buf) < 2:
        raise MalformedPacket(
            f"Heart Rate Measurement too short: {len(buf)} byte(s) ({buf.hex(' ') or 'empty'}); "
            "expected at least flags + a heart-rate byte."
        )
    flags = buf[0]
    pos = 1
    if flags & _FLAG_HR_UINT16:
        if len(buf) < pos + 2:
            raise MalformedPacket(
                f"Heart Rate Measurement {buf.hex(' ')}: flags 0x{flags:02x} announce a uint16 heart rate "
                f"but only {len(buf) - pos} byte(s) follow the flags."
            )
        (hr,) = struct.unpack_from("<H", buf, pos)
        pos += 2
    else:
        hr = buf[pos]
        pos += 1
    if flags & _FLAG_CONTACT_SUPPORTED:
        contact = CONTACT_DETECTED if flags & _FLAG_CONTACT_DETECTED else CONTACT_NOT_DETECTED
    else:
        # Bit 1 means nothing when bit 2 (feature supported) is clear.
        contact = CONTACT_NOT_SUPPORTED
    energy = None
    if flags & _FLAG_ENERGY:
        if len(buf) < pos + 2:
            raise MalformedPacket(
                f"Heart Rate Measurement {buf.hex(' ')}: flags 0x{flags:02x} announce energy expended "
                f"(2 bytes at offset {pos}) but only {len(buf) - pos} byte(s) remain."
            )
        (energy,) = struct.unpack_from("<H", buf, pos)
        pos += 2
    rr: tuple[int, ...] = ()
    rest = len(buf) - pos
    if flags & _FLAG_RR:
        if rest == 0 or rest % 2:
            raise MalformedPacket(
                f"Heart Rate Measurement {buf.hex(' ')}: flags 0x{flags:02x} announce RR-intervals "
                f"(2 bytes each from offset {pos}) but {rest} byte(s) remain."
            )
        rr = struct.unpack_from(f"<{rest // 2}H", buf, pos)
    elif rest:
        # Not an error: devices may append vendor bytes; the specification has no field there.
        logger.debug("Heart Rate Measurement %s: %d trailing byte(s) ignored", buf.hex(" "), rest)
    return HeartRateMeasurement(flags, int(hr), contact, energy, tuple(int(v) for v in rr))


# --------------------------------------------------------------------------- beat timing


@dataclass
class BeatClock:
    """Assigns LSL times to the beats of successive notifications (streaming state).

    Parameters
    ----------
    max_lag : float
        Seconds. When the chained newest beat lags its notification's arrival
        by more than this, beats were lost (or the device reconnected) and the
        clock re-anchors on the arrival time.
    min_step : float
        Seconds. Smallest spacing forced between consecutive beat times when
        re-anchoring would otherwise make them go backwards.

    Attributes
    ----------
    last_beat : float | None
        Time of the newest beat assigned so far.
    """

    max_lag: float = 2.5
    min_step: float = 1e-3
    last_beat: float | None = None
    _anchor_next: bool = field(default=True, repr=False)

    def reanchor(self) -> None:
        """Take the next notification's arrival time as the reference (after a reconnect)."""
        self._anchor_next = True

    def assign(self, arrival: float, rr_s) -> np.ndarray:
        """Beat times for the RR intervals of one notification.

        Parameters
        ----------
        arrival : float
            When the notification arrived, in LSL seconds (``pylsl.local_clock()``).
        rr_s : array-like, shape (n_rr,)
            The notification's RR intervals in seconds, oldest first.

        Returns
        -------
        times : ndarray, shape (n_rr,)
            Time of the beat that ends each interval, strictly increasing and
            later than every beat assigned before.
        """
        rr = np.asarray(rr_s, dtype=float).reshape(-1)
        if rr.size == 0:
            return np.empty(0)
        cum = np.cumsum(rr)
        walked = arrival - (cum[-1] - cum)  # newest beat at arrival, walking back
        if self.last_beat is None or self._anchor_next:
            times = walked
        else:
            chained = self.last_beat + cum
            lag = arrival - chained[-1]
            if lag < 0:
                logger.debug("beat chain %.3f s ahead of arrival: re-anchoring", -lag)
                times = walked
            elif lag > self.max_lag:
                logger.info("beat chain lags arrival by %.2f s (beats lost?): re-anchoring", lag)
                times = walked
            else:
                times = chained
        if self.last_beat is not None:
            # Strictly increasing across notifications, whatever the anchor did.
            floor = self.last_beat + self.min_step * np.arange(1, rr.size + 1)
            times = np.maximum(times, floor)
            times = np.maximum.accumulate(times)
        self.last_beat = float(times[-1])
        self._anchor_next = False
        return times


# --------------------------------------------------------------------------- device identity

# BLE advertised names of HR devices -> manufacturer. Names from the vendors' apps and manuals.
_MANUFACTURERS = (
    (r"^polar\b", "Polar"),
    (r"^tickr\b", "Wahoo"),
    (r"^wahoo\b", "Wahoo"),
    (r"^hrm[-_ ]?(dual|pro|fit|run|tri|600|200)?\b", "Garmin"),
    (r"^(forerunner|fenix|f[eē]nix|venu|vivoactive|epix|instinct|enduro)\b", "Garmin"),
    (r"^movesense\b", "Movesense"),
    (r"^coospo\b", "Coospo"),
    (r"^(h6|h808s|hw807|hw9)\b", "Coospo"),
    (r"^decathlon\b", "Decathlon"),
    (r"^suunto\b", "Suunto"),
    (r"^(magene|scosche|rhythm)\b", None),
)


def device_identity(ble_name: str | None) -> tuple[str, str]:
    """Manufacturer and device model from a BLE advertised name.

    Parameters
    ----------
    ble_name : str | None
        E.g. ``"Polar H10 8554112A"``, ``"TICKR 2A3F"``, ``"HRM-Dual:929843"``.

    Returns
    -------
    manufacturer, device : str, str
        ``("Polar", "H10")``, ``("Wahoo", "TICKR")``, ``("Garmin", "HRM-Dual")``;
        ``("unknown", <name>)`` for names not recognised.
    """
    name = (ble_name or "").strip()
    if not name:
        return "unknown", "BLE HR"
    low = name.lower()
    for pattern, manufacturer in _MANUFACTURERS:
        if re.match(pattern, low):
            words = re.split(r"[\s:]+", name)
            if manufacturer and words[0].lower() == manufacturer.lower() and len(words) > 1:
                model_words = words[1:]
            else:
                model_words = words
            # Drop a trailing serial number / id (hex or digits, 4+ chars).
            if len(model_words) > 1 and re.fullmatch(r"[0-9A-Fa-f]{4,}", model_words[-1]):
                model_words = model_words[:-1]
            elif len(model_words) == 1 and re.fullmatch(r"[0-9A-Fa-f]{4,}", model_words[0]):
                model_words = words[:1]  # "Movesense 234130000540": the model is the brand name
            return manufacturer or words[0], " ".join(model_words)
    return "unknown", name


# --------------------------------------------------------------------------- Bluetooth availability


class BluetoothUnavailable(RuntimeError, AttuneError):
    """No usable Bluetooth on this computer; the message says what is missing and how to fix it."""


_DBUS_UNAVAILABLE = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.bluez.Error.NotReady",
    "org.freedesktop.DBus.Error.NoServer",
)


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def bluetooth_unavailable_reason(exc: BaseException) -> str | None:
    """One sentence saying what is missing and how to fix it, or ``None`` for other errors.

    Recognises what bleak raises without Bluetooth: ``FileNotFoundError`` (no
    D-Bus system bus), ``BleakDBusError`` from a missing BlueZ service,
    ``BleakError("No Bluetooth adapters found.")`` and
    ``BleakBluetoothNotAvailableError`` (bleak >= 2).
    """
    names = _class_names(exc)
    text = " ".join(str(a) for a in getattr(exc, "args", ()))
    if isinstance(exc, FileNotFoundError):
        return (
            "Bluetooth is not available: no D-Bus system bus was found, which bleak needs to talk to BlueZ; "
            "install and start BlueZ (e.g. 'sudo apt install bluez && sudo systemctl start bluetooth'), "
            "or run the bridge on a computer with Bluetooth."
        )
    if "BleakDBusError" in names:
        if any(err in text for err in _DBUS_UNAVAILABLE):
            if "NotReady" in text:
                return ("Bluetooth is not available: the Bluetooth adapter is powered off; "
                        "turn it on ('bluetoothctl power on' or the system settings) and try again.")
            return (
                f"Bluetooth is not available: BlueZ is not running on D-Bus ({text.strip()}); "
                "start it with 'sudo systemctl start bluetooth' (install the 'bluez' package if it is missing)."
            )
        return None
    if "BleakBluetoothNotAvailableError" in names or (
        "BleakError" in names and re.search(r"no bluetooth adapter|not available|powered off", text, re.I)
    ):
        if re.search(r"powered|turned off|off\b", text, re.I) and "adapter" not in text.lower():
            return ("Bluetooth is not available: Bluetooth is turned off; "
                    "turn it on ('bluetoothctl power on' or the system settings) and try again.")
        what = text.strip().rstrip(".") or "no Bluetooth adapter found"
        return (
            f"Bluetooth is not available: {what[:1].lower() + what[1:]}; "
            "plug in a Bluetooth 4.0+ (BLE) adapter, or turn Bluetooth on ('bluetoothctl power on'), and try again."
        )
    return None


def _require_bleak():
    try:
        import bleak  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BluetoothUnavailable(
            "The BLE bridge needs the 'bleak' package, which is not installed; "
            "install it with: pip install 'attune-monitor[ble]' (or pip install bleak)."
        ) from exc
    return bleak


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True)
class FoundDevice:
    """A device advertising the Heart Rate Service."""

    name: str
    address: str
    rssi: int | None


async def scan_heart_rate_devices(timeout: float = 8.0, discover: Callable[..., Awaitable[Any]] | None = None
                                  ) -> list[FoundDevice]:
    """List nearby devices advertising the Heart Rate Service, strongest signal first.

    Parameters
    ----------
    timeout : float
        Seconds to scan.
    discover : callable | None
        ``await discover(timeout=..., return_adv=True, service_uuids=[...])``
        returning ``{address: (device, advertisement)}``, as
        ``bleak.BleakScanner.discover`` does (the default).

    Raises
    ------
    BluetoothUnavailable
        No Bluetooth adapter, no BlueZ, no D-Bus, or bleak missing.
    """
    if discover is None:
        discover = _require_bleak().BleakScanner.discover
    try:
        found = await discover(timeout=timeout, return_adv=True, service_uuids=[HEART_RATE_SERVICE_UUID])
    except Exception as exc:
        reason = bluetooth_unavailable_reason(exc)
        if reason:
            raise BluetoothUnavailable(reason) from exc
        raise
    out = []
    for address, (device, adv) in dict(found).items():
        uuids = {str(u).lower() for u in (getattr(adv, "service_uuids", None) or [])}
        if uuids and HEART_RATE_SERVICE_UUID not in uuids:
            continue  # some back-ends ignore the filter
        name = getattr(adv, "local_name", None) or getattr(device, "name", None) or ""
        out.append(FoundDevice(name, address, getattr(adv, "rssi", None)))
    out.sort(key=lambda d: -(d.rssi if d.rssi is not None else -1000))
    return out


# --------------------------------------------------------------------------- the bridge


class HeartRateClient(Protocol):
    """What the bridge needs of a BLE client (``bleak.BleakClient`` satisfies it)."""

    @property
    def name(self) -> str:
        """The device's advertised name."""

    async def connect(self) -> Any:
        """Connect to the device."""

    async def disconnect(self) -> Any:
        """Disconnect from the device."""

    async def start_notify(self, char_specifier: str, callback: Callable[[Any, bytearray], None]) -> Any:
        """Call ``callback(characteristic, data)`` on each notification of ``char_specifier``."""


#: ``factory(address, disconnected_callback) -> client``.
ClientFactory = Callable[[str, Callable[[Any], None]], HeartRateClient]


def bleak_client_factory(address: str, disconnected_callback: Callable[[Any], None]) -> HeartRateClient:
    """Make a ``bleak.BleakClient`` for ``address`` (the default client factory)."""
    bleak = _require_bleak()
    return bleak.BleakClient(address, disconnected_callback=disconnected_callback,
                             services=[HEART_RATE_SERVICE_UUID])


@dataclass(frozen=True)
class ReconnectPolicy:
    """Bounded exponential backoff between connection attempts.

    Attributes
    ----------
    first_delay, max_delay : float
        Seconds to wait after the first failure, and at most.
    max_attempts : int
        Consecutive failed attempts before the bridge gives up (a successful
        connection resets the count).
    connect_timeout : float
        Seconds allowed for one connection attempt.
    """

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_attempts: int = 20
    connect_timeout: float = 20.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after ``attempt`` consecutive failures (1-based)."""
        return min(self.max_delay, self.first_delay * 2.0 ** max(0, attempt - 1))


@dataclass
class BridgeStatus:
    """A state change the user should see.

    ``state`` is one of ``connecting``, ``connected``, ``lost``, ``waiting``, ``contact_lost``, ``contact_ok``,
    ``gave_up``, ``stopped``.
    """

    state: str
    message: str
    time: float = field(default_factory=time.time)


class GaveUp(RuntimeError, AttuneError):
    """The device stayed unreachable for ``ReconnectPolicy.max_attempts`` attempts."""


class HeartRateBridge:
    """Publish a BLE heart-rate device's RR and HR on LSL, reconnecting when it drops out.

    Parameters
    ----------
    address : str
        Bluetooth address (a UUID on macOS) of the device.
    participant : str
        Pseudonym written into the streams' desc (``P1``, ``A`` ...).
    client_factory : callable
        ``factory(address, disconnected_callback) -> client``; defaults to
        :func:`bleak_client_factory`. Tests inject a fake here.
    device_name : str | None
        The BLE name if known from a scan (else the client's name is used).
    stream_name : str | None
        Base of the stream names; default ``"<participant> <manufacturer> <device>"``.
        The type is appended: ``"P1 Polar H10 RR"``.
    source_id : str | None
        Base of the source ids; default ``"ble-hr-<address>"``. ``"-RR"`` /
        ``"-HR"`` is appended.
    policy : ReconnectPolicy
    on_status : callable | None
        Called with a :class:`BridgeStatus` on every state change.
    on_measurement : callable | None
        Called with each :class:`HeartRateMeasurement` after it was published.
    clock : callable | None
        Arrival-time clock in LSL seconds; default ``pylsl.local_clock``.
    """

    def __init__(self, address: str, participant: str, *, client_factory: ClientFactory | None = None,
                 device_name: str | None = None, stream_name: str | None = None, source_id: str | None = None,
                 policy: ReconnectPolicy | None = None, on_status: Callable[[BridgeStatus], None] | None = None,
                 on_measurement: Callable[[HeartRateMeasurement], None] | None = None,
                 clock: Callable[[], float] | None = None, beat_clock: BeatClock | None = None):
        if not participant or not str(participant).strip():
            raise ValueError("Invalid value for 'participant': expected a pseudonym such as 'P1', but got nothing.")
        self.address = address
        self.participant = str(participant).strip()
        self.client_factory = client_factory or bleak_client_factory
        self.device_name = device_name
        self.stream_name = stream_name
        self.source_id = source_id or f"ble-hr-{re.sub(r'[^0-9A-Za-z]+', '', address)}"
        self.policy = policy or ReconnectPolicy()
        self.on_status = on_status
        self.on_measurement = on_measurement
        self._clock = clock
        self.beats = beat_clock or BeatClock()
        self.rr_outlet = None
        self.hr_outlet = None
        self.contact: str | None = None
        self.n_notifications = 0
        self.n_malformed = 0
        self.n_beats = 0
        self.n_connections = 0
        self._stop: asyncio.Event | None = None
        self._disconnected: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- status

    def _status(self, state: str, message: str) -> None:
        log = logger.warning if state in ("lost", "contact_lost", "gave_up") else logger.info
        log("%s", message)
        if self.on_status is not None:
            self.on_status(BridgeStatus(state, message))

    @property
    def label(self) -> str:
        """How this device is called in messages."""
        return f"{self.participant} {self.device_name or self.address}"

    # -- LSL

    def _make_outlets(self, ble_name: str | None) -> None:
        from .lsl import open_outlet, pylsl

        if self._clock is None:
            self._clock = pylsl.local_clock
        manufacturer, device = device_identity(ble_name)
        base = self.stream_name or " ".join(
            p for p in (self.participant, manufacturer if manufacturer != "unknown" else "", device) if p)
        outlets = []
        for kind in ("rr", "hr"):
            f = desc_fields(kind, self.participant, device=device, manufacturer=manufacturer)
            info = pylsl.StreamInfo(f"{base} {f['type']}", f["type"], 1, pylsl.IRREGULAR_RATE, "float32",
                                    f"{self.source_id}-{f['type']}")
            desc = info.desc()
            for key in ("participant", "manufacturer", "device"):
                desc.append_child_value(key, f[key])
            chans = desc.append_child("channels")
            for ch in f["channels"]:
                c = chans.append_child("channel")
                for key in ("label", "unit", "type"):
                    c.append_child_value(key, ch[key])
            acq = desc.append_child("acquisition")
            acq.append_child_value("bridge", "attune bridge ble-hr")
            acq.append_child_value("ble_name", ble_name or "")
            outlets.append(open_outlet(info))
        self.rr_outlet, self.hr_outlet = outlets
        logger.info("publishing LSL streams %r and %r", f"{base} RR", f"{base} HR")

    def close(self) -> None:
        """Drop the outlets (streams disappear from LSL)."""
        self.rr_outlet = self.hr_outlet = None

    # -- notifications

    def handle_notification(self, data: bytes | bytearray, arrival: float | None = None) -> HeartRateMeasurement | None:
        """Decode one notification and publish it; malformed packets are logged and skipped.

        Parameters
        ----------
        data : bytes-like
            The Heart Rate Measurement value.
        arrival : float | None
            Arrival time in LSL seconds (default: now).

        Returns
        -------
        measurement : HeartRateMeasurement | None
            ``None`` when the packet was malformed and skipped.
        """
        if arrival is None:
            arrival = self._clock() if self._clock is not None else time.monotonic()
        try:
            m = parse_heart_rate_measurement(data)
        except MalformedPacket as exc:
            self.n_malformed += 1
            logger.warning("%s: skipped a malformed packet: %s", self.label, exc)
            return None
        self.n_notifications += 1
        if m.contact != self.contact:
            if m.contact == CONTACT_NOT_DETECTED:
                self._status("contact_lost", f"{self.label}: no skin contact: moisten the electrodes and "
                                             "tighten the strap")
            elif self.contact == CONTACT_NOT_DETECTED:
                self._status("contact_ok", f"{self.label}: skin contact restored")
            self.contact = m.contact
        if m.rr_ticks:
            times = self.beats.assign(arrival, m.rr_s)
            if self.rr_outlet is not None:
                for value, t in zip(m.rr_ms, times):
                    self.rr_outlet.push_sample([float(value)], float(t))
            self.n_beats += len(times)
        if self.hr_outlet is not None:
            self.hr_outlet.push_sample([float(m.heart_rate)], float(arrival))
        if self.on_measurement is not None:
            self.on_measurement(m)
        return m

    def _notify_callback(self, _sender, data: bytearray) -> None:
        try:
            self.handle_notification(data)
        except Exception:  # never let a notification kill the Bluetooth stack's callback loop
            logger.exception("%s: error handling a notification", self.label)

    def _on_disconnect(self, _client) -> None:
        ev, loop = self._disconnected, self._loop
        if ev is None or loop is None:
            return
        try:
            if asyncio.get_running_loop() is loop:
                ev.set()
                return
        except RuntimeError:
            pass
        loop.call_soon_threadsafe(ev.set)

    # -- main loop

    def stop(self) -> None:
        """Ask :meth:`run` to disconnect and return (thread-safe)."""
        if self._stop is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _sleep_or_stop(self, seconds: float) -> bool:
        """Sleep; return True if stop was requested meanwhile."""
        assert self._stop is not None  # made by the running bridge
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

    async def run(self, duration: float | None = None) -> None:
        """Connect, publish, reconnect on drop-outs, until :meth:`stop`, ``duration`` or give-up.

        Parameters
        ----------
        duration : float | None
            Seconds to run (None: until stopped).

        Raises
        ------
        BluetoothUnavailable
            No Bluetooth (not retried).
        GaveUp
            ``policy.max_attempts`` consecutive failed connection attempts.
        """
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if duration is not None:
            self._loop.call_later(duration, self._stop.set)
        failures = 0
        try:
            while not self._stop.is_set():
                self._disconnected = asyncio.Event()
                client = None
                connected = False
                try:
                    client = self.client_factory(self.address, self._on_disconnect)
                    self._status("connecting", f"{self.label}: connecting to {self.address} ...")
                    await asyncio.wait_for(client.connect(), timeout=self.policy.connect_timeout)
                    connected = True
                    name = self.device_name or getattr(client, "name", None) or None
                    self.device_name = name
                    if self.rr_outlet is None:
                        self._make_outlets(name)
                    self.beats.reanchor()
                    await asyncio.wait_for(
                        client.start_notify(HEART_RATE_MEASUREMENT_UUID, self._notify_callback),
                        timeout=self.policy.connect_timeout)
                    self.n_connections += 1
                    failures = 0
                    self._status("connected", f"{self.label}: connected ({self.address})")
                    stop_task = asyncio.ensure_future(self._stop.wait())
                    drop_task = asyncio.ensure_future(self._disconnected.wait())
                    try:
                        await asyncio.wait({stop_task, drop_task}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        stop_task.cancel()
                        drop_task.cancel()
                    if self._stop.is_set():
                        break
                    self._status("lost", f"{self.label}: device disconnected (out of range or battery?); reconnecting")
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    reason = bluetooth_unavailable_reason(exc)
                    if reason:
                        raise BluetoothUnavailable(reason) from exc
                    what = "lost the connection" if connected else "could not connect"
                    detail = "timed out" if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}"
                    logger.warning("%s: %s (%s)", self.label, what, detail)
                finally:
                    if client is not None and connected:
                        try:
                            await asyncio.wait_for(client.disconnect(), timeout=5.0)
                        except Exception as exc:  # already gone
                            logger.debug("%s: disconnect: %r", self.label, exc)
                if self._stop.is_set():
                    break
                if not self._disconnected.is_set() or not connected:
                    failures += 1
                    if failures >= self.policy.max_attempts:
                        msg = (f"{self.label}: gave up after {failures} failed connection attempts; check the device "
                               "is worn (straps advertise only with skin contact), charged and in range")
                        self._status("gave_up", msg)
                        raise GaveUp(msg)
                    delay = self.policy.delay(failures)
                else:
                    delay = self.policy.first_delay * 0.5
                self._status("waiting", f"{self.label}: retrying in {delay:.1f} s")
                if await self._sleep_or_stop(delay):
                    break
        finally:
            if self.n_connections:
                self._status("stopped", f"{self.label}: bridge stopped ({self.n_beats} beats, "
                                        f"{self.n_notifications} notifications, {self.n_malformed} malformed)")


async def resolve_device(address: str | None, name: str | None, timeout: float = 8.0,
                         discover: Callable[..., Awaitable[Any]] | None = None) -> FoundDevice:
    """Pick the device to connect to: by address, else by name fragment, else the only one in range.

    Raises
    ------
    LookupError
        No matching device, or several (the message lists them).
    BluetoothUnavailable
    """
    if address and not name:
        return FoundDevice("", address, None)
    found = await scan_heart_rate_devices(timeout, discover)
    if address:
        found = [d for d in found if d.address.lower() == address.lower()]
    if name:
        found = [d for d in found if name.lower() in d.name.lower()]
    if not found:
        what = f" named like {name!r}" if name else ""
        raise LookupError(
            f"No heart-rate device{what} found in {timeout:g} s; wear the strap (most advertise only with skin "
            "contact, moisten the electrodes), bring it within a few metres, close phone apps connected to it, "
            "and check with --scan.")
    if len(found) > 1:
        listing = "; ".join(f"{d.name or '?'} {d.address} (RSSI {d.rssi})" for d in found)
        raise LookupError(f"Several heart-rate devices found ({listing}); choose one with --address or --name.")
    return found[0]
