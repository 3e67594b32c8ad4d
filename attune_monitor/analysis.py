"""Analyse a whole recording with the live pipeline: the library behind ``attune analyze``.

A layer over :mod:`attune_monitor.acquisition` (the recording, replayed as a
source) and :mod:`attune_monitor.dsp` (the session pipeline); no Qt. The GUI's
runner (:mod:`attune_monitor.ui.runner`) drives the very same pipeline, built
by :func:`make_pipeline` and fed by :func:`feed`, so replaying a recording
live and analysing it here give the same episodes.

Example
-------
>>> from attune_monitor.acquisition import read_recording
>>> from attune_monitor.analysis import analyze_recording
>>> analysis = analyze_recording(read_recording("recordings/sample-couple.xdf"))  # doctest: +SKIP
>>> [(ep.pair, round(ep.onset_s)) for ep in sorted_episodes(analysis.episodes)]  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from attune_monitor.acquisition.files import is_shared_event, marker_words
from attune_monitor.dsp.arousal import away_at, away_before_flag
from attune_monitor.dsp.events import EpisodeOpened, EpisodeReopened, Event, StateChanged
from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot

__all__ = ["Analysis", "analyze_recording", "make_pipeline", "feed", "sorted_episodes"]


def sorted_episodes(episodes) -> list:
    """Episodes in the analysis document's order: by onset, then pair."""
    return sorted(episodes, key=lambda e: (e.onset_s, tuple(e.pair)))


def make_pipeline(source, config: PipelineConfig, modalities=None) -> SessionPipeline:
    """A pipeline whose slots are the source's inputs.

    Parameters
    ----------
    source : object
        A source (``source.inputs``, ``source.origin``).
    config : PipelineConfig
    modalities : iterable of {"hr", "eda"} | None
        Use only these signals (the "signals used" setting); default: every input.

    Raises
    ------
    ValueError
        When fewer than 2 people have a stream of the chosen modalities.
    """
    inputs = list(source.inputs)
    keep = list(range(len(inputs)))
    if modalities is not None:
        modalities = tuple(modalities)
        bad = [m for m in modalities if m not in ("hr", "eda")]
        if bad or not modalities:
            raise ValueError(
                f"Invalid value for 'modalities': expected one or both of hr, eda, but got {modalities!r}.")
        keep = [i for i, s in enumerate(inputs) if s.modality in modalities]
        people = list(dict.fromkeys(inputs[i].participant for i in keep))
        if len(people) < 2:
            raise ValueError(
                f"With signals used = {' + '.join(modalities)}, only {len(people)} participant(s) have a stream "
                f"({', '.join(people) or 'none'}); synchrony needs 2. Choose other signals (Settings, or --signals).")
    slots = [Slot(inputs[i].participant, inputs[i].kind, inputs[i].srate, inputs[i].name, inputs[i].averaging_s)
             for i in keep]
    people = list(dict.fromkeys(s.participant for s in slots))
    pipe = SessionPipeline(slots, origin=source.origin, config=config, participants=people)
    recording = getattr(source, "recording", None)
    if recording is not None and hasattr(recording, "event_markers"):
        # a recording's markers are known in advance: every pair re-baselines at each shared event
        for t, _name, text in recording.event_markers():
            if is_shared_event(text):
                pipe.note_shared_event(t - source.origin, marker_words(text))
    if len(keep) != len(inputs):
        pipe.input_map = {src: k for k, src in enumerate(keep)}  # source slot -> pipeline slot (see feed)
    return pipe


def feed(pipeline: SessionPipeline, chunks) -> None:
    """Push a source's chunks into the pipeline (chunks of inputs the pipeline does not use are dropped)."""
    imap = getattr(pipeline, "input_map", None)
    for slot, ts, vs in chunks:
        if imap is not None:
            slot = imap.get(slot)
            if slot is None:
                continue
        pipeline.push(slot, ts, vs)


