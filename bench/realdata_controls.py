"""Real-data controls for the rupture prompts and the synchrony users see (issue 16, points 4 and 6).

Data: EmoPairCompete (``../shared/realdata/emopaircompete``, see ``../shared/realdata/README.md``), Empatica
E4 exports of teams of two doing 4 rounds x 3 phases (rest, competition, recovery; ~5 min each, 1-2 min
unrecorded between phases). ``D1_1``: four teams in **one** room and session (``team_info.csv``);
``D1_5``: one more team, another day. Nothing is copied into the project; without the folder this script
says so and exits 0.

Pairs analysed, each as a dyad through :func:`attune_monitor.analysis.analyze_recording` (the live pipeline):

* **real** -- the 4 ``D1_1`` teams and the ``D1_5`` team (5 pairs);
* **same-room pseudo** -- every ``D1_1`` pair of people of *different* teams (24): same room, clock and task
  phases, never interacting, so every prompt on them is false by construction;
* **cross-session pseudo** -- a ``D1_5`` person with a ``D1_1`` person (16). Aligned on phase starts: for
  each round/phase folder both people have, the ``D1_5`` person's samples (all signals of that folder) are
  shifted by ``start(D1_1 person's folder) - start(own folder)`` (start = the earliest sample of any
  signal in the folder), so both start that phase at the same instant, and are cut at the end of the
  ``D1_1`` person's folder; the ``D1_1`` person's data are untouched.

Reported (per group): hours of paired data (grid samples where both people have a valid value of at least
one modality), prompts (episodes) per paired hour, the share of paired time under a prompt (onset..offset,
an open prompt to the end), the longest prompt, and prompts that name a synchrony modality (``hr``/``eda``
in the episode's modalities). The synchrony users see (the detector's metric per modality,
:data:`attune_monitor.dsp.pipeline.DETECTOR_METRICS`, and their per-window Fisher-z mean "combined", as in the analysis
JSON) is compared between groups by AUC (Mann-Whitney, P(real > pseudo)), per pair over the session and per
*pair-phase*: a pair's Fisher-z mean of the windows lying wholly inside a recorded phase both people have
(the intersection of their folders of that round/phase). Pair-phases of one pair are not independent, so
the 95 % intervals come from a cluster bootstrap over pairs.

Heart inputs and metrics (issue point 4): every person's HR.csv (1 Hz device HR, dated back 5 s as the
pipeline does), BVP.csv (64 Hz PPG -> :class:`attune_monitor.dsp.peaks.BeatDetector` -> cleaned beats -> HR) and EDA.csv
go onto the 4 Hz grid with the pipeline's own preprocessors (:mod:`attune_monitor.dsp.heart`,
:mod:`attune_monitor.dsp.eda`), then
through :class:`attune_monitor.dsp.engine.SynchronyEngine` with every metric, for several windows; AUC real vs same-room
pseudo per pair-phase for each (signal, metric, window), also "minus chance" (per window Fisher z of r minus
Fisher z of its time-shifted-partner surrogate), and the same restricted to the pair-phases BVP beats cover.
The sweep's windows are every 5 s (the pipeline's every 1 s). The BVP beat HR is checked against HR.csv.

Semi-synthetic positives (splices): in each real pair, person B's signals are replaced for 60-180 s by
another person's real signals of the same time span (a same-room person; for ``D1_5``, whose room had one
team, a phase-aligned ``D1_1`` person), level-matched to B's mean over the 60 s before the splice (heart
rate shifted, skin conductance scaled, PPG standardised to B's mean and SD). Where a splice may go: after
the first 5 minutes of the pair's session, not within 60 s of a phase start, ending >= 60 s before the phase
ends, with the donor and B's reference minute recorded; and where the pair's unspliced run has no prompt
overlapping [start, end + 60 s] (a prompt that was there anyway says nothing). Splices in one run are >= 5 min
apart; each pair gets two runs (different phases). A splice is *detected* when a prompt's onset..offset (open:
to the end) overlaps [splice start, splice end + 60 s]. Recall is reported for all splices and for those that
start where the pair is armed (``attunement[].armed_spans`` of the analysis JSON, when the detector has
arming: a rupture needs an attunement to lapse from).

Usage::

    python bench/realdata_controls.py [--preset balanced] [--evidence learned|analytic] [--heart hr|ppg|rr|auto]
                                      [--window 30] [--jobs 2] [--quick] [--no-sweep] [--phase-markers]
                                      [--json out.json]

Full run about 4 min on 2 free cores (45 pair analyses + 10 splice runs ~190 s CPU, the sweep ~230 s CPU);
``--quick`` (8 + 4 pseudo-pairs, one splice run, the 30-s window) about 70 s. ``--phase-markers`` gives each
recording an experiment-style marker at every phase start (the pipeline re-baselines at shared events).

:func:`run_controls` is the entry point for other code (it takes a :class:`attune_monitor.dsp.detector.DetectorConfig`
or a preset name and returns a JSON-ready dict); the builders (:func:`load_people`, :func:`build_pair`,
:func:`splice_stream`) are used by ``tests/test_realdata_controls.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import itertools
import json
import math
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

# before numpy: the workers are single-threaded (the machine is shared)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("LSLAPICFG", str(ROOT / "acquisition" / "lsl_api.cfg"))

import numpy as np  # noqa: E402

#: Where the data live (beside the project's root); absent in a user's clone.
DATA = ROOT.parent / "shared" / "realdata" / "emopaircompete"
SESSIONS = ("D1_1", "D1_5")
#: Which heart stream kinds a run keeps (``auto``: every kind, the roster's preference decides).
HEART_KINDS = {"hr": ("hr",), "ppg": ("ppg",), "rr": ("rr",), "auto": ("hr", "ppg", "rr")}
PHASE_NAMES = {"phase1": "rest", "phase2": "competition", "phase3": "recovery"}
FS = 4.0
#: Nominal sample rates of the E4 files (for coverage checks).
RATE = {"eda": 4.0, "hr": 1.0, "ppg": 64.0}
SYNC_MODALITIES = ("hr", "eda")
#: Windows (s) and metrics of the point-4 sweep.
SWEEP_WINDOWS = (20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
SWEEP_METRICS = {"hr": ("pearson", "synchrony", "pearson_diff", "wcc_rmax", "phasic"),
                 "ppg": ("pearson", "synchrony", "pearson_diff", "wcc_rmax", "phasic"),
                 "eda": ("pearson", "synchrony", "pearson_diff", "wcc_rmax", "phasic", "concordance")}
SWEEP_LABEL = {"hr": "HR.csv", "ppg": "BVP beats", "eda": "EDA"}
#: A pair-phase mean needs windows with a value whose ends span at least this (s): 60 windows at the pipeline's
#: 1-s step, 12 at the sweep's 5-s step.
MIN_COVER_S = 60.0
#: Step (s) of the sweep's windows (the pipeline's is 1 s; a pair-phase mean of every 5th window is the same
#: number within noise, at a fifth of the cost).
SWEEP_STEP_S = 5.0
SPLICE_MIN_S, SPLICE_MAX_S = 60.0, 180.0
SPLICE_MARGIN_S = 60.0      # after a phase start; and the check window after a splice
SPLICE_SPACING_S = 300.0    # between splices of one run
SPLICE_SETTLE_S = 300.0     # no splice in the pair's first 5 minutes
SPLICE_REF_S = 60.0         # B's level is taken over this span before the splice
SPLICE_ARMED_S = 30.0       # a splice placed in an armed stretch starts at least this long into it


class DataMissing(RuntimeError):
    """The EmoPairCompete folder is not there (a fresh clone): skip, do not fail."""


# -- data --------------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """One round/phase folder of one person.

    Attributes
    ----------
    label : str
        ``"round_1/phase1"``.
    start, end : float
        Unix seconds of the earliest and the latest sample of any of its signals.
    streams : dict
        ``kind -> (timestamps (n,), values (n,))`` in canonical units (EDA uS, HR bpm, PPG au).
    """

    label: str
    start: float
    end: float
    streams: dict


@dataclass
class Person:
    """One participant: ``key`` (``"D1_1-ID_3"``, the participant id in every recording), team, folders."""

    session: str
    pid: str
    team: str
    segments: list
    descriptors: dict = field(default_factory=dict)  # kind -> StreamDescriptor (participant = key)

    @property
    def key(self) -> str:
        return f"{self.session}-{self.pid}"

    def segment(self, label: str):
        return next((s for s in self.segments if s.label == label), None)


def _teams(session_dir: Path) -> dict:
    """``pid -> team`` from ``team_info.csv`` (a session without one is a single team)."""
    f = session_dir / "team_info.csv"
    if not f.is_file():
        return {}
    with open(f, newline="") as fh:
        return {row["ID"]: f"{session_dir.name}/team{row['Team']}" for row in csv.DictReader(fh)}


def load_people(root=DATA, sessions=SESSIONS, people=None) -> dict:
    """Every person's E4 folders, read with :func:`attune_monitor.acquisition.files.load_e4_folder`.

    Parameters
    ----------
    root : Path
        The ``emopaircompete`` folder.
    sessions : sequence of str
    people : set of str | None
        Only these keys (``"D1_1-ID_1"``); default everybody.

    Returns
    -------
    people : dict
        ``key -> Person``.

    Raises
    ------
    DataMissing
        When ``root`` (or a session) is absent.
    """
    from attune_monitor.acquisition.files import load_e4_folder

    root = Path(root)
    out = {}
    for sess in sessions:
        sdir = root / sess
        if not sdir.is_dir():
            raise DataMissing(f"{sdir} is absent: the EmoPairCompete real data are only in the project's dev "
                              f"checkout (../shared/realdata/emopaircompete); nothing to measure.")
        teams = _teams(sdir)
        for pdir in sorted(d for d in sdir.iterdir() if d.is_dir() and d.name.startswith("ID_")):
            key = f"{sess}-{pdir.name}"
            if people is not None and key not in people:
                continue
            segs, desc = [], {}
            for folder in sorted({f.parent for f in pdir.rglob("EDA.csv")}):
                rec = load_e4_folder(folder, participant=key)
                streams = {}
                for s in rec.streams:
                    d = s.descriptor
                    if d.kind in ("eda", "hr", "ppg", "rr") and len(s.timestamps):
                        streams[d.kind] = (np.asarray(s.timestamps, float), np.asarray(s.signal, float))
                        desc.setdefault(d.kind, d)
                if not streams:
                    continue
                label = f"{folder.parent.name}/{folder.name}"
                segs.append(Segment(label, min(v[0][0] for v in streams.values()),
                                    max(v[0][-1] for v in streams.values()), streams))
            segs.sort(key=lambda s: s.start)
            out[key] = Person(sess, pdir.name, teams.get(pdir.name, f"{sess}/team"), segs, desc)
    return out


def real_pairs(people: dict) -> list:
    """Partners: people of the same team of the same session, as ``(key_a, key_b)``."""
    keys = sorted(people)
    return [(a, b) for a, b in itertools.combinations(keys, 2) if people[a].team == people[b].team]


def same_room_pairs(people: dict, session: str = "D1_1") -> list:
    """Pseudo-pairs: people of one session in *different* teams."""
    keys = sorted(k for k in people if people[k].session == session)
    return [(a, b) for a, b in itertools.combinations(keys, 2) if people[a].team != people[b].team]


def cross_session_pairs(people: dict, shifted: str = "D1_5", fixed: str = "D1_1") -> list:
    """Pseudo-pairs across sessions: ``(key of the shifted person, key of the fixed one)``."""
    return [(a, b) for a in sorted(k for k in people if people[k].session == shifted)
            for b in sorted(k for k in people if people[k].session == fixed)]


def aligned_segments(person: Person, to: Person | None) -> list:
    """``person``'s segments, each shifted onto ``to``'s segment of the same round/phase (see the module
    docstring) and cut at its end; segments ``to`` lacks are dropped. ``to=None``: unchanged.

    Returns
    -------
    segments : list of Segment
        New segments (times in ``to``'s clock); ``streams`` hold shifted copies.
    """
    if to is None:
        return list(person.segments)
    out = []
    for s in person.segments:
        ref = to.segment(s.label)
        if ref is None:
            continue
        shift = ref.start - s.start
        streams = {}
        for kind, (ts, vs) in s.streams.items():
            t = ts + shift
            keep = t <= ref.end
            streams[kind] = (t[keep], vs[keep])
        streams = {k: v for k, v in streams.items() if v[0].size}
        if streams:
            out.append(Segment(s.label, min(v[0][0] for v in streams.values()),
                               max(v[0][-1] for v in streams.values()), streams))
    return out


def join_segments(segments, kinds) -> dict:
    """Segments joined on their (wall-clock) times, as :func:`~attune_monitor.acquisition.files.load_e4_session` does.

    Returns
    -------
    streams : dict
        ``kind -> (timestamps (n,), values (n,))``, increasing timestamps, gaps left as gaps.
    """
    out = {}
    for kind in kinds:
        parts = [s.streams[kind] for s in segments if kind in s.streams]
        if not parts:
            continue
        ts = np.concatenate([p[0] for p in parts])
        vs = np.concatenate([p[1] for p in parts])
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        keep = np.r_[True, np.diff(ts) > 0]
        out[kind] = (ts[keep], vs[keep])
    return out


def phase_spans(seg_a, seg_b) -> list:
    """Recorded phases both people have: ``[(label, start, end)]``, the intersection of their folders of the
    same round/phase (absolute seconds; empty intersections left out)."""
    by_b = {s.label: s for s in seg_b}
    out = []
    for s in seg_a:
        o = by_b.get(s.label)
        if o is None:
            continue
        t0, t1 = max(s.start, o.start), min(s.end, o.end)
        if t1 > t0:
            out.append((s.label, float(t0), float(t1)))
    return sorted(out, key=lambda x: x[1])


@dataclass(frozen=True)
class Splice:
    """Person B's signals in ``[start, end)`` (absolute s) are replaced by ``donor``'s (level-matched)."""

    start: float
    end: float
    donor: str


def splice_stream(ts, vs, donor_ts, donor_vs, start: float, end: float, kind: str, ref_s: float = SPLICE_REF_S):
    """Replace the samples of one stream in ``[start, end)`` by a donor's samples of that span, level-matched.

    Parameters
    ----------
    ts, vs : ndarray, shape (n,)
        B's timestamps (s) and values (canonical units).
    donor_ts, donor_vs : ndarray, shape (m,)
        The donor's, on the same clock.
    start, end : float
        The span (s).
    kind : {"hr", "eda", "ppg", "rr"}
        Heart rate (and RR) is shifted so that the spliced mean equals B's mean over ``[start - ref_s,
        start)``; skin conductance is scaled to it (its level); PPG is standardised to B's mean and SD there.
    ref_s : float
        Seconds of B's reference span.

    Returns
    -------
    ts, vs : ndarray, shape (n',)
        The spliced stream (B's samples outside the span, the donor's inside), increasing timestamps.

    Raises
    ------
    ValueError
        When B has no values in the reference span or the donor none in the span.
    """
    ts, vs = np.asarray(ts, float), np.asarray(vs, float)
    dts, dvs = np.asarray(donor_ts, float), np.asarray(donor_vs, float)
    ref = vs[(ts >= start - ref_s) & (ts < start)]
    ref = ref[np.isfinite(ref)]
    inside = (dts >= start) & (dts < end)
    d = dvs[inside]
    if ref.size < 2 or not np.isfinite(d).any():
        raise ValueError(f"Cannot splice {kind} at {start:.1f}-{end:.1f} s: B has {ref.size} reference values, "
                         f"the donor {int(np.isfinite(d).sum())} values in the span.")
    dm = np.nanmean(d)
    if kind == "eda" and dm > 1e-6:
        d = d * (ref.mean() / dm)
    elif kind == "ppg":
        sd = np.nanstd(d)
        d = (d - dm) / (sd if sd > 0 else 1.0) * ref.std() + ref.mean()
    else:
        d = d - dm + ref.mean()
    keep = ~((ts >= start) & (ts < end))
    out_t = np.concatenate([ts[keep], dts[inside]])
    out_v = np.concatenate([vs[keep], d])
    order = np.argsort(out_t, kind="stable")
    return out_t[order], out_v[order]


def person_streams(people: dict, key: str, kinds, align_to: str | None = None) -> tuple[dict, list]:
    """One person's joined streams (optionally phase-aligned onto ``align_to``) and their segments."""
    segs = aligned_segments(people[key], people[align_to] if align_to else None)
    return join_segments(segs, kinds), segs


def build_pair(people: dict, a: str, b: str, kinds=("hr", "eda"), align: bool = False, splices=(),
               markers: bool = False):
    """A 2-person :class:`attune_monitor.acquisition.files.Recording` in memory.

    Parameters
    ----------
    people : dict
        From :func:`load_people`.
    a, b : str
        Person keys. With ``align``, ``a`` is phase-aligned onto ``b`` (cross-session pseudo-pairs).
    kinds : sequence of str
        Stream kinds to keep (``"eda"`` and the heart kinds: that is how the heart input is forced).
    align : bool
    splices : sequence of Splice
        Applied to ``b``; a donor of another session is phase-aligned onto ``b`` first.
    markers : bool
        Add a marker stream with the start of every recorded phase (as an experiment's trigger stream would
        give it), so that the pipeline can treat phase switches as shared events.

    Returns
    -------
    recording : Recording
    spans : list of (str, float, float)
        The pair's recorded phases (:func:`phase_spans`), absolute seconds in ``b``'s clock.
    """
    from dataclasses import replace

    from attune_monitor.acquisition.files import RecordedStream, Recording

    sa, seg_a = person_streams(people, a, kinds, align_to=b if align else None)
    sb, seg_b = person_streams(people, b, kinds)
    for sp in splices:
        donor = people[sp.donor]
        other = donor.session != people[b].session
        sd, _ = person_streams(people, sp.donor, kinds, align_to=b if other else None)
        for kind in list(sb):
            if kind not in sd:
                raise ValueError(f"Cannot splice: donor {sp.donor} has no {kind} stream.")
            sb[kind] = splice_stream(*sb[kind], *sd[kind], sp.start, sp.end, kind)
    streams = []
    for key, ss in ((a, sa), (b, sb)):
        for kind, (ts, vs) in ss.items():
            d = people[key].descriptors[kind]
            d = replace(d, scale=1.0, reciprocal=False)  # values are canonical already
            streams.append(RecordedStream(d, ts, vs[:, None], None))
    spans = phase_spans(seg_a, seg_b)
    if markers and spans:
        labels = [f"{lab} start ({PHASE_NAMES.get(lab.split('/')[-1], '?')})" for lab, _, _ in spans]
        streams.append(_marker_stream([s0 for _, s0, _ in spans], labels))
    rec = Recording(Path(f"{a}+{b}" + ("+spliced" if splices else "")), streams)
    return rec, spans


def _marker_stream(times, texts):
    """A string marker stream (phase triggers) as a :class:`~attune_monitor.acquisition.files.RecordedStream`."""
    from attune_monitor.acquisition.convention import describe
    from attune_monitor.acquisition.files import RecordedStream

    xml = ("<info><name>EmoPairCompete phases</name><type>Markers</type><channel_count>1</channel_count>"
           "<nominal_srate>0</nominal_srate><channel_format>string</channel_format>"
           "<source_id>emopaircompete-phases</source_id></info>")
    return RecordedStream(describe(xml), np.asarray(times, float), [[t] for t in texts], xml)


# -- one pair through the pipeline (worker) ----------------------------------------------------------------------
_PEOPLE: dict | None = None  # set in the parent before the workers fork


@contextlib.contextmanager
def _detector_config(dcfg):
    """Make :func:`attune_monitor.analysis.analyze_recording` run the pipeline with the detector configuration ``dcfg``.

    ``PipelineConfig`` takes a preset *name* only; for any other :class:`attune_monitor.dsp.detector.DetectorConfig` the
    pipeline's detector (and the arousal reading that uses its threshold) is rebuilt right after the pipeline
    is made. Only ``attune_monitor.analysis.make_pipeline`` is wrapped, only within this context, in this process.
    """
    import attune_monitor.analysis as analysis
    from attune_monitor.dsp.detector import RuptureDetector
    from attune_monitor.dsp.divergence import ArousalTracker

    make = analysis.make_pipeline

    def make_with(source, config, modalities=None):
        pipe = make(source, config, modalities)
        if not hasattr(pipe, "detector") or not hasattr(pipe, "_reading"):
            raise RuntimeError("attune_monitor.dsp.pipeline.SessionPipeline changed: cannot swap its detector "
                               "configuration; "
                               "pass a preset name instead.")
        pipe.detector = RuptureDetector(pipe.participants, pipe.modalities, pipe.cfg.step_s, dcfg,
                                        window_s=pipe.cfg.window_s, arousal=pipe.arousal is not None)
        pipe.pairs = pipe.detector.pairs
        if pipe._reading is not None:
            pipe._reading = ArousalTracker(len(pipe.participants), dcfg.arousal_k, dcfg.smooth_s, pipe.cfg.step_s)
        return pipe

    analysis.make_pipeline = make_with
    try:
        yield
    finally:
        analysis.make_pipeline = make


def _pipeline_takes_config() -> bool:
    """Whether ``PipelineConfig(preset=DetectorConfig(...))`` works in this version of the pipeline."""
    from attune_monitor.dsp.detector import get_preset
    from attune_monitor.dsp.pipeline import PipelineConfig, SessionPipeline, Slot

    cfg = get_preset("balanced")
    try:
        pipe = SessionPipeline([Slot("a", "hr", 1.0), Slot("b", "hr", 1.0)], 0.0, PipelineConfig(preset=cfg))
    except (TypeError, ValueError, AttributeError):
        return False
    return pipe.detector.cfg == cfg.validate()


def analyze(recording, detector="balanced", window_s: float = 30.0):
    """:func:`~attune_monitor.analysis.analyze_recording` with a preset name or a detector configuration.

    ``config`` is a preset name or a :class:`~attune_monitor.dsp.detector.DetectorConfig`.
    """
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.dsp.detector import PRESETS
    from attune_monitor.dsp.pipeline import PipelineConfig

    if not isinstance(detector, str):
        detector = next((n for n, c in PRESETS.items() if c == detector), detector)
    if isinstance(detector, str) or _pipeline_takes_config():
        return analyze_recording(recording, config=PipelineConfig(preset=detector, window_s=window_s))
    with _detector_config(detector):
        return analyze_recording(recording, config=PipelineConfig(window_s=window_s))


def _episodes_abs(analysis) -> list:
    """``[(onset, end, flagged, names_sync)]`` absolute seconds; an open prompt ends at the end."""
    out = []
    for ep in analysis.episodes:
        end = ep.offset_s if ep.offset_s is not None else analysis.duration_s
        out.append((ep.onset_s + analysis.origin, end + analysis.origin, ep.flagged_s + analysis.origin,
                    bool(set(ep.modalities) & set(SYNC_MODALITIES))))
    return out


def _armed(analysis):
    """Armed spans of the (only) pair, absolute seconds, from the analysis JSON's ``attunement`` record (the
    detector's arming, issue 16 point 1); None when this version of the analysis has none."""
    from attune_monitor.ui.analysis_io import analysis_to_json

    att = analysis_to_json(analysis).get("attunement")
    if not att:
        return None
    rec = next((a for a in att if sorted(a["pair"]) == sorted(analysis.pairs[0])), att[0])
    return [(float(s) + analysis.origin, float(e) + analysis.origin) for s, e in rec.get("armed_spans", [])]


def _window_values(r, t, spans, window_s: float, origin: float, chance=None) -> dict:
    """Fisher-z mean of windowed r (and of r minus chance, in z) per span, and over everything.

    Parameters
    ----------
    r : ndarray, shape (n_win,)
    t : ndarray, shape (n_win,)
        Session time (s) of each window's *end* (exclusive).
    spans : list of (str, float, float)
        Absolute seconds.
    chance : ndarray, shape (n_win,) | None

    Returns
    -------
    values : dict
        ``{"all": (mean_z, mean_z_minus_chance, n), label: (...)}`` (NaN when the windows with a value cover
        less than ``MIN_COVER_S``).
    """
    z = np.arctanh(np.clip(r, -0.999, 0.999))
    zc = None if chance is None else z - np.arctanh(np.clip(chance, -0.999, 0.999))
    step = float(np.median(np.diff(t))) if t.size > 1 else 1.0
    min_n = max(2, int(math.ceil(MIN_COVER_S / step)))

    def summary(sel):
        ok = sel & np.isfinite(z)
        n = int(ok.sum())
        if n < min_n:
            return (math.nan, math.nan, n)
        mc = math.nan
        if zc is not None:
            okc = sel & np.isfinite(zc)
            mc = float(zc[okc].mean()) if okc.sum() >= min_n else math.nan
        return (float(z[ok].mean()), mc, n)

    out = {"all": summary(np.ones(z.shape, bool))}
    ta = t + origin
    for label, s0, s1 in spans:
        out[label] = summary((ta - window_s >= s0 - 1e-6) & (ta <= s1 + 1e-6))
    return out


def _pair_sync(analysis, spans, window_s: float) -> dict:
    """The synchrony users see, per modality (and combined): :func:`_window_values` of the pair."""
    from attune_monitor.ui.analysis_io import combined_sync

    out = {}
    for m in analysis.modalities:
        s = analysis.sync.get(m)
        if not s or not np.asarray(s["t"]).size:
            continue
        t_end = np.asarray(s["t"], float) + 1.0 / analysis.fs  # "t" is the window's last sample
        out[m] = _window_values(np.asarray(s["sync"], float)[0], t_end, spans, window_s, analysis.origin,
                                np.asarray(s["chance"], float)[0])
    comb = combined_sync(analysis.sync, analysis.step_s) if len(analysis.modalities) > 1 else None
    if comb is not None:
        out["combined"] = _window_values(comb[1][0], comb[0] + 1.0 / analysis.fs, spans, window_s, analysis.origin)
    return out


def _paired_mask(analysis) -> np.ndarray:
    """Grid samples where both people have a value of at least one modality, shape (n,)."""
    n = min(g.shape[1] for g in analysis.grid.values())
    both = np.zeros(n, bool)
    for g in analysis.grid.values():
        both |= np.isfinite(g[:, :n]).all(axis=0)
    return both


def run_pair(task: dict) -> dict:
    """Analyse one pair (a worker's job). ``task``: group, a, b, kinds, align, splices, detector, window_s."""
    t_start = time.perf_counter()
    people = _PEOPLE if _PEOPLE is not None else load_people(task.get("root", DATA))
    rec, spans = build_pair(people, task["a"], task["b"], task["kinds"], task["align"], task["splices"],
                            task.get("markers", False))
    an = analyze(rec, task["detector"], task["window_s"])
    eps = _episodes_abs(an)
    both = _paired_mask(an)
    t = an.origin + np.arange(both.size) / an.fs
    under = np.zeros(both.size, bool)
    for on, end, _, _ in eps:
        under |= (t >= on) & (t <= end)
    armed = _armed(an)
    armed_mask = np.zeros(both.size, bool)
    for x0, x1 in armed or ():
        armed_mask |= (t >= x0) & (t <= x1)
    out = {
        "group": task["group"], "a": task["a"], "b": task["b"], "origin": an.origin, "duration_s": an.duration_s,
        "paired_h": float(both.sum() / an.fs / 3600.0), "under_s": float((under & both).sum() / an.fs),
        "episodes": eps, "spans": spans, "armed": armed, "seconds": 0.0,
        "armed_s": None if armed is None else float((armed_mask & both).sum() / an.fs),
        "armed_under_s": None if armed is None else float((armed_mask & both & under).sum() / an.fs),
        "streams": {p: list(v) for p, v in an.streams.items()},
    }
    if task["splices"]:
        out["splices"] = []
        for sp in task["splices"]:
            hits = [e for e in eps if e[0] <= sp.end + SPLICE_MARGIN_S and e[1] >= sp.start]
            new = [e for e in hits if e[0] >= sp.start - 10.0]
            out["splices"].append({"start": sp.start, "end": sp.end, "donor": sp.donor, "hit": bool(hits),
                                   "hit_new": bool(new),
                                   "latency_s": min(max(e[2], sp.start) for e in new) - sp.start if new else None})
    else:
        out["sync"] = _pair_sync(an, spans, task["window_s"])
    out["seconds"] = time.perf_counter() - t_start
    return out


# -- splices ---------------------------------------------------------------------------------------------------
def _covered(ts, t0: float, t1: float, rate: float, share: float = 0.8) -> bool:
    n = np.searchsorted(ts, t1) - np.searchsorted(ts, t0)
    return n >= share * (t1 - t0) * rate


def plan_splices(people: dict, base: dict, kinds, rng: np.random.Generator, runs: int = 2) -> list:
    """Splice sets for one real pair, one list per run (see the module docstring).

    A splice goes where the unspliced run has no prompt overlapping [start, end + 60 s], so that a prompt there
    is the splice's doing; whether the pair was armed at its start is noted afterwards (:func:`_summarise`).

    Parameters
    ----------
    base : dict
        The pair's unspliced :func:`run_pair` result (origin, spans, armed spans).
    runs : int
        Runs (each a separate analysis); a phase used in one run is not used again.

    Returns
    -------
    runs : list of list of Splice
    """
    a, b = base["a"], base["b"]
    sb, _ = person_streams(people, b, kinds)
    cand = [k for k in people if k not in (a, b) and people[k].session == people[b].session]
    if not cand:  # a room with one team: phase-aligned donors from the other session
        cand = [k for k in people if people[k].session != people[b].session]
    donors = {k: person_streams(people, k, kinds, align_to=None if people[k].session == people[b].session else b)[0]
              for k in cand}
    used, plans = set(), []
    for _ in range(runs):
        plan, last_end = [], -math.inf
        for label, p0, p1 in base["spans"]:
            if label in used:
                continue
            # armed stretches of this phase (the pair measurably in tune for >= SPLICE_ARMED_S before a start):
            # a splice there is a lapse from a measured attunement, the case the detector is for
            armed = [(max(x0 + SPLICE_ARMED_S, p0 + SPLICE_MARGIN_S), min(x1, p1))
                     for x0, x1 in (base.get("armed") or [])]
            armed = [(x0, x1) for x0, x1 in armed if x1 > x0]
            for _try in range(20):  # a few draws per phase: length, then a start where everything holds
                length = float(rng.uniform(SPLICE_MIN_S, SPLICE_MAX_S))
                lo = max(p0 + SPLICE_MARGIN_S, base["origin"] + SPLICE_SETTLE_S, last_end + SPLICE_SPACING_S)
                hi = p1 - SPLICE_MARGIN_S - length
                if hi <= lo:
                    continue
                inside = [(max(lo, x0), min(hi, x1)) for x0, x1 in armed if min(hi, x1) > max(lo, x0)]
                if inside and _try < 10:  # prefer a start inside an armed stretch
                    x0, x1 = inside[int(rng.integers(len(inside)))]
                    s0 = float(rng.uniform(x0, x1))
                else:
                    s0 = float(rng.uniform(lo, hi))
                s1 = s0 + length
                # a lapse needs an attunement to lapse from: no prompt there in the unspliced run
                if any(e[0] <= s1 + SPLICE_MARGIN_S and e[1] >= s0 for e in base["episodes"]):
                    continue
                if not all(_covered(sb[k][0], s0 - SPLICE_REF_S, s0, RATE.get(k, 1.0)) for k in sb):
                    continue
                ok = [k for k in cand
                      if all(kk in donors[k] and _covered(donors[k][kk][0], s0, s1, RATE.get(kk, 1.0)) for kk in sb)]
                if not ok:
                    continue
                plan.append(Splice(round(s0, 3), round(s1, 3), str(rng.choice(ok))))
                used.add(label)
                last_end = s1
                break
        if plan:
            plans.append(plan)
    return plans


# -- statistics ------------------------------------------------------------------------------------------------
def auc(pos, neg) -> float:
    """P(a real value > a pseudo value), ties half (Mann-Whitney U / (n1 n2)); NaN ignored."""
    pos = np.asarray(pos, float)
    neg = np.asarray(neg, float)
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not pos.size or not neg.size:
        return math.nan
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[:pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def cluster_auc(pos_groups, neg_groups, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """AUC of all values, with a 95 % interval from a bootstrap over clusters (pairs).

    Parameters
    ----------
    pos_groups, neg_groups : list of array-like
        One array of values per pair (its pair-phases).

    Returns
    -------
    auc, lo, hi : float
    """
    P = [np.asarray(g, float)[np.isfinite(np.asarray(g, float))] for g in pos_groups]
    N = [np.asarray(g, float)[np.isfinite(np.asarray(g, float))] for g in neg_groups]
    P, N = [g for g in P if g.size], [g for g in N if g.size]
    if not P or not N:
        return math.nan, math.nan, math.nan
    W = np.array([[((p[:, None] > n[None, :]).sum() + 0.5 * (p[:, None] == n[None, :]).sum()) for n in N] for p in P])
    C = np.array([[p.size * n.size for n in N] for p in P], float)
    point = W.sum() / C.sum()
    rng = np.random.default_rng(seed)
    cp = rng.multinomial(len(P), np.full(len(P), 1 / len(P)), size=n_boot).astype(float)
    cn = rng.multinomial(len(N), np.full(len(N), 1 / len(N)), size=n_boot).astype(float)
    boot = np.einsum("bi,ij,bj->b", cp, W, cn) / np.einsum("bi,ij,bj->b", cp, C, cn)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(point), float(lo), float(hi)


# -- point 4: signals x metrics x windows ------------------------------------------------------------------------
def person_grids(people: dict, keys, origin: float, t_end: float, kinds=("hr", "ppg", "eda")) -> dict:
    """Each person's signals on the 4 Hz grid with the pipeline's preprocessors (common ``origin``).

    Returns
    -------
    grids : dict
        ``kind -> (values (n_people, n), valid (n_people, n) bool)``, people in ``keys`` order.
    """
    from attune_monitor.dsp.eda import eda_to_grid
    from attune_monitor.dsp.heart import hr_to_grid, signal_to_hr_grid
    from attune_monitor.dsp.quality import is_valid

    n = int(math.floor((t_end - origin) * FS)) + 1
    out = {}
    for kind in kinds:
        vals = np.full((len(keys), n), np.nan)
        ok = np.zeros((len(keys), n), bool)
        for i, k in enumerate(keys):
            st = join_segments(people[k].segments, (kind,)).get(kind)
            if st is None:
                continue
            ts, vs = st
            d = people[k].descriptors[kind]
            if kind == "hr":
                blk = hr_to_grid(ts, vs, FS, origin, t_end, averaging_s=d.hr_averaging_s)
            elif kind == "eda":
                blk = eda_to_grid(ts, vs, d.srate, FS, origin, t_end)
            else:
                blk = signal_to_hr_grid(kind, ts, vs, d.srate, FS, origin, t_end)
            s, e = blk.start, min(blk.start + len(blk), n)
            vals[i, s:e] = blk.values[: e - s]
            ok[i, s:e] = is_valid(blk.quality[: e - s])
        out[kind] = (np.where(ok, vals, np.nan), ok)
    return out


def _session_grids(people: dict, session: str, kinds) -> tuple[list, float, dict]:
    keys = sorted(k for k in people if people[k].session == session)
    origin = min(s.start for k in keys for s in people[k].segments)
    t_end = max(s.end for k in keys for s in people[k].segments)
    return keys, origin, person_grids(people, keys, origin, t_end, kinds)


def sweep_window(task: dict) -> dict:
    """One window length of the sweep for one session (a worker's job): per pair, per (kind, metric, variant),
    the :func:`_window_values` of the engine's windows. ``task``: session, window_s, kinds."""
    from attune_monitor.dsp import synchrony as sy
    from attune_monitor.dsp.engine import RING_CHANCE_OF, EngineConfig, SynchronyEngine
    from attune_monitor.dsp.pipeline import CHANCE_OF

    t0 = time.perf_counter()
    people = _PEOPLE if _PEOPLE is not None else load_people(task.get("root", DATA))
    keys, origin, grids = _grids_cached(people, task["session"], tuple(task["kinds"]))
    kinds = tuple(task["kinds"])
    w = float(task["window_s"])
    cfg = EngineConfig(window_s=w, step_s=SWEEP_STEP_S, wcc_window_s=w, wcc_step_s=SWEEP_STEP_S, max_lag_s=5.0,
                       modalities=kinds, concordance_step_s=SWEEP_STEP_S,
                       phasic_modalities=kinds, concordance_modalities=tuple(k for k in kinds if k == "eda"),
                       concordance_window_s=w, chance_of=RING_CHANCE_OF)
    eng = SynchronyEngine(len(keys), FS, cfg)
    res = eng.push({k: grids[k][0] for k in kinds})
    ia, ib = sy.pair_index(len(keys))
    out = {}
    for p, (i, j) in enumerate(zip(ia, ib)):
        a, b = keys[i], keys[j]
        spans = phase_spans(people[a].segments, people[b].segments)
        vals = {}
        for kind in kinds:
            for metric in SWEEP_METRICS[kind]:
                m = res[kind].get(metric)
                if m is None:
                    continue
                chance = None
                if metric in CHANCE_OF and CHANCE_OF[metric][0] in res[kind]:
                    chance = res[kind][CHANCE_OF[metric][0]].values[p]
                vals[(kind, metric)] = _window_values(m.values[p], np.asarray(m.end_s, float), spans, w, origin,
                                                      chance)
        out[(a, b)] = vals
    return {"session": task["session"], "window_s": w, "pairs": out, "seconds": time.perf_counter() - t0,
            "bvp": _bvp_check(people, keys, origin, grids) if task.get("bvp") else None}


_GRIDS: dict = {}


def _grids_cached(people, session, kinds):
    key = (session, kinds)
    if key not in _GRIDS:
        _GRIDS[key] = _session_grids(people, session, kinds)
    return _GRIDS[key]


def _bvp_check(people: dict, keys, origin: float, grids: dict) -> dict:
    """Per person: share of recorded time with a valid HR from HR.csv and from BVP beats, and their agreement."""
    if "hr" not in grids or "ppg" not in grids:
        return {}
    n = grids["hr"][0].shape[1]
    t = origin + np.arange(n) / FS
    out = {}
    for i, k in enumerate(keys):
        rec = np.zeros(n, bool)
        for s in people[k].segments:
            rec |= (t >= s.start) & (t <= s.end)
        hr, ppg = grids["hr"][0][i], grids["ppg"][0][i]
        both = rec & np.isfinite(hr) & np.isfinite(ppg)
        diff = np.abs(hr[both] - ppg[both])
        out[k] = {"recorded_h": float(rec.sum() / FS / 3600), "hr_valid": float(np.isfinite(hr[rec]).mean()),
                  "ppg_valid": float(np.isfinite(ppg[rec]).mean()),
                  "median_abs_diff_bpm": float(np.median(diff)) if diff.size else math.nan,
                  "p90_abs_diff_bpm": float(np.percentile(diff, 90)) if diff.size else math.nan,
                  "within_10bpm": float((diff <= 10).mean()) if diff.size else math.nan}
    return out


def sweep_table(results: list, real: list, pseudo: list, d11_real: list) -> list:
    """AUC rows of the sweep: one per (signal, metric, variant, window)."""
    pairs = {}
    for r in results:
        for pair, vals in r["pairs"].items():
            pairs.setdefault((r["window_s"], pair), {}).update(vals)
    rows = []
    windows = sorted({r["window_s"] for r in results})
    kms = sorted({km for v in pairs.values() for km in v}, key=lambda km: (list(SWEEP_LABEL).index(km[0]),
                                                                         SWEEP_METRICS[km[0]].index(km[1])))
    def bvp_phases(w, pair):
        """The pair-phases where BVP beats give a (plain r) value at window ``w``."""
        v = pairs.get((w, pair), {}).get(("ppg", "pearson"), {})
        return {lab for lab, x in v.items() if lab != "all" and math.isfinite(x[0])}

    for (kind, metric), variant, w in itertools.product(kms, (0, 1), windows):
        def phase_vals(pair, only=None, w=w, kind=kind, metric=metric, variant=variant):
            v = pairs.get((w, pair), {}).get((kind, metric))
            return [] if v is None else [x[variant] for lab, x in v.items()
                                         if lab != "all" and (only is None or lab in only)]

        def pair_val(pair, w=w, kind=kind, metric=metric, variant=variant):
            v = pairs.get((w, pair), {}).get((kind, metric))
            return math.nan if v is None else v["all"][variant]

        pg, ng = [phase_vals(p) for p in real], [phase_vals(p) for p in pseudo]
        if not any(np.isfinite(np.asarray(g, float)).any() for g in pg):
            continue
        a, lo, hi = cluster_auc(pg, ng)
        rows.append({"signal": SWEEP_LABEL[kind], "kind": kind, "metric": metric + (" - chance" if variant else ""),
                     "window_s": w, "auc_phase": a, "ci": (lo, hi),
                     "auc_phase_d11": cluster_auc([phase_vals(p) for p in d11_real], ng, n_boot=1)[0],
                     # on the pair-phases BVP beats cover (so HR.csv and BVP compare on the same moments)
                     "auc_phase_bvp": cluster_auc([phase_vals(p, bvp_phases(w, p)) for p in real],
                                                  [phase_vals(p, bvp_phases(w, p)) for p in pseudo], n_boot=1)[0],
                     "auc_pair": auc([pair_val(p) for p in real], [pair_val(p) for p in pseudo]),
                     "ci_pair": cluster_auc([[pair_val(p)] for p in real], [[pair_val(p)] for p in pseudo], 500)[1:],
                     "real_z": float(np.nanmean(np.concatenate([np.asarray(g, float) for g in pg]))),
                     "pseudo_z": float(np.nanmean(np.concatenate([np.asarray(g, float) for g in ng]))),
                     "n_real": int(sum(np.isfinite(np.asarray(g, float)).sum() for g in pg)),
                     "n_pseudo": int(sum(np.isfinite(np.asarray(g, float)).sum() for g in ng))})
    return rows


# -- the whole run ----------------------------------------------------------------------------------------------
def _pool(jobs: int):
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork"))


def _group_row(rows: list) -> dict:
    hours = sum(r["paired_h"] for r in rows)
    eps = [e for r in rows for e in r["episodes"]]
    return {"pairs": len(rows), "hours": hours, "prompts": len(eps),
            "prompts_per_h": len(eps) / hours if hours else math.nan,
            "share_under": sum(r["under_s"] for r in rows) / (hours * 3600) if hours else math.nan,
            "longest_s": max((e[1] - e[0] for e in eps), default=0.0),
            "median_s": float(np.median([e[1] - e[0] for e in eps])) if eps else math.nan,
            "naming_sync": sum(e[3] for e in eps),
            "armed_share": (sum(r["armed_s"] for r in rows) / (hours * 3600)
                            if hours and all(r["armed_s"] is not None for r in rows) else None),
            "under_when_armed": (sum(r["armed_under_s"] for r in rows) / max(sum(r["armed_s"] for r in rows), 1e-9)
                                 if all(r["armed_s"] is not None for r in rows) else None)}


def _sync_aucs(groups: dict) -> list:
    """AUC rows of the synchrony users see: real vs each pseudo group, per pair and per pair-phase."""
    rows = []
    real = groups.get("real", [])
    mods = [m for m in ("hr", "eda", "combined") if any(m in r["sync"] for r in real)]
    for m, variant in itertools.product(mods, (0, 1)):
        if m == "combined" and variant:
            continue

        def phase_vals(r, m=m, variant=variant):
            v = r["sync"].get(m, {})
            return [x[variant] for lab, x in v.items() if lab != "all"]

        def pair_val(r, m=m, variant=variant):
            return r["sync"].get(m, {}).get("all", (math.nan, math.nan))[variant]

        row = {"modality": m, "variant": "minus chance" if variant else "mean sync"}
        for g in ("same-room", "cross-session"):
            ps = groups.get(g, [])
            if not ps:
                continue
            row[g] = {"auc_pair": cluster_auc([[pair_val(r)] for r in real], [[pair_val(r)] for r in ps]),
                      "auc_phase": cluster_auc([phase_vals(r) for r in real], [phase_vals(r) for r in ps]),
                      "auc_phase_d11": cluster_auc([phase_vals(r) for r in real if r["a"].startswith("D1_1")],
                                                   [phase_vals(r) for r in ps], n_boot=1)[0]}
        row["mean_z"] = {g: float(np.nanmean([pair_val(r) for r in rs])) for g, rs in groups.items() if rs}
        rows.append(row)
    return rows


def run_controls(config="balanced", heart: str = "hr", quick: bool = False, jobs: int = 2, window_s: float = 30.0,
                 sweep: bool = True, splice_runs: int | None = None, seed: int = 16, markers: bool = False,
                 root=DATA, log=None) -> dict:
    """Run the real-data controls.

    Parameters
    ----------
    config : str | dsp.detector.DetectorConfig
        Detector preset name or configuration.
    heart : {"hr", "ppg", "rr", "auto"}
        Heart input of the detector runs: HR.csv, BVP beats, IBI.csv, or whatever the roster prefers.
    quick : bool
        A subset: 8 same-room and 4 cross-session pseudo-pairs, one splice run, the 30 s window in the sweep.
    jobs : int
        Worker processes (at most 2 on the shared machine).
    window_s : float
        Synchrony window of the detector runs (s).
    sweep : bool
        Also the point-4 sweep of signals x metrics x windows.
    splice_runs : int | None
        Splice runs per real pair (default 2, quick 1).
    seed : int
        Splice placement.
    markers : bool
        Give every pair's recording a marker at each phase start (an experiment's trigger stream).
    root : Path
    log : callable | None
        ``log(str)`` for progress (default: stderr).

    Returns
    -------
    result : dict
        JSON-ready: ``groups`` (per group), ``sync_auc``, ``splices``, ``pairs``, ``sweep``, ``bvp``, ``seconds``.

    Raises
    ------
    DataMissing
        When the data folder is absent.
    ValueError
        For an unknown ``heart`` or a heart input the data do not have.
    """
    global _PEOPLE
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if heart not in HEART_KINDS:
        raise ValueError(f"Invalid value for 'heart': expected one of {', '.join(HEART_KINDS)}, but got {heart!r}.")
    if not Path(root).is_dir():
        raise DataMissing(f"{root} is absent: the EmoPairCompete real data are only in the project's dev checkout "
                          f"(../shared/realdata/emopaircompete); nothing to measure.")
    jobs = max(1, min(int(jobs), 2, os.cpu_count() or 1))
    kinds = ("eda",) + HEART_KINDS[heart]
    timing = {}
    t = time.perf_counter()
    people = load_people(root)
    _PEOPLE = people
    timing["load"] = time.perf_counter() - t
    have = {k for p in people.values() for k in p.descriptors}
    if not set(HEART_KINDS[heart]) & have:
        raise ValueError(f"Invalid value for 'heart': {heart!r} needs "
                         f"{ {'hr': 'HR.csv', 'ppg': 'BVP.csv', 'rr': 'IBI.csv'}.get(heart, 'a heart file') } "
                         f"files, but this data set has none (it has: {', '.join(sorted(have))}).")
    log(f"loaded {len(people)} people in {timing['load']:.1f} s")
    pairs = {"real": real_pairs(people), "same-room": same_room_pairs(people),
             "cross-session": cross_session_pairs(people)}
    if quick:
        pairs["same-room"] = pairs["same-room"][::3]
        pairs["cross-session"] = pairs["cross-session"][::4]
    splice_runs = (1 if quick else 2) if splice_runs is None else splice_runs
    base = {"kinds": kinds, "detector": config, "window_s": window_s, "splices": (), "root": str(root),
            "markers": markers}
    tasks = [dict(base, group=g, a=a, b=b, align=(g == "cross-session")) for g, ps in pairs.items() for a, b in ps]
    sweep_tasks = []
    if sweep:
        sk = tuple(k for k in ("hr", "ppg", "eda") if k in have)
        for w in ((30.0,) if quick else SWEEP_WINDOWS):
            for sess in SESSIONS:
                sweep_tasks.append({"session": sess, "window_s": w, "kinds": sk, "root": str(root),
                                    "bvp": w == 30.0})
    results, splice_results, sweep_results = [], [], []
    t = time.perf_counter()
    n_total = len(tasks)
    with _pool(jobs) as pool:
        futs = {pool.submit(run_pair, tk): "pair" for tk in tasks}
        done = 0
        pending = set(futs)
        while pending:
            for f in as_completed(pending):
                pending.discard(f)
                kind = futs[f]
                r = f.result()
                done += 1
                if kind == "pair":
                    results.append(r)
                    log(f"[{done}/{n_total}] {r['group']:13s} {r['a']} x {r['b']}: {len(r['episodes'])} prompts, "
                        f"{r['paired_h']:.2f} h ({r['seconds']:.1f} s)")
                    if r["group"] == "real":
                        # each pair's own generator: placements do not depend on which pair's run finished first
                        rng = np.random.default_rng([seed, zlib.crc32(f"{r['a']}|{r['b']}".encode())])
                        for plan in plan_splices(people, r, kinds, rng, splice_runs):
                            tk = dict(base, group="splice", a=r["a"], b=r["b"], align=False, splices=tuple(plan))
                            nf = pool.submit(run_pair, tk)
                            futs[nf] = "splice"
                            pending.add(nf)
                            n_total += 1
                    if done == len(tasks):  # the pair runs are queued first: the sweep goes last
                        for st in sweep_tasks:
                            nf = pool.submit(sweep_window, st)
                            futs[nf] = "sweep"
                            pending.add(nf)
                            n_total += 1
                elif kind == "splice":
                    splice_results.append(r)
                    log(f"[{done}/{n_total}] splices {r['a']} x {r['b']}: "
                        f"{sum(s['hit'] for s in r['splices'])}/{len(r['splices'])} hit ({r['seconds']:.1f} s)")
                else:
                    sweep_results.append(r)
                    log(f"[{done}/{n_total}] sweep {r['session']} {r['window_s']:g} s ({r['seconds']:.1f} s)")
                break  # re-enter as_completed with the new set
    timing["analyses"] = time.perf_counter() - t
    res = _summarise(people, config, heart, window_s, quick, results, splice_results, sweep_results, timing)
    res["markers"] = markers
    return res


def _summarise(people, config, heart, window_s, quick, results, splice_results, sweep_results, timing) -> dict:
    order = {"real": 0, "same-room": 1, "cross-session": 2}
    results.sort(key=lambda r: (order[r["group"]], r["a"], r["b"]))
    groups = {g: [r for r in results if r["group"] == g] for g in order}
    real_by_pair = {(r["a"], r["b"]): r for r in groups["real"]}
    splices = []
    for sr in splice_results:
        base = real_by_pair[(sr["a"], sr["b"])]
        for s in sr["splices"]:
            # the same span in the pair's unspliced run: how often a prompt is there anyway
            s["hit_unspliced"] = any(e[0] <= s["end"] + SPLICE_MARGIN_S and e[1] >= s["start"]
                                     for e in base["episodes"])
            s["pair"] = [sr["a"], sr["b"]]
            s["cross_session_donor"] = people[s["donor"]].session != people[sr["b"]].session
            s["length_s"] = s["end"] - s["start"]
            s["armed_at_start"] = (None if base["armed"] is None
                                   else any(x0 <= s["start"] <= x1 for x0, x1 in base["armed"]))
            splices.append(s)
    splices.sort(key=lambda s: (s["pair"], s["start"]))
    out = {
        "config": config if isinstance(config, str) else repr(config), "heart": heart, "window_s": window_s,
        "quick": quick, "groups": {g: _group_row(rs) for g, rs in groups.items() if rs},
        "sync_auc": _sync_aucs(groups), "splices": splices,
        "splice_summary": _splice_summary(splices, groups["real"]),
        "pairs": [{k: r[k] for k in ("group", "a", "b", "paired_h", "under_s", "armed_s", "armed_under_s", "episodes",
                                     "spans", "sync", "streams", "armed")} for r in results],
        "seconds": timing,
    }
    if sweep_results:
        t = time.perf_counter()
        real = [p for p in real_pairs(people)]
        out["sweep"] = sweep_table(sweep_results, real, same_room_pairs(people),
                                   [p for p in real if p[0].startswith("D1_1")])
        out["bvp"] = {k: v for r in sweep_results if r["bvp"] for k, v in r["bvp"].items()}
        timing["sweep_cpu"] = sum(r["seconds"] for r in sweep_results)
        timing["sweep_table"] = time.perf_counter() - t
    timing["pair_cpu"] = sum(r["seconds"] for r in results + splice_results)
    return out


def _splice_summary(splices: list, real: list) -> dict:
    def rate(xs, key):
        return (sum(x[key] for x in xs) / len(xs)) if xs else math.nan

    lat = [s["latency_s"] for s in splices if s["latency_s"] is not None]
    hours = sum(r["paired_h"] for r in real)
    return {"n": len(splices), "recall": rate(splices, "hit"), "recall_new_onset": rate(splices, "hit_new"),
            "same_span_unspliced": rate(splices, "hit_unspliced"),
            "n_armed": sum(bool(s["armed_at_start"]) for s in splices),
            "recall_armed": rate([s for s in splices if s["armed_at_start"]], "hit"),
            "recall_not_armed": rate([s for s in splices if s["armed_at_start"] is False], "hit"),
            "recall_same_room_donor": rate([s for s in splices if not s["cross_session_donor"]], "hit"),
            "recall_cross_session_donor": rate([s for s in splices if s["cross_session_donor"]], "hit"),
            "median_latency_s": float(np.median(lat)) if lat else math.nan,
            "pairs_prompts_per_h_unspliced": {f"{r['a']} x {r['b']}": len(r["episodes"]) / r["paired_h"]
                                              for r in real if r["paired_h"]},
            "real_prompts_per_h": sum(len(r["episodes"]) for r in real) / hours if hours else math.nan}


# -- printing -----------------------------------------------------------------------------------------------------
def _f(x, fmt="{:.2f}"):
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else fmt.format(x)


def report(res: dict) -> str:
    """The tables, as text."""
    L = [f"detector {res['config']}, heart input {res['heart']}, window {res['window_s']:g} s"
         + (", phase-start markers" if res.get("markers") else "") + (" (quick subset)" if res["quick"] else ""), ""]
    L.append(f"{'group':14s} {'pairs':>5s} {'hours':>6s} {'prompts':>7s} {'/h':>5s} {'under':>6s} {'longest s':>9s} "
             f"{'median s':>8s} {'name sync':>9s} {'armed':>6s} {'prompted|armed':>14s}")
    for g, r in res["groups"].items():
        L.append(f"{g:14s} {r['pairs']:5d} {r['hours']:6.2f} {r['prompts']:7d} {_f(r['prompts_per_h']):>5s} "
                 f"{_f(100 * r['share_under'], '{:.0f}%'):>6s} {r['longest_s']:9.0f} {_f(r['median_s'], '{:.0f}'):>8s} "
                 f"{r['naming_sync']:9d} "
                 f"{_f(None if r['armed_share'] is None else 100 * r['armed_share'], '{:.0f}%'):>6s} "
                 f"{_f(None if r['under_when_armed'] is None else 100 * r['under_when_armed'], '{:.0f}%'):>14s}")
    L.append("  (/h: prompts per hour of paired data; under: share of paired time under a prompt; name sync: prompts "
             "naming hr/eda; armed: share of paired time armed;\n"
             "   prompted|armed: share of the armed time under a prompt)")
    L.append("")
    L.append("AUC = P(real > pseudo) of the synchrony users see [95% CI, bootstrap over pairs]. pair: session mean "
             "per pair (5 real pairs vs 24 / 16); phase: mean per pair-phase; d11: phase, the 4 D1_1 teams only")
    L.append(f"{'modality':9s} {'value':12s} | {'same-room: pair':>19s} {'phase':>19s} {'d11':>5s} | "
             f"{'cross-session: pair':>19s} {'phase':>19s} | mean z real / same / cross")

    def ci(t):
        return f"{_f(t[0])} [{_f(t[1])}, {_f(t[2])}]"

    for row in res["sync_auc"]:
        cells = []
        for g in ("same-room", "cross-session"):
            c = row.get(g)
            if c is None:
                cells.append(f"{'-':>19s} {'-':>19s}" + (f" {'-':>5s}" if g == "same-room" else ""))
                continue
            cells.append(f"{ci(c['auc_pair']):>19s} {ci(c['auc_phase']):>19s}"
                         + (f" {_f(c['auc_phase_d11']):>5s}" if g == "same-room" else ""))
        mz = row["mean_z"]
        L.append(f"{row['modality']:9s} {row['variant']:12s} | {cells[0]} | {cells[1]} | "
                 + " / ".join(_f(mz.get(g), "{:.3f}") for g in ("real", "same-room", "cross-session")))
    s = res["splice_summary"]
    L.append("")
    L.append(f"splices (60-180 s, where the unspliced run had no prompt): n {s['n']}; recall {_f(s['recall'])}; "
             f"armed at the start: n {s['n_armed']}, recall {_f(s['recall_armed'])}; not armed: recall "
             f"{_f(s['recall_not_armed'])}; same-room donor {_f(s['recall_same_room_donor'])}, cross-session donor "
             f"(D1_5) {_f(s['recall_cross_session_donor'])}; a prompt starting in [start - 10 s, end + 60 s] "
             f"{_f(s['recall_new_onset'])}, median latency {_f(s['median_latency_s'], '{:.0f}')} s")
    L.append("  prompts/h of each real pair without splices: " + ", ".join(
        f"{k.replace('D1_1-', '').replace('D1_5-', 'D1_5 ')} {_f(v, '{:.1f}')}"
        for k, v in s["pairs_prompts_per_h_unspliced"].items()))
    if res.get("bvp"):
        L.append("")
        L.append("BVP beats vs HR.csv: share of recorded time with a valid HR, |HR(BVP) - HR.csv| where both")
        L.append(f"{'person':10s} {'rec h':>5s} {'HR.csv':>6s} {'BVP':>5s} {'med|d|':>6s} {'p90|d|':>6s} "
                 f"{'<=10bpm':>7s}")
        for k, v in sorted(res["bvp"].items()):
            L.append(f"{k:10s} {v['recorded_h']:5.2f} {_f(v['hr_valid']):>6s} {_f(v['ppg_valid']):>5s} "
                     f"{_f(v['median_abs_diff_bpm'], '{:.1f}'):>6s} {_f(v['p90_abs_diff_bpm'], '{:.1f}'):>6s} "
                     f"{_f(v['within_10bpm']):>7s}")
    if res.get("sweep"):
        rows = res["sweep"]
        windows = sorted({r["window_s"] for r in rows})
        L.append("")
        L.append(f"Point 4: AUC real (5 pairs) vs same-room pseudo (24), per pair-phase, by window (s); windows every "
                 f"{SWEEP_STEP_S:g} s")
        L.append(f"{'signal':10s} {'metric':20s} " + " ".join(f"{w:>5g}" for w in windows))
        by = {}
        for r in rows:
            by.setdefault((r["signal"], r["metric"]), {})[r["window_s"]] = r
        for (sig, met), d in by.items():
            L.append(f"{sig:10s} {met:20s} " + " ".join(f"{_f(d[w]['auc_phase']) if w in d else '-':>5s}"
                                                       for w in windows))
        if any(r["kind"] == "ppg" for r in rows):
            L.append("")
            L.append("the same on the pair-phases BVP beats cover (plain r of BVP-beat HR has a value): heart inputs "
                     "compared on the same moments")
            L.append(f"{'signal':10s} {'metric':20s} " + " ".join(f"{w:>5g}" for w in windows))
            for (sig, met), d in by.items():
                if sig == "EDA":
                    continue
                L.append(f"{sig:10s} {met:20s} " + " ".join(f"{_f(d[w]['auc_phase_bvp']) if w in d else '-':>5s}"
                                                           for w in windows))
        L.append("")
        L.append("best 12: per pair-phase AUC [95% CI] | D1_1 teams only | per pair (5 v 24) [95% CI] | mean z real v "
                 "pseudo | n pair-phases with a value")
        for r in sorted(rows, key=lambda r: -r["auc_phase"] if math.isfinite(r["auc_phase"]) else 0)[:12]:
            L.append(f"  {r['signal']:10s} {r['metric']:20s} {r['window_s']:4g} s  {_f(r['auc_phase'])} "
                     f"[{_f(r['ci'][0])}, {_f(r['ci'][1])}] | {_f(r['auc_phase_d11'])} | {_f(r['auc_pair'])} "
                     f"[{_f(r['ci_pair'][0])}, {_f(r['ci_pair'][1])}] | "
                     f"{r['real_z']:.3f} v {r['pseudo_z']:.3f} | {r['n_real']}/{r['n_pseudo']}")
    L.append("")
    L.append("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in res["seconds"].items()))
    return "\n".join(L)


def _jsonable(x):
    if isinstance(x, dict):
        return {(k if isinstance(k, str) else " x ".join(map(str, k)) if isinstance(k, tuple) else str(k)):
                _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, Splice):
        return {"start": x.start, "end": x.end, "donor": x.donor}
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="balanced", help="detector preset (default balanced)")
    ap.add_argument("--evidence", choices=("learned", "analytic"), default=None,
                    help="the preset's evidence (default: the preset's own)")
    ap.add_argument("--heart", choices=tuple(HEART_KINDS), default="hr",
                    help="heart input of the detector runs: HR.csv, BVP beats, IBI.csv, or the roster's choice")
    ap.add_argument("--window", type=float, default=30.0, help="synchrony window of the detector runs (s)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2)")
    ap.add_argument("--quick", action="store_true", help="a subset (about a minute)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the signals x metrics x windows sweep")
    ap.add_argument("--seed", type=int, default=16, help="splice placement seed")
    ap.add_argument("--phase-markers", action="store_true",
                    help="give each recording a marker at every phase start (an experiment's trigger stream)")
    ap.add_argument("--data", default=str(DATA), help="the emopaircompete folder")
    ap.add_argument("--json", help="write every number to this file")
    ap.add_argument("--override", type=json.loads, default=None,
                    help='detector fields replaced, a JSON object, e.g. \'{"arming": false}\' (the detector before '
                         "arming: what the evidence alone prompts on real pairs)")
    args = ap.parse_args(argv)
    import dataclasses

    from attune_monitor.dsp.detector import get_preset

    try:
        config = get_preset(args.preset, args.evidence)  # validates the name
        if args.override:
            config = dataclasses.replace(config, **args.override).validate()
    except (ValueError, TypeError) as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.evidence is None and not args.override:
        config = args.preset  # the preset as the pipeline runs it (by name)
    t = time.perf_counter()
    try:
        res = run_controls(config, heart=args.heart, quick=args.quick, jobs=args.jobs, window_s=args.window,
                           sweep=not args.no_sweep, seed=args.seed, markers=args.phase_markers,
                           root=Path(args.data))
    except DataMissing as exc:
        print(f"skipped: {exc}")
        return 0
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    res["seconds"]["total"] = time.perf_counter() - t
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(_jsonable(res), indent=1, allow_nan=False) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
