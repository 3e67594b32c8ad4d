"""What the runner needs from a source of samples: typed protocols instead of ``hasattr`` checks.

:class:`Source` is what every source gives (:class:`~attune_monitor.acquisition.sources.LiveSource`,
:class:`~attune_monitor.acquisition.sources.RecordingSource`); the optional capabilities are separate
protocols, checked with ``isinstance`` (they are ``runtime_checkable``):

* :class:`ReplaySource`: a replayed recording (seek, speed, pause, a clock started on demand, an end);
* :class:`MarkerSource`, :class:`NewStreamsSource`, :class:`SessionSource`: live LSL (other apps' markers as
  they come, streams that appear later, the session the recorder records).

The sources need not inherit from them; having the members is enough.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Source", "ReplaySource", "MarkerSource", "NewStreamsSource", "SessionSource"]


@runtime_checkable
class Source(Protocol):
    """Samples for the pipeline's slots.

    Attributes
    ----------
    inputs : list of InputSpec
        One per pipeline slot (participant, kind, rate, stream name).
    origin : float
        Stream time of session time 0 (s).
    """

    inputs: list
    origin: float

    def poll(self, *args: Any, **kwargs: Any) -> tuple[list, float | None, dict]:
        """Take what arrived since the last call.

        Returns the new chunks ``[(slot, timestamps (n,), values (n,))]``, the time the pipeline may advance to
        (or None) and a per-person signal status.
        """
        ...

    def close(self) -> None:
        """Release the source (idempotent)."""
        ...


@runtime_checkable
class ReplaySource(Source, Protocol):
    """A recording replayed on a clock that can be started, paused, sped up and moved."""

    recording: Any
    duration_s: float

    @property
    def position_s(self) -> float:
        """Session time handed out so far (s)."""
        ...

    @property
    def speed(self) -> float:
        """Replay speed, a multiple of real time (``inf``: as fast as possible)."""
        ...

    @property
    def paused(self) -> bool:
        """True while the replay clock is paused."""
        ...

    @property
    def finished(self) -> bool:
        """True once everything has been handed out (the runner then flushes the pipeline)."""
        ...

    @property
    def end(self) -> float:
        """Stream time of the last sample (s)."""
        ...

    def start_clock(self) -> None:
        """Start the replay clock now, from the current position."""
        ...

    def seek(self, t_s: float) -> None:
        """Continue the replay from session time ``t_s`` (s); the runner reprocesses up to it."""
        ...

    def take_seek(self) -> float | None:
        """The pending seek target (s), cleared; None when there is none."""
        ...

    def set_speed(self, speed: float) -> None:
        """Change the replay speed (a positive multiple of real time)."""
        ...

    def pause(self) -> None:
        """Stop the replay clock where it is."""
        ...

    def resume(self) -> None:
        """Start the paused replay clock again."""
        ...


@runtime_checkable
class MarkerSource(Source, Protocol):
    """Live LSL: other apps' markers as they arrive, ``[(stream time, stream name, text)]``."""

    def poll_markers(self) -> list:
        """Other apps' markers since the last call, ``[(stream time, stream name, text)]``."""
        ...


@runtime_checkable
class NewStreamsSource(Source, Protocol):
    """Live LSL: names of streams that appeared after the session started (not in its slots)."""

    def new_streams(self) -> list[str]:
        """Names of streams that appeared after the source was made (not in its slots)."""
        ...


@runtime_checkable
class SessionSource(Source, Protocol):
    """A source over a :class:`~attune_monitor.acquisition.live.LiveSession` (what the recorder records)."""

    session: Any