@dataclass
class Analysis:
    """Everything ``attune analyze`` reports about one recording.

    Times are session seconds (the pipeline's origin; ``origin`` is its time stamp).

    Attributes
    ----------
    arousal_t : ndarray, shape (n_sec,)
        Session times of the person-level arousal values (one a second, within the recording).
    arousal : ndarray, shape (n_people, n_sec)
        Each person's arousal log-likelihood ratio ``L`` ("moving away from the group" vs "in tune",
        :mod:`attune_monitor.dsp.divergence`), smoothed as the live view and the detector do (mean of the last
        ``smooth_s`` seconds; NaN: unknown).
    arousal_state : ndarray of uint8, shape (n_people, n_sec)
        State codes into :data:`attune_monitor.dsp.divergence.AROUSAL_STATES` (0 learning baseline, 1 with the group,
        2 moving away climbing, 3 moving away flattening), as :class:`attune_monitor.dsp.divergence.ArousalTracker`
        gives them
        live (threshold = the preset's ``arousal_k``; in a couple only the likelier of the two mirror readings).
    arousal_threshold : float
        The preset's ``arousal_k``: ``L`` at or above it is "moving away".
    flag_times : dict
        ``episode id -> [session times (s)]`` at which the episode was flagged (and re-flagged when it reopened).
    markers : list of (float, str, str)
        Recorded markers, ``(session time (s), stream name, text)``: the facilitator's (``Attune markers``) and
        other apps' event streams (:meth:`attune_monitor.acquisition.files.Recording.event_markers`).
    state_changes : list of (float, tuple, str)
        Every pair state change, ``(session time (s), pair, new state)`` in time order (armed / not measurably
        in tune / out of tune, see :data:`attune_monitor.dsp.detector.STATES`).
    """

    recording: str
    duration_s: float
    participants: list
    streams: dict
    pairs: list
    modalities: tuple
    fs: float
    step_s: float
    state_changes: list = field(default_factory=list)
    window_s: float = 30.0
    grid: dict = field(default_factory=dict)       # modality -> (n_people, n) values
    quality: dict = field(default_factory=dict)    # modality -> (n_people, n) codes
    sync: dict = field(default_factory=dict)       # modality -> {"t", "sync", "chance", ...} full series
    episodes: list = field(default_factory=list)
    signal_loss: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    origin: float = 0.0
    arousal_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    arousal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    arousal_state: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    arousal_threshold: float = math.nan
    flag_times: dict = field(default_factory=dict)
    markers: list = field(default_factory=list)

    def moving_away(self, pair, times) -> dict:
        """Who of ``pair`` was moving away in their arousal at any of ``times`` (session s), and which way.

        Parameters
        ----------
        pair : sequence of str
            Participants to look at (in this order).
        times : sequence of float
            Session times; each is matched to the arousal second within half a step of it.

        Returns
        -------
        away : dict
            ``{person: "climbing" | "flattening"}``; the first time a person was away decides their flavour.
        """
        return away_at(self.arousal_t, self.arousal_state, self.participants, pair, times, self.step_s)

    def episode_arousal(self) -> list[dict]:
        """Per episode, who of its pair was moving away in arousal before it was flagged.

        Per episode, in the document's order (:func:`sorted_episodes`), who of its pair was
        moving away in their arousal before it was flagged (any second from its onset to the flag, or at a
        re-flag; as the live view records it): ``{person: "climbing" | "flattening"}`` (may be empty).
        """
        return [away_before_flag(self.arousal_t, self.arousal_state, self.participants, ep.pair, ep.onset_s,
                                 self.flag_times.get(ep.id, [ep.flagged_s]), self.step_s)
                for ep in sorted_episodes(self.episodes)]


