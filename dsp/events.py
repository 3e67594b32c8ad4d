"""What the detector and the pipeline report: typed, immutable events.

Every event is a frozen dataclass derived from :class:`Event`, which carries ``t``, the session time (seconds
from the session origin) at which it happened. Each kind has a wire name, its class attribute ``type`` (e.g.
``StateChanged.type == "state"``), and :meth:`Event.to_dict` gives the plain dict that is written where events
are serialised (the recorder's ``Attune events`` stream): ``{"type": <wire name>, <field>: <value>, ...}`` with
JSON types only. Consumers tell kinds apart by class (``isinstance`` or ``match``), not by the wire name::

    for ev in update.events:
        match ev:
            case EpisodeOpened(pair=pair, episode=ep):
                ...
            case SignalLost(participant=who, modality=m):
                ...

Kinds and who raises them
-------------------------
Per pair's state machine (:class:`attune_monitor.dsp.detector.PairMachine`), a :class:`PairEvent`:
    :class:`StateChanged` (``"state"``), :class:`PairRupture` (``"pair_rupture"``), :class:`PairRepaired`
    (``"pair_repaired"``), :class:`PairLapsed` (``"pair_lapsed"``), :class:`PairInterrupted`
    (``"pair_interrupted"``). Of these, :class:`attune_monitor.dsp.detector.RuptureDetector` passes on only the
    state changes (naming the pair); it turns the others into episode events.
Per episode (:class:`attune_monitor.dsp.detector.RuptureDetector`), an :class:`EpisodeEvent`:
    :class:`EpisodeOpened` (``"episode_open"``), :class:`EpisodeReopened` (``"episode_update"``),
    :class:`EpisodeRepaired` (``"episode_repaired"``), :class:`EpisodeClosed` (``"episode_closed"``).
Per person and modality (:class:`attune_monitor.dsp.detector.SignalLossTracker`), a :class:`SignalEvent`:
    :class:`SignalLost` (``"signal_loss"``), :class:`SignalBack` (``"signal_back"``).
For everybody (:class:`attune_monitor.dsp.pipeline.SessionPipeline`):
    :class:`SharedEvent` (``"shared_event"``).

The :class:`~attune_monitor.dsp.detector.Episode` an episode event carries is the detector's own record of the
episode, which it keeps updating (depth, modalities, outcome) after the event: the event itself never changes, the
episode it points to may.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # (the detector imports this module)
    from .detector import Episode, PairState

__all__ = [
    "Event", "PairEvent", "StateChanged", "PairRupture", "PairRepaired", "PairLapsed", "PairInterrupted",
    "EpisodeEvent", "EpisodeOpened", "EpisodeReopened", "EpisodeRepaired", "EpisodeClosed",
    "SignalEvent", "SignalLost", "SignalBack", "SharedEvent", "EVENT_TYPES",
]

#: a field left out of :meth:`Event.to_dict` when it is None (it was absent from the dict events)
_OMIT_NONE = {"omit_none": True}


def _plain(value: Any) -> Any:
    """``value`` as a JSON type: tuples as lists, string enums as plain strings."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Something the detector or the pipeline reports, at session time ``t``.

    Attributes
    ----------
    t : float
        Session time (s) at which it happened.
    type : str
        The kind's wire name (a class attribute), the ``"type"`` of :meth:`to_dict`.
    """

    type: ClassVar[str] = ""
    #: fields that are not written by :meth:`to_dict` (they were not part of the dict events)
    _unwritten: ClassVar[tuple[str, ...]] = ()

    t: float

    def to_dict(self) -> dict[str, Any]:
        """The event as written to recordings: ``{"type": <wire name>, <field>: <value>, ...}``.

        Values are JSON types (pairs as lists, states as strings, an episode as
        :func:`attune_monitor.dsp.detector.episode_dict` gives it); a field marked optional is left out when it
        is None.

        Returns
        -------
        wire : dict
        """
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):
            if f.name in self._unwritten:
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _plain(value)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class PairEvent(Event):
    """An event of one pair's state machine.

    Attributes
    ----------
    pair : tuple of (str, str) | None
        The pair's participant ids; None from a machine used on its own (no detector to name the pair).
    """

    pair: tuple[str, str] | None = field(default=None, metadata=_OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged(PairEvent):
    """The pair's machine entered another state at ``t``.

    Attributes
    ----------
    state : PairState
        The new state.
    previous : PairState
        The state it left.
    """

    type: ClassVar[str] = "state"

    state: PairState
    previous: PairState


@dataclass(frozen=True, slots=True, kw_only=True)
class PairRupture(PairEvent):
    """The pair's evidence (or a member's tie to the group) reached its threshold at ``t``: a possible rupture.

    Attributes
    ----------
    onset_s : float
        When it began (s), dated back from the flag at ``t``.
    who : tuple of str | None
        The person whose tie to the group raised it (groups); None when the pair's own evidence did.
    """

    type: ClassVar[str] = "pair_rupture"

    onset_s: float
    who: tuple[str, ...] | None = field(default=None, metadata=_OMIT_NONE)


@dataclass(frozen=True, slots=True, kw_only=True)
class PairRepaired(PairEvent):
    """The pair's possible rupture was repaired; known at ``t``.

    Attributes
    ----------
    offset_s : float
        When it ended (s): when its severity fell below the repaired level, dated back, never before the flag
        or the deepest point.
    below_s : float
        When the severity fell below the repaired level (s), not dated back.
    """

    type: ClassVar[str] = "pair_repaired"

    offset_s: float
    below_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PairLapsed(PairEvent):
    """The pair's possible rupture was not repaired within ``lapse_s`` of its onset: it closes at ``t``, unrepaired.

    Attributes
    ----------
    offset_s : float
        When it was closed (s); equals ``t``.
    """

    type: ClassVar[str] = "pair_lapsed"

    offset_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PairInterrupted(PairEvent):
    """The pair's possible rupture was closed at ``t`` by a shared event (a marker, a task switch).

    Attributes
    ----------
    offset_s : float
        When it was closed (s); equals ``t``.
    """

    type: ClassVar[str] = "pair_interrupted"

    offset_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeEvent(Event):
    """An episode of one pair (a possible rupture, fused over modalities) changed at ``t``.

    Attributes
    ----------
    pair : tuple of (str, str)
        The pair's participant ids.
    episode : Episode
        The detector's record of the episode (the same object in every event of that episode; it goes on
        changing after the event).
    """

    pair: tuple[str, str]
    episode: Episode

    def to_dict(self) -> dict[str, Any]:
        """As :meth:`Event.to_dict`, the episode as :func:`attune_monitor.dsp.detector.episode_dict` gives it."""
        from .detector import episode_dict

        out = Event.to_dict(self)
        out["episode"] = episode_dict(self.episode)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeOpened(EpisodeEvent):
    """A new episode: the pair was flagged at ``t`` (a prompt to check in)."""

    type: ClassVar[str] = "episode_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeReopened(EpisodeEvent):
    """The pair was flagged again at ``t`` soon after a repair: its last episode is open again.

    Its wire name is ``"episode_update"``.
    """

    type: ClassVar[str] = "episode_update"


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeRepaired(EpisodeEvent):
    """The episode was repaired (known at ``t``; its ``offset_s`` says when it ended)."""

    type: ClassVar[str] = "episode_repaired"


@dataclass(frozen=True, slots=True, kw_only=True)
class EpisodeClosed(EpisodeEvent):
    """The episode was closed at ``t`` without a repair.

    Its outcome says why: ``"unrepaired"`` (a long lapse) or ``"interrupted"`` (a shared event).
    """

    type: ClassVar[str] = "episode_closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalEvent(Event):
    """A period during which one person's signal of one modality was missing or unreliable.

    ``t`` is when the event happened (the loss's onset, the return's offset); it is not written by
    :meth:`to_dict` (the dict events had none).

    Attributes
    ----------
    participant : str
    modality : str
        ``"hr"`` or ``"eda"``.
    onset_s : float
        Start of the period (s).
    offset_s : float | None
        Its end (s); None while it lasts.
    reason : str
        The most common reason over the period (:data:`attune_monitor.dsp.detector.REASONS`).
    """

    _unwritten: ClassVar[tuple[str, ...]] = ("t",)

    participant: str
    modality: str
    onset_s: float
    offset_s: float | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalLost(SignalEvent):
    """The signal has been unusable long enough to count as lost (``t`` = ``onset_s``; ``offset_s`` None)."""

    type: ClassVar[str] = "signal_loss"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalBack(SignalEvent):
    """The lost signal is back (``t`` = ``offset_s``)."""

    type: ClassVar[str] = "signal_back"


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedEvent(Event):
    """Something everybody shared happened at ``t``: every pair is re-baselined, not flagged.

    Attributes
    ----------
    what : str
        What it was, in words (e.g. "everybody's arousal moved at once").
    """

    type: ClassVar[str] = "shared_event"

    what: str


#: wire name -> event class, for every kind
EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (StateChanged, PairRupture, PairRepaired, PairLapsed, PairInterrupted, EpisodeOpened,
                              EpisodeReopened, EpisodeRepaired, EpisodeClosed, SignalLost, SignalBack, SharedEvent)
}
