"""Find the LSL streams that are visible now, with their full headers.

``resolve_streams`` returns headers *without* their ``desc`` (where Attune's
convention keeps the participant and the units). :func:`discover` therefore
opens a short-lived inlet per stream and asks for the full header with
``inlet.info(timeout)``, in parallel, every wait bounded. Streams whose full
header does not arrive in time are still listed, described from the short
header (no participant, unit unknown) and marked so.

A stream is found again by its identity (name, type, source_id and hostname:
:func:`identity_predicate`, :func:`resolve_identity`), not by its source_id
alone: mne-lsl players share the default source_id "MNE-LSL". Several live
streams with one identity are duplicates (:func:`duplicates`).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatchcase

from .convention import StreamDescriptor, describe, rate_is_implausible, unusable_reason
from .lsl import pylsl, stream_xml

__all__ = [
    "DiscoveredStream", "matches", "full_descriptor", "xpath_literal", "identity_predicate", "resolve_identity",
    "duplicates", "duplicate_message", "fetch_descriptors", "discover"
]

logger = logging.getLogger(__name__)


@dataclass
class DiscoveredStream:
    """A visible stream: its resolved ``info`` (to open an inlet) and what its header says.

    Attributes
    ----------
    info : pylsl.StreamInfo
        As resolved (no desc); pass it to :class:`attune_monitor.acquisition.inlet.StreamReceiver`.
    descriptor : StreamDescriptor
        Built from the full header when ``full_header`` is true.
    full_header : bool
        False when the full header (desc) did not arrive within the timeout, or was not asked for: a header
        claiming an implausible rate (:func:`attune_monitor.acquisition.convention.rate_is_implausible`) gets no inlet
        at all.
    """

    info: object
    descriptor: StreamDescriptor
    full_header: bool = True


def matches(descriptor: StreamDescriptor, pattern: str | None) -> bool:
    """True if ``pattern`` (a glob, case-insensitive) matches the stream's name, source_id, hostname or type."""
    if not pattern:
        return True
    pat = pattern.lower()
    return any(fnmatchcase((v or "").lower(), pat)
               for v in (descriptor.name, descriptor.source_id, descriptor.hostname, descriptor.type))


def full_descriptor(info, timeout: float = 1.0, peek: float = 0.0) -> tuple[StreamDescriptor | None, bool]:
    """The descriptor of one resolved stream from its full header (desc included).

    Parameters
    ----------
    info : pylsl.StreamInfo
        A resolved stream.
    timeout : float
        Seconds to wait for the full header.
    peek : float
        When > 0 and the header declares no unit, pull up to this many seconds
        of samples to guess the unit from their magnitude.

    Returns
    -------
    descriptor : StreamDescriptor | None
        ``None`` when the stream vanished meanwhile.
    full : bool
        False when the full header did not arrive in time (the short one was used).
    """
    short = describe(stream_xml(info))
    if rate_is_implausible(short):
        # no inlet at all: liblsl reserves its queue by the claimed rate as it makes one (1e8 Hz: gigabytes)
        return short, False
    inlet = pylsl.StreamInlet(info, max_buflen=1, recover=False)
    try:
        try:
            full = inlet.info(timeout)
        except pylsl.util.LostError:
            logger.info("stream %r vanished while its header was read; not listed", info.name())
            return None, False
        except Exception as exc:  # TimeoutError: list it with what the short header says
            logger.warning("stream %r: full header not received within %.1f s (%s); participant and unit unknown",
                           info.name(), timeout, exc)
            return describe(stream_xml(info)), False
        d = describe(stream_xml(full))
        # (never a stream with an implausible rate: the inlet's queue, sized by the claim, could take gigabytes)
        if peek > 0 and d.kind is not None and d.scale is None and unusable_reason(d) is None:
            try:
                samples, _ = inlet.pull_chunk(timeout=peek, max_samples=16, as_numpy=True)
                if len(samples):
                    d.guess_scale(samples[:, min(d.channel_index, samples.shape[1] - 1)])
            except Exception as exc:  # the stream vanished meanwhile: unit stays unknown
                logger.info("stream %r: could not peek at samples: %s", info.name(), exc)
        return d, True
    finally:
        try:
            inlet.close_stream()
        except Exception:
            pass
        del inlet


def xpath_literal(text: str) -> str:
    """``text`` as an XPath 1.0 string literal (for liblsl's resolve predicates), quotes and all."""
    if "'" not in text:
        return f"'{text}'"
    if '"' not in text:
        return f'"{text}"'
    parts = text.split("'")
    return "concat(" + ", \"'\", ".join(f"'{p}'" for p in parts) + ")"


