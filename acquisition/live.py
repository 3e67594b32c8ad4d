"""A live session: every visible stream, assigned to participants, each pulled by its own receiver.

:class:`LiveSession` is what the headless monitor and the GUI drive. It is
Qt-free and thread-safe: a background thread keeps looking for new streams
(bounded resolves), re-assigns with the roster and starts a
:class:`~attune_monitor.acquisition.inlet.StreamReceiver` per usable stream; each receiver
re-resolves its own stream when it is lost. :meth:`LiveSession.status` is a
snapshot any thread may take.

Streams are told apart by identity (name, type, source_id, hostname; see
:attr:`attune_monitor.acquisition.convention.StreamDescriptor.identity`), each run of an
outlet by its uid:

* a new uid with a known identity while that stream is lost is the stream
  restarted (its receiver adopts it);
* a new uid with a known identity while that stream is received is a
  **duplicate** (seen in two scans in a row, so a restart is never taken for
  one): it is refused, never mixed in, and reported (:meth:`LiveSession.notices`,
  the status warnings, the log);
* several uids with an identity not yet received: none is used until only
  one is left, and that is reported the same way;
* a run given up while unreachable that answers again is the genuine stream:
  its receiver goes back to it (:meth:`~attune_monitor.acquisition.inlet.StreamReceiver.return_to`).

Resources stay bounded whatever the streams do: one continuous resolver does all
the looking (lost receivers and marker streams included; every inlet is opened
``recover=False``, as liblsl's own recovery runs an endless resolve per inlet,
each binding ports of the range restarted outlets need), a header that cannot be
right is refused before any inlet is made on it, and event / marker streams are
rate limited (:data:`MARKER_RATE`).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .convention import StreamDescriptor
from .lslconfig import configure
from .roster import AssignedStream, Assignment, Roster, assign

__all__ = ["MARKER_RATE", "MARKER_BURST", "MARKER_PULL", "MARKER_QUEUE_SECONDS", "SessionStatus", "LiveSession"]

logger = logging.getLogger(__name__)

#: Markers of one event / marker stream shown a second, on average, and in one burst (:class:`_MarkerLimit`).
MARKER_RATE = 5.0
MARKER_BURST = 50
#: Marker samples pulled from one stream per :meth:`LiveSession.poll_markers` call (bounds its time).
MARKER_PULL = 1024
#: Seconds of samples liblsl queues for a marker inlet (irregular: 100 x as many samples); a flood beyond it is
#: dropped by liblsl, oldest first.
MARKER_QUEUE_SECONDS = 2


class _MarkerLimit:
    """A token bucket over one marker stream: :data:`MARKER_RATE` markers a second, bursts of :data:`MARKER_BURST`.

    Counts what it leaves out; :meth:`report` says so once at the first drop, then at most once a minute.
    """

    def __init__(self, rate: float = MARKER_RATE, burst: int = MARKER_BURST):
        self.rate, self.burst = float(rate), int(burst)
        self.tokens = float(burst)
        self.last: float | None = None
        self.dropped = 0
        self.reported = 0
        self.reported_at = -1e9

    def admit(self, n: int, now: float) -> int:
        """How many of ``n`` new markers may be shown now (the rest count as dropped)."""
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        kept = min(n, int(self.tokens))
        self.tokens -= kept
        self.dropped += n - kept
        return kept

    def report_total(self, name: str) -> str:
        """The markers of stream ``name`` left out so far, as a status warning."""
        return f"marker stream {name!r}: {self.dropped} markers not shown live (more than {self.rate:g} a second)"

    def report(self, name: str, now: float) -> str | None:
        """A sentence about the markers dropped since the last one (first drop at once, then once a minute)."""
        if self.dropped == self.reported or now - self.reported_at < 60.0 and self.reported:
            return None
        self.reported, self.reported_at = self.dropped, now
        return (f"marker stream {name!r} sends more than {self.rate:g} markers a second: {self.dropped} not shown "
                f"live so far (at least: a flood beyond liblsl's queue is dropped before Attune sees it). Slow the "
                "sender down, or stop it.")


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
        Roster / assignment warnings (ambiguities, fallbacks), duplicate streams, streams refused for good (an
        implausible rate, a heart / EDA stream of text: :func:`attune_monitor.acquisition.convention.unusable_reason`)
        and marker streams whose flood is not shown in full.
    unassigned : list of (str, str)
        (stream name, reason) of visible streams left out, refused ones included.
    """

    time: float
    participants: list[str]
    streams: list = field(default_factory=list)
    primary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    unassigned: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The assignment as plain JSON types (participants, streams, primary per person/modality, warnings)."""
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
        (:func:`attune_monitor.acquisition.lslconfig.configure`); ``None`` keeps the current one.
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
        Extra keyword arguments for every :class:`~attune_monitor.acquisition.inlet.StreamReceiver`.
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
        self._receivers: dict = {}  # identity key -> StreamReceiver
        self._known: dict[str, StreamDescriptor] = {}  # identity key -> descriptor (kept while lost)
        self._warned: set[str] = set()  # the assignment's warnings already logged
        self._matched: dict[str, bool] = {}  # uid -> whether its header matches ``match`` (uids listed now)
        self._infos: dict = {}  # identity key -> resolved pylsl.StreamInfo of the run adopted
        self._seen: dict[str, StreamDescriptor | None] = {}  # uid -> full descriptor (None: vanished / not accepted)
        self._suspects: dict[str, int] = {}  # uid -> scans in a row it claimed an identity received from another uid
        self._duplicates: dict[str, str] = {}  # identity key -> message (the duplicate now, for the status)
        self._reported: set = set()  # (identity key, uids) already reported: each duplicate is said once
        self._notices: list[str] = []  # messages for the user not yet taken by notices()
        self._ended: dict[str, None] = {}  # uids of runs whose connection liblsl saw end (ordered; bounded)
        # identity key -> (uid, name, reason): refused live streams
        self._unusable: dict[str, tuple[str, str, str]] = {}
        self._marker_limits: dict[str, _MarkerLimit] = {}  # key -> rate limit of a followed marker stream
        self._assignment = Assignment()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resolver: Any = None  # pylsl.ContinuousResolver, made by start()
        self._marker_inlets: dict = {}  # key -> (pylsl.StreamInlet, descriptor, ClockOffset): other apps' markers
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
        for inlet, _, clock in inlets:
            clock.close()
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
        from .convention import describe, unusable_reason
        from .discovery import fetch_descriptors, matches
        from .inlet import StreamReceiver
        from .lsl import pylsl, stream_xml

        infos = (self._resolver.results() if self._resolver is not None
                 else pylsl.resolve_streams(self.discover_timeout))
        live: dict[str, object] = {}  # uid -> info, of the streams this session may use
        with self._lock:
            ended = set(self._ended)
        listed = set()
        for info in infos:
            uid = info.uid()
            listed.add(uid)
            if uid in live or uid in ended:
                continue  # (an ended run: liblsl saw its connection end, the resolver lists it a few s longer)
            if self.match:
                hit = self._matched.get(uid)
                if hit is None:  # a uid is one outlet's run, whose header never changes: read it once
                    hit = self._matched[uid] = matches(describe(stream_xml(info)), self.match)
                if not hit:
                    continue
            live[uid] = info
        for uid in [u for u in self._matched if u not in listed]:
            del self._matched[uid]  # (not listed now: read again if it is listed again)
        with self._lock:
            new = [info for uid, info in live.items() if uid not in self._seen]
            for uid in [u for u in self._seen if u not in live]:
                del self._seen[uid]  # not listed now (ended, or unreachable: looked at again if it comes back)
            for key in [k for k, (uid, _, _) in self._unusable.items() if uid not in live]:
                del self._unusable[key]
        for s in fetch_descriptors(new, max(0.5, self.discover_timeout)):
            ok = self.accept is None or self.accept(s.descriptor)
            why = unusable_reason(s.descriptor) if ok else None
            with self._lock:
                self._seen[s.descriptor.uid] = s.descriptor if ok and why is None else None
                if why is not None:  # a heart stream of text, an implausible rate: never received, said once
                    self._refuse_stream(s.descriptor, why)
        # (a stream that vanished while its header was read is not in _seen: looked at again when seen again)
        added = 0
        with self._lock:
            claims: dict[str, list[str]] = {}  # identity key -> live uids claiming it
            for uid in live:
                d = self._seen.get(uid)
                if d is not None:
                    claims.setdefault(d.key, []).append(uid)
            self._check_claims(claims, live)
            self._assignment = assign(self._known.values(), self.roster, log=False)
            for w in self._assignment.warnings:  # (each rescan assigns again: a warning is said once a session)
                if w not in self._warned:
                    self._warned.add(w)
                    logger.warning("%s", w)
            for a in self._assignment.streams:
                key = a.descriptor.key
                if key in self._receivers:
                    self._receivers[key].participant = a.participant
                    continue
                info = self._infos[key]
                try:
                    rec = StreamReceiver(info, a.descriptor, participant=a.participant,
                                         buffer_seconds=self.buffer_seconds,
                                         **{"finder": self._find, **self.receiver_options})
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

    def _find(self, d: StreamDescriptor) -> list:
        """Live streams claiming ``d``'s identity, from the continuous resolver.

        Live streams claiming ``d``'s identity, from the continuous resolver (no socket of their own; a lost
        stream's receiver asks this while it looks for the stream).
        """
        resolver = self._resolver
        if resolver is None:
            return []
        with self._lock:
            ended = set(self._ended)
        return [i for i in resolver.results()
                if (i.name(), i.type(), i.source_id(), i.hostname()) == d.identity and i.uid() not in ended]

    def _check_claims(self, claims: dict[str, list[str]], live: dict) -> None:
        """Adopt identities claimed by one live uid; refuse and report duplicates (called with the lock held).

        Parameters
        ----------
        claims : dict
            ``{identity key: [uid, ...]}`` of the live streams this session may use.
        live : dict
            ``{uid: pylsl.StreamInfo}`` of those streams.
        """
        from .discovery import duplicate_message

        duplicates: dict[str, str] = {}
        suspects: dict[str, int] = {}
        for key, uids in claims.items():
            rec = self._receivers.get(key)
            if rec is not None:
                # Received now from one run; another live run claiming the identity that is not a former run of
                # this stream (a restart) is a duplicate once seen in two scans in a row (a restart's new run can
                # show a moment before the receiver notices the old one is gone). While the stream is quiet or
                # lost, a new run may be the stream restarted: the receiver decides when it looks for it.
                back = [u for u in uids if u in rec.returnable]
                if back and rec.state != "lost":
                    # a run of this stream given up while unreachable is live again: the genuine one; the run
                    # adopted meanwhile was another publisher (the receiver refuses it when it goes back)
                    rec.return_to(live[back[0]])
                    continue
                if rec.state not in ("connected", "noisy", "recovered"):
                    continue
                past, refused = rec.past_uids, rec.refused
                others = [u for u in uids if u != rec.uid and u not in past]
                for u in others:
                    if u in refused:
                        continue
                    suspects[u] = self._suspects.get(u, 0) + 1
                    seen = self._seen[u]
                    if suspects[u] >= 2 and seen is not None:  # claims holds accepted streams only
                        rec.refuse(u, duplicate_message(seen, 2, f"Attune keeps receiving the one it had "
                                                        f"(uid {rec.uid}) and refuses the other (uid {u})"))
                live_refused = [u for u in others if u in rec.refused]
                if live_refused:
                    duplicates[key] = duplicate_message(rec.descriptor, 1 + len(live_refused),
                                                        "Attune keeps receiving the one it had and refuses the rest")
                continue
            if key in self._marker_inlets:
                continue  # followed already (liblsl recovers it by itself); markers are no one's physiology
            first = self._seen.get(uids[0])
            if first is None:  # claims holds accepted streams only
                continue
            if len(uids) == 1:
                if key not in self._known or self._known[key].uid not in live:
                    self._known[key] = first
                    self._infos[key] = live[uids[0]]
                continue
            # Several runs claim an identity not received yet: which is which cannot be told; none is used.
            duplicates[key] = duplicate_message(first, len(uids))
            self._known.pop(key, None)
            self._infos.pop(key, None)
            report = (key, frozenset(uids))
            if report not in self._reported:
                self._reported.add(report)
                self._notices.append(duplicates[key])
                logger.warning("%s", duplicates[key])
        for key, rec in self._receivers.items():  # refusals (duplicates, other publishers): each said once
            for uid, why in rec.refused.items():
                if (key, uid) not in self._reported:
                    self._reported.add((key, uid))
                    self._notices.append(f"stream {rec.descriptor.name!r}: {why}")
                    logger.warning("stream %r: %s", rec.descriptor.name, why)
        self._suspects = suspects
        self._duplicates = duplicates
        del self._notices[:-100]

    def notices(self) -> list[str]:
        """Messages for the user since the last call (duplicate streams: each said once), oldest first."""
        with self._lock:
            out, self._notices = self._notices, []
        return out

    def _open_marker_inlets(self) -> None:
        """Open an inlet on each event / marker stream not yet followed (bounded; retried on the next scan).

        Opened with ``recover=False``: liblsl's own recovery runs an endless resolve per lost inlet, each wave
        binding ports of the 32 outlets need; a marker stream that ends is taken up again by the session's
        continuous resolver when it comes back (:meth:`scan`). liblsl monotonizes the stamps; the clock offset
        is added from a :class:`~attune_monitor.acquisition.lsl.ClockOffset` (the inlet's own clock
        synchronisation would hold more memory for as long as it lives).
        """
        from .lsl import ClockOffset, pylsl

        for key, info in self.marker_streams().items():
            with self._lock:
                if key in self._marker_inlets or info.uid() in self._ended:
                    continue
                d = self._known[key]
            try:
                inlet = pylsl.StreamInlet(info, max_buflen=MARKER_QUEUE_SECONDS, recover=False,
                                          processing_flags=pylsl.proc_monotonize)
                inlet.open_stream(self.discover_timeout)
            except Exception as exc:  # noqa: BLE001 - timeout / lost: the next scan tries again
                logger.info("cannot follow markers of %r yet (%s)", info.name(), exc)
                continue
            clock = ClockOffset(info)
            clock.measure(self.discover_timeout)  # the first estimate takes ~0.6 s: poll_markers waits for it
            with self._lock:
                self._marker_inlets[key] = (inlet, d, clock)
                self._marker_limits.setdefault(key, _MarkerLimit())
            logger.info("following markers of %r", info.name())

    def _mark_ended(self, uid: str) -> None:
        """Liblsl saw the connection to run ``uid`` end: a uid never comes back, forget it (called with the lock)."""
        self._ended[uid] = None
        for old in list(self._ended)[:-1000]:
            del self._ended[old]

    def _refuse_stream(self, d: StreamDescriptor, why: str) -> None:
        """Leave a live stream out for good (its header cannot be right), and say so once (called with the lock)."""
        self._unusable[d.key] = (d.uid, d.name, why)
        report = (d.key, d.uid, "unusable")
        if report not in self._reported:
            self._reported.add(report)
            self._notices.append(why)
            logger.warning("%s", why)

    def poll_markers(self) -> list:
        """New samples of the event / marker streams since the last call, in time order.

        Each stream is rate limited (:class:`_MarkerLimit`: at most :data:`MARKER_RATE` a second on average,
        bursts of :data:`MARKER_BURST`; at most :data:`MARKER_PULL` samples pulled a call): a stream flooding
        markers cannot grow the session's memory or slow its ticks. What is left out is counted and said
        (:meth:`notices`, the log, the status warnings).

        Returns
        -------
        markers : list of (float, str, str)
            ``(LSL timestamp, stream name, text)``: string samples as sent (several channels joined with
            ``" | "``), an mne-lsl annotation stream's samples as their descriptions
            (:func:`attune_monitor.acquisition.convention.marker_texts`); samples that say nothing are left out.
        """
        from .convention import marker_texts
        from .lsl import pylsl

        with self._lock:
            inlets = list(self._marker_inlets.items())
        out = []
        now = time.monotonic()
        for key, (inlet, d, clock) in inlets:
            offset = clock.measure()
            if offset is None:  # its clock not measured yet: its markers wait in the inlet's queue
                continue
            try:
                vals, ts = inlet.pull_chunk(timeout=0.0, max_samples=MARKER_PULL)
            except pylsl.util.LostError:
                with self._lock:  # this run ended: the scan takes the stream up again when it comes back
                    self._marker_inlets.pop(key, None)
                    self._mark_ended(d.uid)
                clock.close()
                logger.warning("marker stream %r ended; following it again if it comes back", d.name)
                continue
            limit = self._marker_limits.setdefault(key, _MarkerLimit())
            kept = limit.admit(len(ts), now)
            if kept < len(ts):  # newest first: the view is live
                vals, ts = vals[len(ts) - kept:], ts[len(ts) - kept:]
            out += [(float(t) + offset, d.name, text) for text, t in zip(marker_texts(d, vals), ts) if text]
            msg = limit.report(d.name, now)
            if msg:
                with self._lock:
                    self._notices.append(msg)
                logger.warning("%s", msg)
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
        """The stream receivers by identity key (a copy of the mapping).

        ``{key: StreamReceiver}`` (a copy of the mapping; key: the stream's identity,
        :attr:`attune_monitor.acquisition.convention.StreamDescriptor.key`).
        """
        with self._lock:
            return dict(self._receivers)

    def marker_streams(self) -> dict:
        """The event / marker streams seen (another app's experiment markers), by identity key.

        ``{key: pylsl.StreamInfo}`` of the event / marker streams seen (another app's experiment markers):
        they are no one's physiology, but a recording of the session keeps them, as LabRecorder would
        (:func:`attune_monitor.acquisition.convention.is_marker_stream`; the session's ``match`` / ``accept`` filters
        apply).
        """
        from .convention import is_marker_stream

        with self._lock:
            return {k: self._infos[k] for k, d in self._known.items() if is_marker_stream(d) and k in self._infos}

    def receiver_for(self, participant: str, modality: str):
        """The primary receiver of ``participant``'s ``modality`` (``"hr"`` / ``"eda"``), or ``None``."""
        a: AssignedStream | None = self.assignment.primary(participant, modality)
        if a is None:
            return None
        with self._lock:
            return self._receivers.get(a.descriptor.key)

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
            duplicates = list(self._duplicates.values())
            unusable = list(self._unusable.values())
            names = {k: d.name for k, (_, d, _) in self._marker_inlets.items()}
            flooding = [lim.report_total(names.get(k, k)) for k, lim in self._marker_limits.items() if lim.dropped]
        primary = {}
        for a in assignment.streams:
            if a.primary:
                primary[(a.participant, a.modality)] = a.descriptor.key
        return SessionStatus(
            time=time.time(), participants=assignment.participants,
            streams=[r.status() for _, r in sorted(receivers, key=lambda kv: kv[0])],
            primary=primary,
            warnings=list(assignment.warnings) + duplicates + [why for _, _, why in unusable] + flooding,
            unassigned=[(d.name, reason) for d, reason in assignment.unassigned] + [
                (name, why) for _, name, why in unusable],
        )

    def stream_info(self, key: str):
        """The resolved ``pylsl.StreamInfo`` of stream ``key``, ``None`` when unknown.

        The resolved ``pylsl.StreamInfo`` of stream ``key`` (an identity key of :attr:`receivers` or
        :meth:`marker_streams`): the run its receiver receives now, else the run first adopted; ``None`` when
        unknown.
        """
        with self._lock:
            rec = self._receivers.get(key)
            return rec.info if rec is not None else self._infos.get(key)

    @property
    def duplicates(self) -> dict[str, str]:
        """``{identity key: message}`` of the identities several live streams claim now (a copy)."""
        with self._lock:
            return dict(self._duplicates)
