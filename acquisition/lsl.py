"""The one door to pylsl: ``from acquisition.lsl import pylsl``.

Importing this module makes sure an LSL configuration is in force (the
shipped loopback-only one, unless :func:`attune_monitor.acquisition.lslconfig.configure`
chose another) before pylsl loads liblsl.

It also holds :func:`stream_xml`, which reads a stream's header as ``pylsl.StreamInfo.as_xml()`` does, without
the leak of that method (Attune calls it for every stream on the machine every few seconds of a session), and
:class:`ClockOffset`, which measures a stream's clock offset as ``StreamInlet.time_correction()`` does, in bounded
memory.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import re
import threading
import time

from attune_monitor.errors import AttuneError

from .lslconfig import configure

if "LSLAPICFG" not in os.environ:
    configure(None)

import pylsl  # noqa: E402  (must follow the configuration)
from pylsl.lib import lib as _liblsl  # noqa: E402

__all__ = ["CLOCK_POLL_S", "CLOCK_RENEW_S", "ClockOffset", "OutletError", "open_outlet", "pylsl", "stream_xml"]

logger = logging.getLogger(__name__)

# Function objects of our own (``CDLL[name]`` makes a new one each time): pylsl's ``lib.lsl_get_xml`` returns
# ``c_char_p``, whose conversion copies the text and drops the pointer, so liblsl's malloc'd copy is never freed.
_get_xml = _liblsl["lsl_get_xml"]
_get_xml.restype = ctypes.c_void_p
_get_xml.argtypes = [ctypes.c_void_p]
_destroy_string = _liblsl["lsl_destroy_string"]
_destroy_string.restype = None
_destroy_string.argtypes = [ctypes.c_void_p]


class OutletError(AttuneError):
    """An LSL stream could not be published: liblsl found no free port for its outlet."""


def open_outlet(info, **kwargs):
    """``pylsl.StreamOutlet(info, **kwargs)``, or an :class:`OutletError` that says why and what to do.

    liblsl's own error is ``RuntimeError("could not create stream outlet.")``. With Attune's configuration
    (``PortRange = 256``, ``AllowRandomPorts = false``: every outlet on the ports the firewall rule of hardware.md
    covers) that is almost always every port taken, by this process's outlets or other LSL senders on the machine.

    Parameters
    ----------
    info : pylsl.StreamInfo
    **kwargs
        ``chunk_size``, ``max_buffered``, as :class:`pylsl.StreamOutlet` takes them.

    Raises
    ------
    OutletError
        Naming the stream, the port range and what to do.
    """
    try:
        return pylsl.StreamOutlet(info, **kwargs)
    except RuntimeError as exc:
        cfg = os.environ.get("LSLAPICFG") or "liblsl's defaults"
        base, span = _config_int("BasePort", 16572), _config_int("PortRange", 32)
        raise OutletError(
            f"Could not publish the LSL stream {info.name()!r}: liblsl found no free port for it. The LSL "
            f"configuration in force ({cfg}) keeps outlets on TCP/UDP {base}-{base + span - 1} (PortRange = {span}; "
            "Attune's has AllowRandomPorts = false, so that the firewall rule in hardware.md covers them all), and "
            "those are in use by this program's streams and other LSL senders on this computer. Close other LSL "
            "senders, publish fewer streams (fewer --participants), or point LSLAPICFG at a copy of the file with "
            f"a larger PortRange. (liblsl: {exc})") from exc


def _config_int(key: str, default: int) -> int:
    """``key = N`` of the LSL configuration file in force (``LSLAPICFG``), else ``default``."""
    try:
        with open(os.environ["LSLAPICFG"], encoding="utf-8") as f:
            m = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*$", f.read(), re.M)
    except (KeyError, OSError, UnicodeDecodeError):
        return default
    return int(m.group(1)) if m else default


def stream_xml(info) -> str:
    """The whole ``<info>`` XML of a stream, as ``info.as_xml()`` returns it, freeing liblsl's copy.

    ``pylsl.StreamInfo.as_xml`` (pylsl 1.16-1.18) never hands back to liblsl the string ``lsl_get_xml`` allocates
    for it (``lsl_destroy_string``): every call keeps the header's size (hundreds of bytes, kilobytes with a
    desc) for the life of the process. Here the text is copied, then liblsl's string freed.

    Parameters
    ----------
    info : pylsl.StreamInfo

    Returns
    -------
    xml : str
        Decoded as pylsl decodes it: UTF-8, or Latin-1 when it is not valid UTF-8 (a hostname in a Windows code
        page).
    """
    ptr = _get_xml(info.obj)
    if not ptr:
        raise RuntimeError(f"liblsl returned no header for stream {info.name()!r}.")
    try:
        raw = ctypes.string_at(ptr)
    finally:
        _destroy_string(ptr)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


#: Seconds one time-only inlet measures a stream's clock before a new one takes over (:class:`ClockOffset`).
CLOCK_RENEW_S = 30.0
#: Seconds between two looks of the clock keeper's thread at every stream's time-only inlets.
CLOCK_POLL_S = 0.1


class _TimeInlets:
    """The time-only inlets of one stream: the one read now and its successor (used by the keeper's thread only)."""

    def __init__(self, info, renew_s: float):
        self.info = info
        self.renew_s = renew_s
        self.renewals = 0
        self.offset: float | None = None
        self.inlet = None  # the time-only inlet read now
        self.since = -math.inf  # monotonic time it was started
        self.next = None  # its successor, started, without an estimate yet
        self.next_since = -math.inf

    def _new(self):
        return pylsl.StreamInlet(self.info, max_buflen=1, max_chunklen=1, recover=False, processing_flags=0)

    @staticmethod
    def _read(inlet) -> float | None:
        try:
            return float(inlet.time_correction(0.0))  # starts liblsl's measuring the first time; never waits
        except (pylsl.util.TimeoutError, pylsl.util.LostError):
            return None

    def step(self, now: float) -> None:
        if self.inlet is None:
            self.inlet, self.since = self._new(), now
        elif self.next is None and now - self.since >= self.renew_s:
            self.next, self.next_since = self._new(), now
        if self.next is not None:
            value = self._read(self.next)
            if value is not None:  # the successor measures: the old inlet goes, with the receives it left pending
                old, self.inlet, self.since, self.next = self.inlet, self.next, self.next_since, None
                del old
                self.renewals += 1
                self.offset = value
                return
            if now - self.next_since > max(10.0, 0.1 * self.renew_s):  # never answered: keep the old, retry later
                self.next, self.since = None, now
        value = self._read(self.inlet)
        if value is not None:
            self.offset = value

    def close(self) -> None:
        self.inlet = self.next = None


class _ClockKeeper:
    """One thread that makes, reads, renews and destroys every stream's time-only inlets.

    liblsl allocates for an inlet in the thread that makes or reads it: inlets made and destroyed over and over in
    many threads (one per receiver) leave memory in each thread's allocator caches, one thread does not.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._clocks: dict[int, ClockOffset] = {}
        self._closing: list[_TimeInlets] = []
        self._thread: threading.Thread | None = None

    def add(self, clock: ClockOffset) -> None:
        with self._lock:
            self._clocks[id(clock)] = clock
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="attune-lsl-clocks", daemon=True)
                self._thread.start()

    def remove(self, clock: ClockOffset) -> None:
        with self._lock:
            if self._clocks.pop(id(clock), None) is not None:
                self._closing.append(clock._inlets)

    def _run(self) -> None:
        while True:
            with self._lock:
                clocks, closing, self._closing = list(self._clocks.values()), self._closing, []
                if not clocks and not closing:
                    self._thread = None
                    return
            for inlets in closing:
                inlets.close()
            del closing
            now = time.monotonic()
            for clock in clocks:
                try:
                    clock._inlets.step(now)
                except Exception:  # noqa: BLE001 - one stream's failure must not stop the others' clocks
                    logger.exception("measuring the clock of stream %r failed", clock._inlets.info.name())
                if clock._inlets.offset is not None:
                    clock._known.set()
            del clocks
            time.sleep(CLOCK_POLL_S)


_KEEPER = _ClockKeeper()


class ClockOffset:
    """A stream's clock offset to this machine's, as ``StreamInlet.time_correction()`` gives it, in bounded memory.

    From an inlet's first ``time_correction()`` call (or first pull with ``proc_clocksync``) until the inlet is
    destroyed, liblsl re-measures the offset every ``TimeUpdateInterval`` (2 s) on a thread of its own, and every
    such round (``time_receiver::start_time_estimation``) leaves one more receive pending on the inlet's UDP socket,
    held until the inlet is destroyed: the memory of every clock-synchronised inlet grows with wall time for as
    long as it lives (liblsl 1.18.0b6, in pylsl 1.18.6; docs/validation.md, "Soak"). So the offset is measured on an
    inlet of its own that carries no data, and that inlet is replaced every ``renew_s`` seconds: the successor is
    started while the old one still answers, and the old one is destroyed (its pending receives with it) once the
    successor has its first estimate. One thread of the process does this for every stream (see
    :class:`_ClockKeeper`); data inlets then need neither ``proc_clocksync`` nor ``time_correction()``.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The stream, as resolved (it carries the outlet's addresses).
    renew_s : float | None
        Seconds an inlet measures before its successor is started; default :data:`CLOCK_RENEW_S`.
    """

    def __init__(self, info, renew_s: float | None = None):
        self._inlets = _TimeInlets(info, float(CLOCK_RENEW_S if renew_s is None else renew_s))
        self._known = threading.Event()
        _KEEPER.add(self)

    @property
    def offset(self) -> float | None:
        """The newest estimate of the offset (s), or ``None`` until the first one.

        Added to the stream's timestamps it gives this machine's ``local_clock()``. The first estimate comes
        ~0.6 s after the clock was made (8 probes 64 ms apart).
        """
        return self._inlets.offset

    @property
    def renewals(self) -> int:
        """Time-only inlets replaced so far."""
        return self._inlets.renewals

    def measure(self, timeout: float = 0.0) -> float | None:
        """The newest estimate of the offset (s), waiting up to ``timeout`` s for the first; ``None`` while none.

        Parameters
        ----------
        timeout : float
            Seconds to wait when no estimate is known yet. Once one is, this never waits.

        Returns
        -------
        offset : float | None
            Seconds to add to the stream's timestamps (``StreamInlet.time_correction()``'s value).
        """
        if self._inlets.offset is None and timeout > 0:
            self._known.wait(timeout)
        return self._inlets.offset

    def close(self) -> None:
        """Stop measuring: the keeper's thread destroys the time-only inlets (and liblsl's threads with them)."""
        _KEEPER.remove(self)