def identity_predicate(d: StreamDescriptor) -> str:
    """The liblsl resolve predicate for streams claiming ``d``'s identity.

    The liblsl resolve predicate that matches every stream claiming ``d``'s identity
    (:attr:`~attune_monitor.acquisition.convention.StreamDescriptor.identity`: name, type, source_id and hostname).
    """
    fields = zip(("name", "type", "source_id", "hostname"), d.identity)
    return " and ".join(f"{field}={xpath_literal(value)}" for field, value in fields)


def resolve_identity(d: StreamDescriptor, timeout: float) -> list:
    """Every live stream claiming ``d``'s identity, found within ``timeout`` seconds (bounded).

    Returns as soon as two are found (a duplicate is then known); with one, after ``timeout``.

    Returns
    -------
    infos : list of pylsl.StreamInfo
    """
    return list(pylsl.resolve_bypred(identity_predicate(d), 2, timeout))


def duplicates(streams) -> dict[str, list]:
    """Visible streams that claim one identity.

    ``{identity key: [stream, ...]}`` for every identity that more than one live ``uid`` claims (``streams``:
    :class:`DiscoveredStream` or :class:`~attune_monitor.acquisition.convention.StreamDescriptor`). Attune cannot tell
    such streams apart and uses none of them (:func:`duplicate_message`).
    """
    groups: dict[str, list] = {}
    for s in streams:
        d = getattr(s, "descriptor", s)
        groups.setdefault(d.key, []).append(s)
    return {k: v for k, v in groups.items() if len({getattr(s, "descriptor", s).uid for s in v}) > 1}


def duplicate_message(d: StreamDescriptor, n: int, using: str | None = None) -> str:
    """One sentence about ``n`` live streams claiming ``d``'s identity, and how to fix it.

    ``using``: what Attune does with them (default: it uses none of them).
    """
    using = using or "Attune cannot tell them apart and uses none of them"
    return (f"{n} streams claim to be the same stream {d.name!r} (type {d.type!r}, source_id {d.source_id!r}, host "
            f"{d.hostname!r}): {using}. Give each its own name or source_id (mne-lsl: PlayerLSL(name=..., "
            "source_id=...)), or stop the extra one.")


def fetch_descriptors(infos, header_timeout: float = 1.0, peek: float = 0.0) -> list[DiscoveredStream]:
    """Full headers of resolved streams, fetched in parallel (each wait bounded by ``header_timeout`` seconds).

    Returns
    -------
    streams : list of DiscoveredStream
        One per info whose stream did not vanish meanwhile, in the order of ``infos``.
    """
    infos = list(infos)
    if not infos:
        return []
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=min(8, len(infos)), thread_name_prefix="attune-discover") as pool:
        results = list(pool.map(lambda i: full_descriptor(i, header_timeout, peek), infos))
    logger.debug("fetched %d full headers in %.2f s", len(infos), time.monotonic() - t0)
    return [DiscoveredStream(info, d, full) for info, (d, full) in zip(infos, results) if d is not None]


def discover(timeout: float = 1.0, *, header_timeout: float | None = None, match: str | None = None,
             peek: float = 0.0, exclude: set[str] | None = None, resolver=None) -> list[DiscoveredStream]:
    """Resolve every visible stream and fetch its full header.

    Parameters
    ----------
    timeout : float
        Seconds to wait for streams to answer the resolve.
    header_timeout : float | None
        Seconds to wait for each full header (in parallel); default ``max(0.5, timeout)``.
    match : str | None
        Glob on name / source_id / hostname / type (case-insensitive); only matching streams are kept.
    peek : float
        Seconds to peek at samples of streams without a declared unit (see :func:`full_descriptor`).
    exclude : set of str | None
        Stream uids to skip (already known).
    resolver : pylsl.ContinuousResolver | None
        Take the streams a continuous resolver has seen instead of resolving
        now (``timeout`` then only bounds nothing but the header fetch default).

    Notes
    -----
    liblsl answers a resolve in waves: a wait of 0.5 s often sees only part of
    the streams on this machine, 1 s or more sees them all; hence the 1 s default.

    Returns
    -------
    streams : list of DiscoveredStream
        Sorted by (name, source_id); one entry per stream uid.
    """
    if not timeout > 0:
        raise ValueError(f"Invalid value for 'timeout': expected seconds > 0, but got {timeout}.")
    header_timeout = max(0.5, timeout) if header_timeout is None else header_timeout
    infos = resolver.results() if resolver is not None else pylsl.resolve_streams(wait_time=timeout)
    seen, todo = set(exclude or ()), []
    for info in infos:
        uid = info.uid()
        if uid in seen:
            continue
        seen.add(uid)
        short = describe(stream_xml(info))
        if match and not matches(short, match):
            continue
        todo.append(info)
    out = fetch_descriptors(todo, header_timeout, peek)
    out.sort(key=lambda s: (s.descriptor.name, s.descriptor.source_id, s.descriptor.hostname, s.descriptor.uid))
    return out
