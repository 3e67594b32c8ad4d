"""A live session: every visible stream, assigned to participants, each pulled by its own receiver.

:class:`LiveSession` is what the headless monitor and the GUI drive. It is
Qt-free and thread-safe: a background thread keeps looking for new streams
(bounded resolves), re-assigns with the roster and starts a
:class:`~acquisition.inlet.StreamReceiver` per usable stream; each receiver
re-resolves its own stream when it is lost. :meth:`LiveSession.status` is a
snapshot any thread may take.

Example
-------
>>> with LiveSession(roster=Roster.load("roster.toml")) as session:   # doctest: +SKIP
...     session.wait_for_streams(2, timeout=5)
...     t, rr = session.receiver_for("P1", "hr").get_window(60)
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .convention import StreamDescriptor
from .lslconfig import configure
from .roster import Assignment, AssignedStream, Roster, assign

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionStatus:
    """A snapshot of a :class:`LiveSession`.

    Attributes
    ----------
    time : float
        Wall-clock time of the snapshot.
    participants : list of str
    streams : list of ReceiverStatus
        One per receiver, with ``participant`` and ``modality`` filled in.
    primary : dict
        ``{(participant, modality): receiver key}`` the pipeline uses.
    warnings : list of str
        Roster / assignment warnings (ambiguities, fallbacks).
    unassigned : list of (str, str)
        (stream name, reason) of visible streams left out.
    """

    time: float
    participants: list[str]
    streams: list = field(default_factory=list)
    primary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unassigned: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"time": self.time, "participants": list(self.participants),
                "streams": [s.to_dict() for s in self.streams],
                "primary": {f"{p}/{m}": k for (p, m), k in self.primary.items()},
                "warnings": list(self.warnings), "unassigned": [list(u) for u in self.unassigned]}


class LiveSession:
    """Discover, assign and receive every usable LSL stream.

    Parameters
    ----------
    roster : Roster | None
        The user's roster; ``None`` assigns automatically (desc, then per device).
    scope : {"machine", "link", "site"} | None
        LSL discovery scope, put in force before pylsl is imported
        (:func:`acquisition.lslconfig.configure`); ``None`` keeps the current one.
    buffer_seconds : float
        Seconds each receiver keeps (fixes memory).
    discover_timeout : float
        Bound on each resolve, in seconds.
    rescan_interval : float
        Seconds between looks for new streams.
    match : str | None
        Only streams whose name / source_id / hostname / type match this glob.
    accept : callable | None
        ``accept(descriptor) -> bool``: a further filter (e.g. by source_id).
    receiver_options : dict | None
        Extra keyword arguments for every :class:`~acquisition.inlet.StreamReceiver`.
    """

    def __init__(self, roster: Roster | None = None, scope: str | None = None, *, buffer_seconds: float = 300.0,
                 discover_timeout: float = 1.0, rescan_interval: float = 2.0, match: str | None = None,
                 accept: Callable[[StreamDescriptor], bool] | None = None, receiver_options: dict | None = None):
        if scope is not None:
            configure(scope)
        self.roster = roster or Roster()
        self.buffer_seconds = float(buffer_seconds)
        self.discover_timeout = float(discover_timeout)
        self.rescan_interval = float(rescan_interval)
        self.match = match
        self.accept = accept
        self.receiver_options = dict(receiver_options or {})
        self._lock = threading.RLock()
        self._receivers: dict = {}  # key -> StreamReceiver
        self._known: dict[str, StreamDescriptor] = {}  # key -> descriptor (kept while lost)
        self._infos: dict = {}  # key -> resolved pylsl.StreamInfo
        self._uids: set[str] = set()  # stream uids already looked at
        self._assignment = Assignment()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resolver = None  # pylsl.ContinuousResolver, made by start()
        self._marker_inlets: dict = {}  # key -> (pylsl.StreamInlet, stream name): other apps' markers, live
        self._changed = threading.Condition(self._lock)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> LiveSession:
        """Discover once (blocking, bounded) and start the background scanner."""
        if self._thread is None:
            from .lsl import pylsl

            # A continuous resolver keeps listening in the background: one-shot resolves of < 1 s miss streams.
            self._resolver = pylsl.ContinuousResolver(forget_after=max(5.0, 3 * self.rescan_interval))
            deadline = time.monotonic() + self.discover_timeout
            while time.monotonic() < deadline and not self._resolver.results():
                time.sleep(0.05)
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))  # let the first answers in
            self.scan()
            self._thread = threading.Thread(target=self._run, name="attune-live-scan", daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop scanning and close every receiver (inlets close before anything else goes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.discover_timeout * 3 + 2)
        with self._lock:
            receivers = list(self._receivers.values())
        for r in receivers:
            r.close()
        with self._lock:
            inlets, self._marker_inlets = list(self._marker_inlets.values()), {}
        for inlet, _ in inlets:
            try:
                inlet.close_stream()
            except Exception:  # noqa: BLE001 - closing what may already be gone
                pass
        self._resolver = None  # frees the continuous resolver

    def __enter__(self) -> LiveSession:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.rescan_interval):
            try:
                self.scan()
            except Exception:  # keep the session alive; the next scan tries again
                logger.exception("looking for new streams failed")

    # ---------------------------------------------------------------- discovery
    def scan(self) -> int:
        """Look for new streams once (bounded); returns how many receivers were added."""
        from .discovery import discover
        from .inlet import StreamReceiver

        found = discover(self.discover_timeout, match=self.match, exclude=set(self._uids),
                         resolver=self._resolver)
        added = 0
        with self._lock:
            for s in found:
                d = s.descriptor
                self._uids.add(d.uid)
                if self.accept is not None and not self.accept(d):
                    continue
                key = d.source_id or d.uid
                if key in self._receivers:
                    continue  # the receiver re-resolves its own stream (a restarted outlet has a new uid)
                self._known[key] = d
                self._infos[key] = s.info
            self._assignment = assign(self._known.values(), self.roster)
            for a in self._assignment.streams:
                key = a.descriptor.source_id or a.descriptor.uid
                if key in self._receivers:
                    self._receivers[key].participant = a.participant
                    continue
                info = self._infos[key]
                try:
                    rec = StreamReceiver(info, a.descriptor, participant=a.participant,
                                         buffer_seconds=self.buffer_seconds, **self.receiver_options)
                except ValueError as exc:
                    logger.warning("cannot receive %r: %s", a.descriptor.name, exc)
                    continue
                self._receivers[key] = rec.start()
                added += 1
                logger.info("receiving %r for %s (%s, via %s)", a.descriptor.name, a.participant, a.kind, a.source)
            if added:
                self._changed.notify_all()
        self._open_marker_inlets()
        return added

    def _open_marker_inlets(self) -> None:
        """Open an inlet on each event / marker stream not yet followed (bounded; retried on the next scan)."""
        from .lsl import pylsl

        for key, info in self.marker_streams().items():
            with self._lock:
                if key in self._marker_inlets:
                    continue
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=60, recover=True,
                                          processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize)
                inlet.open_stream(self.discover_timeout)
            except Exception as exc:  # noqa: BLE001 - timeout / lost: the next scan tries again
                logger.info("cannot follow markers of %r yet (%s)", info.name(), exc)
                continue
            with self._lock:
                self._marker_inlets[key] = (inlet, info.name())
            logger.info("following markers of %r", info.name())

    def poll_markers(self) -> list:
        """New samples of the event / marker streams since the last call, in time order.

        Returns
        -------
        markers : list of (float, str, str)
            ``(LSL timestamp, stream name, text)``; several channels are joined with ``" | "``.
        """
        from .lsl import pylsl

        with self._lock:
            inlets = list(self._marker_inlets.values())
        out = []
        for inlet, name in inlets:
            try:
                vals, ts = inlet.pull_chunk(timeout=0.0, max_samples=256)
            except pylsl.util.LostError:
                continue  # recover=True: liblsl reconnects by itself
            out += [(float(t), name, " | ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v))
                    for v, t in zip(vals, ts)]
        return sorted(out, key=lambda x: x[0])

    # ---------------------------------------------------------------- views
    @property
    def assignment(self) -> Assignment:
        """The current assignment of streams to participants."""
        with self._lock:
            return self._assignment

    @property
    def participants(self) -> list[str]:
        """Participant ids, naturally sorted."""
        return self.assignment.participants

    @property
    def receivers(self) -> dict:
        """``{key: StreamReceiver}`` (a copy of the mapping; key = source_id, else uid)."""
        with self._lock:
            return dict(self._receivers)

    def marker_streams(self) -> dict:
        """``{key: pylsl.StreamInfo}`` of the event / marker streams seen (another app's experiment markers):
        they are no one's physiology, but a recording of the session keeps them, as LabRecorder would
        (:func:`acquisition.convention.is_marker_stream`; the session's ``match`` / ``accept`` filters apply)."""
        from .convention import is_marker_stream

        with self._lock:
            return {k: self._infos[k] for k, d in self._known.items() if is_marker_stream(d) and k in self._infos}

    def receiver_for(self, participant: str, modality: str):
        """The primary receiver of ``participant``'s ``modality`` (``"hr"`` / ``"eda"``), or ``None``."""
        a: AssignedStream | None = self.assignment.primary(participant, modality)
        if a is None:
            return None
        with self._lock:
            return self._receivers.get(a.descriptor.source_id or a.descriptor.uid)

    def wait_for_streams(self, n: int, timeout: float) -> bool:
        """Block until at least ``n`` receivers exist (or ``timeout`` seconds pass); True if they do."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._receivers) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def status(self) -> SessionStatus:
        """A thread-safe snapshot of every stream's health and the assignment."""
        with self._lock:
            assignment = self._assignment
            receivers = list(self._receivers.items())
        primary = {}
        for a in assignment.streams:
            if a.primary:
                primary[(a.participant, a.modality)] = a.descriptor.source_id or a.descriptor.uid
        return SessionStatus(
            time=time.time(), participants=assignment.participants,
            streams=[r.status() for _, r in sorted(receivers, key=lambda kv: kv[0])],
            primary=primary, warnings=list(assignment.warnings),
            unassigned=[(d.name, reason) for d, reason in assignment.unassigned],
        )
