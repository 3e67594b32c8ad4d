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
        """New chunks ``[(slot, timestamps (n,), values (n,))]``, the time the pipeline may advance to (or None),
        and a per-person signal status.
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
    def position_s(self) -> float: ...

    @property
    def speed(self) -> float: ...

    @property
    def paused(self) -> bool: ...

    @property
    def finished(self) -> bool: ...

    @property
    def end(self) -> float: ...

    def start_clock(self) -> None: ...

    def seek(self, t_s: float) -> None: ...

    def take_seek(self) -> float | None: ...

    def set_speed(self, speed: float) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@runtime_checkable
class MarkerSource(Source, Protocol):
    """Live LSL: other apps' markers as they arrive, ``[(stream time, stream name, text)]``."""

    def poll_markers(self) -> list: ...


@runtime_checkable
class NewStreamsSource(Source, Protocol):
    """Live LSL: names of streams that appeared after the session started (not in its slots)."""

    def new_streams(self) -> list[str]: ...


@runtime_checkable
class SessionSource(Source, Protocol):
    """A source over a :class:`~attune_monitor.acquisition.live.LiveSession` (what the recorder records)."""

    session: Any