def analyze_recording(recording, config: PipelineConfig | None = None, assign=None, progress=None,
                      chunk_s: float = 120.0, modalities=None) -> Analysis:
    """Run the live pipeline over a whole recording as fast as possible.

    Parameters
    ----------
    recording : attune_monitor.acquisition.Recording
        As :func:`attune_monitor.acquisition.read_recording` gives it.
    config : PipelineConfig | None
        Pipeline settings (synchrony window, detector preset ...); default ``PipelineConfig()``.
    assign : callable | None
        Participant assignment (roster).
    progress : callable | None
        ``progress(done_s, total_s)`` after every chunk.
    chunk_s : float
        Session seconds handed to the pipeline per step (results do not depend on it).
    modalities : iterable of {"hr", "eda"} | None
        Use only these signals (default: all).

    Returns
    -------
    analysis : Analysis
    """
    from attune_monitor.acquisition.sources import RecordingSource

    config = config or PipelineConfig()
    source = RecordingSource(recording, speed=math.inf, assign=assign)
    pipe = make_pipeline(source, config, modalities)
    grids = {m: [] for m in pipe.modalities}
    quals = {m: [] for m in pipe.modalities}
    wins = {m: [] for m in pipe.modalities}
    events: list[Event] = []
    n = len(pipe.participants)
    dcfg = pipe.detector.cfg
    ar_t, ar_l, ar_c = [], [], []

    def collect(upd):
        for m in pipe.modalities:
            if upd.n_new:
                grids[m].append(upd.grid[m])
                quals[m].append(upd.quality[m])
            if m in upd.windows and upd.windows[m]["t"].size:
                wins[m].append(upd.windows[m])
        at = np.asarray(upd.arousal_t, dtype=float)
        if at.size:
            # the pipeline's reading of each person's arousal: the live view's (smoothing, threshold, couple rule)
            ar_t.append(at)
            ar_l.append(upd.arousal_smooth)
            ar_c.append(upd.arousal_state)
        events.extend(upd.events)

    t = 0.0
    while True:
        t = min(t + chunk_s, source.duration_s)
        chunks, until, _ = source.poll(horizon_s=t)
        feed(pipe, chunks)
        collect(pipe.advance(until))
        if progress:
            progress(t, source.duration_s)
        if t >= source.duration_s:
            break
    collect(pipe.flush(source.end))
    episodes = pipe.finish()
    streams = {}
    for spec in source.inputs:
        streams.setdefault(spec.participant, []).append(spec.name)
    sync = {}
    for m, ws in wins.items():
        if not ws:  # shorter than one synchrony window (or no overlap): no series, as if the modality had none
            continue
        parts: dict = {}
        for w in ws:
            for k, v in w.items():
                parts.setdefault(k, []).append(v)
        sync[m] = {k: np.concatenate(v, axis=-1) for k, v in parts.items()}
    at = np.concatenate(ar_t) if ar_t else np.zeros(0)
    al = np.concatenate(ar_l, axis=1) if ar_l else np.zeros((n, 0))
    ac = np.concatenate(ar_c, axis=1) if ar_c else np.zeros((n, 0), np.uint8)
    inside = at <= source.duration_s + 1e-9  # offline: nothing past the end of the recording
    flags: dict = {}
    for ev in events:
        if isinstance(ev, (EpisodeOpened, EpisodeReopened)):
            flags.setdefault(ev.episode.id, []).append(float(ev.t))
    return Analysis(
        recording=str(recording.path), duration_s=float(source.duration_s), participants=pipe.participants,
        streams=streams, pairs=pipe.pairs, modalities=pipe.modalities, fs=pipe.fs, step_s=config.step_s,
        grid={m: np.concatenate(g, axis=1) if g else np.zeros((n, 0)) for m, g in grids.items()},
        quality={m: np.concatenate(q, axis=1) if q else np.zeros((n, 0), np.uint8) for m, q in quals.items()},
        sync=sync, episodes=episodes, signal_loss=list(pipe.loss.periods), problems=list(recording.problems),
        notes=list(source.notes), origin=source.origin,
        window_s=float(config.window_s),
        state_changes=[(float(ev.t), tuple(ev.pair), str(ev.state)) for ev in events
                       if isinstance(ev, StateChanged) and ev.pair is not None],
        arousal_t=at[inside], arousal=al[:, inside], arousal_state=ac[:, inside],
        arousal_threshold=float(dcfg.arousal_k), flag_times=flags,
        markers=[(t - source.origin, name, text) for t, name, text in getattr(recording, "event_markers", list)()],
    )
