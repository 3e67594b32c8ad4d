"""Possible-rupture and repair detection from pairwise synchrony (causal, live == offline).

A *rupture* here is a sustained drop of a pair's physiological synchrony from a level that was *measurably*
above chance down towards chance (the surrogate level); *repair* is its return. A flag is a prompt for the
facilitator to check in, never a diagnosis.

What makes a flag (the measurements behind each choice: docs/validation.md)
---------------------------------------------------------------------------
* **Arming: a rupture needs an attunement to lapse from.** A modality of a pair is armed once the mean of its
  synchrony minus its chance level (Fisher z) over the last ``arm_span_s`` (120 s) of clean windows reaches
  ``arm_sigma`` (3) standard errors (the time-shifted-partner surrogate's spread over the square root of the
  number of independent windows in the span); its baseline is that span's level. The test runs on every window,
  so its threshold keeps ``arm_sigma``'s one-sided tail divided by the number of spans tested while the track has
  been unarmed (Bonferroni, ``arm_correct``): strangers tested all session long are not armed by chance late in it.
  Unarmed, a pair shows "not measurably in tune" (state ``not_in_tune``) with that evidence and raises nothing. The
  span and the threshold were chosen on real pseudo-pairs; the correction has no parameter of its own
  (docs/validation.md).
* **Shared events re-baseline instead of flagging** (:meth:`RuptureDetector.note_shared_event`): a marker (the
  experiment's or the facilitator's note), a task switch, a gap in the data, a signal loss, and everybody's
  arousal moving the same way at once (:class:`attune_monitor.dsp.divergence.SharedShift`, from the pipeline) disarm
  every pair; windows holding the event are left out and arming starts again. An open prompt is closed as
  ``interrupted``.
* **A long lapse is a state, not a prompt.** A possible rupture not repaired ``lapse_s`` (240 s) after its onset
  closes as ``unrepaired``; the pair shows "out of tune since mm:ss" (state ``out_of_tune``) until it is armed
  again. No prompt stays open longer.
* **Arousal divergence alone never flags.** It is shown per person; as evidence it only counts with
  ``arousal_evidence=True`` (analytic) or inside the learned evidence, which can only grow while the armed
  synchrony drops (``learned_sync_gate``).
* **Groups:** each person's tie to the group (the mean evidence of their armed pairs) flags all their armed
  pairs at once, naming them, when one person drifts away from everyone.

The presets use the learned evidence below (trees fitted on seven simulated rupture families); the analytic
evidence is what the state machine's unit tests use and ``get_preset(name, "analytic")`` gives.

Evidence, fused over modalities and arousal
-------------------------------------------
Per pair and modality (:class:`ModalityTrack`) the detector learns the
attuned baseline (Fisher z, see Calibration below) and the running chance level,
and measures each window's drop as a fraction of the way to chance::

    drop_m = (baseline_z - sync_z) / (baseline_z - chance_z)

``drop = 0`` is "as attuned as usual", ``drop = 1`` "no more in tune than two
strangers". The modalities available at that moment (not missing, not just
back from a gap, clearly above chance at baseline) are fused into one drop,
weighted by their signal-to-noise ratio ``snr_m = (baseline_z - chance_z) /
z_sd``; one modality alone counts ``1 / single_h_factor`` as much; a hole in
EDA is never read as a drop.

A one-sided CUSUM (:class:`PairMachine`) accumulates ``mean(snr**2) * (drop -
cusum_k)`` per second (the log-likelihood ratio of a shift from the baseline
to chance, up to the window overlap). With ``arousal=True`` (what the
pipeline uses) it also adds, per second, ``cusum_h * (L' - arousal_k) /
arousal_h`` with ``L'`` = ``L`` clipped to ``[arousal_floor, arousal_clip]``
(an arousal plainly in tune must not veto a clear drop of synchrony), where
``L`` is the larger of the pair's two people's
*arousal divergence* log-likelihood ratios (:mod:`attune_monitor.dsp.divergence`: one
person's heart rate and skin conductance climbing alone, "aversive", or
flattening alone, "withdrawn", against the others). A possible rupture is
flagged when the evidence reaches ``cusum_h`` (times the group factor); its
onset is where the evidence was last below ``onset_frac * cusum_h``, dated back by ``onset_delay_s`` (the
evidence comes from trailing windows and shows a change only some seconds after it began). Because
a rupture must fall *towards chance*, a shared stressor (synchrony up,
everybody's arousal up together) only drives the evidence to 0; short dips
wash out below ``cusum_k``.

States per pair (what the UI shows)::

    attuned -> drifting -> possible_rupture -> repairing -> repaired (-> attuned)
                  |                               |
                  +-> attuned (evidence back to 0) +-> possible_rupture (relapse)

``drifting`` = evidence above ``drift_h``; repair follows the *severity*, the larger of the smoothed
synchrony drop and the smoothed arousal drop ``(L - arousal_in_tune) / (arousal_rupture - arousal_in_tune)``
(below ``repair_frac``: repairing; below ``repaired_frac`` for ``min_repaired_s``: repaired; the episode's end
is when it fell below ``repaired_frac``, dated back by ``repair_delay_s`` like the onset, never before the
flag or the deepest point); a new flag soon after a repair reopens the same episode. In groups, an episode names the
member of the pair whose arousal moved away from the group (when the two differ clearly), else the one most of whose
pairs are dropping.

Calibration
-----------
The first baseline is the interquartile (trimmed) mean of the first ``calibration_s`` (50 s) of valid windows;
no evidence before it. It then follows the smoothed synchrony up and down (half-life ``baseline_halflife_s``)
whenever the pair is not in a possible rupture and its evidence is below ``learn_evidence * cusum_h``, with
the target clipped to ``+cap_up`` / ``-cap_down`` of the margin per step, so a shared stressor or a rupture
cannot drag it. An optional group prior (``group_prior_weight``) shrinks a pair's first baseline towards the
median of the other pairs; it is off (it did not help: docs/validation.md).

Groups: with ``n_pairs`` pairs watched, each pair needs ``1 + group_h_factor * ln(n_pairs)`` times the
evidence, so a group of four (six pairs) does not have six times a couple's false alarms per session.

Learned evidence (what the presets use)
---------------------------------------
With ``evidence="learned"`` the CUSUM adds, per second, ``spread * clip(llr) - learned_k`` instead of the two
terms above, where ``llr`` is the log-likelihood ratio of :mod:`attune_monitor.dsp.evidence` (a gradient-boosted tree
ensemble over the pair's synchrony in both modalities, its chance levels, its distance from the pair's own
level of the last five minutes, the same 10 and 20 s back, and both people's arousal divergence) and
``spread`` the ``ref_chance_sd`` factor below; ``learned_h`` (times the group factor) flags. With arming, the
evidence can only grow while the fused drop of the armed modalities is at least ``learned_sync_gate``.
The shipped ensemble was fitted on domain-randomised simulated sessions of seven rupture families
(``bench/families.py``: coupling loss alone, with arousal up, with flattening, partial, slow drift, sudden,
one person leaving a group), and the presets' ``learned_k`` / ``learned_h`` (:data:`LEARNED_PRESETS`) were
chosen by leave-one-family-out (``bench/train_evidence.py lofo``). How well it does, and how the earlier
versions did: docs/validation.md.

Presets with the analytic evidence (:data:`ANALYTIC_PRESETS`, ``get_preset(name, "analytic")``)
------------------------------------------------------------------------------------------------
The pipeline feeds heart rate as plain windowed r and skin conductance as *phasic* synchrony (co-occurring
responses, best r over +-3 s of the sample-to-sample changes; ``dsp.pipeline.DETECTOR_METRICS``). Their
cusum_k, cusum_h, arousal_k and arousal_h were chosen by a grid search on simulated tune-split sessions
(``bench/tune_detector.py``; the arousal model with ``fit-arousal``); the values are in the table, the
figures in docs/validation.md. Their arousal_k still sets where the displays call a person "moving away",
and their drift band the "usual" band.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

import numpy as np

from .divergence import FEATURES as DIVERGENCE_FEATURES
from .events import (
    EpisodeClosed,
    EpisodeEvent,
    EpisodeOpened,
    EpisodeReopened,
    EpisodeRepaired,
    Event,
    PairEvent,
    PairInterrupted,
    PairLapsed,
    PairRepaired,
    PairRupture,
    SignalBack,
    SignalEvent,
    SignalLost,
    StateChanged,
)
from .evidence import PairFeatures, shipped_model
from .limits import Limit, check_fields, check_flag, config_error
from .quality import REASONS, Quality

__all__ = [
    "OUTCOMES", "EVIDENCE_KINDS", "PairState", "STATES", "UNARMED_STATES", "STATE_WORDS", "DetectorConfig",
    "ANALYTIC_PRESETS", "LEARNED_THRESHOLDS", "LEARNED_PRESETS", "PRESETS", "AROUSAL_KEY", "get_preset",
    "pair_words", "ModalityTrack", "PairEpisodeDraft", "PairMachine", "PairModalityMachine", "Episode",
    "RuptureDetector", "SignalLossTracker", "arousal_trend", "episode_dict", "PAIR_BANK_MIN_PAIRS", "arm_tail",
    "arm_sigma_after", "normal_isf",
]

#: From this many pairs on, :class:`RuptureDetector` steps its pairs in arrays with one compiled call per time step
#: (:mod:`attune_monitor.dsp.pair_bank`, needs numba; same events and states as the per-pair machines) instead of
#: one :class:`PairMachine` per pair: a group of 8 people has 28 pairs.
PAIR_BANK_MIN_PAIRS = 28

#: How an episode ended (:attr:`Episode.outcome`).
OUTCOMES = ("open", "repaired", "unrepaired", "interrupted", "session_end")

#: What the CUSUM can accumulate (``DetectorConfig.evidence``).
EVIDENCE_KINDS = ("analytic", "learned")

class PairState(StrEnum):
    """State of a pair's machine (:class:`PairMachine`); each member equals its plain-text value.

    The members compare equal to (and hash like) their strings, and are written as them in JSON and text, so
    ``state == "attuned"`` and ``STATE_WORDS[state]`` keep working; :data:`STATE_WORDS` gives their words.
    """

    CALIBRATING = "calibrating"
    NOT_IN_TUNE = "not_in_tune"
    OUT_OF_TUNE = "out_of_tune"
    ATTUNED = "attuned"
    DRIFTING = "drifting"
    POSSIBLE_RUPTURE = "possible_rupture"
    REPAIRING = "repairing"
    REPAIRED = "repaired"


#: States of the per-pair machine, in order (:class:`PairState` members; see :data:`STATE_WORDS` for the UI).
STATES = tuple(PairState)
# members read in per-pair loops (an Enum class attribute costs a __getattr__ call each time on Python 3.11)
_CALIBRATING, _NOT_IN_TUNE = PairState.CALIBRATING, PairState.NOT_IN_TUNE
#: States in which a pair is not armed: no rupture can be raised (there is no measured attunement to lapse from).
UNARMED_STATES = (PairState.CALIBRATING, PairState.NOT_IN_TUNE, PairState.OUT_OF_TUNE)
STATE_WORDS = {
    "calibrating": "learning baseline",
    "not_in_tune": "not measurably in tune",
    "out_of_tune": "out of tune",
    "attuned": "in tune",
    "drifting": "drifting",
    "possible_rupture": "possible rupture",
    "repairing": "repairing",
    "repaired": "repaired",
}


@dataclass(frozen=True)
class DetectorConfig:
    """Parameters of the detector; see :data:`PRESETS`.

    All times in seconds of session time; ``drop`` is the fused fraction of
    the way from the pair's baseline to chance (see the module docstring).

    Attributes
    ----------
    calibration_s : float
        Seconds of valid synchrony a modality needs before its baseline is
        trusted and it contributes evidence.
    calibration_trim : float
        Fraction of the calibration windows cut from each end before their mean is the first baseline
        (0.25: the interquartile mean, robust to warm-up transients and a stray dip).
    group_prior_weight : float
        In groups (3+ people), weight of the median first baseline of the other pairs (same modality) in a
        pair's first baseline; steadies a pair whose own calibration stretch was unusual.
    baseline_halflife_s : float
        Half-life of the running baseline, followed up and down while the pair is not in a possible rupture.
    baseline_cap_up, baseline_cap_down : float
        The running baseline follows the smoothed synchrony clipped to ``baseline + cap_up * margin`` and
        ``baseline - cap_down * margin`` (so a shared stressor or a rupture cannot drag it far).
    group_h_factor : float
        With ``n_pairs`` pairs watched, every pair needs ``1 + group_h_factor * ln(n_pairs)`` times the
        evidence (``cusum_h``): a group of 4 (6 pairs) has 6 chances of a false alarm where a couple has one.
    learn_evidence : float
        The baseline is followed only while the evidence is at most this fraction of ``cusum_h`` (0: only
        while there is no evidence of a drop at all).
    min_margin : float
        Fisher-z distance the baseline must keep above chance; a modality that
        was never clearly in tune cannot "lose" attunement and gives no evidence.
    cusum_k : float
        Reference drop of the CUSUM: each window adds ``drop - cusum_k`` to the
        evidence (so drops smaller than ``cusum_k`` wash out).
    cusum_h : float
        Evidence (drop-seconds above ``cusum_k``) at which a possible rupture
        is flagged. Chosen from the null distribution of attuned sessions for
        the preset's false-alarm rate.
    drift_h : float
        Evidence above which the pair is shown as drifting.
    drop_clip : float
        Each window's drop is clipped to ``[-drop_clip, drop_clip]`` so that a
        single wild window cannot flag (nor one very high window cancel a drop).
    single_h_factor : float
        With only one modality available (of two), its evidence is divided by this
        (one noisy series needs more evidence).
    repair_frac, repaired_frac : float
        Smoothed drop below which a rupture is repairing / repaired.
    relapse_frac : float
        Smoothed drop above which a repairing pair falls back to possible rupture.
    min_repaired_s : float
        How long the smoothed drop must stay below ``repaired_frac`` to call it repaired.
    smooth_s : float
        Time constant of the exponential smoothing of the drop for the repair
        decisions and the display.
    loss_guard_s : float
        After a modality's synchrony returns from a gap (signal loss), this long
        it gives no evidence (windows straddling the gap are not trustworthy).
    chance_halflife_s : float
        Half-life of the running mean of the per-window surrogate (chance)
        level; one window's surrogate is too noisy to compare against.
    merge_gap_s : float
        A flag within this long after the pair's last episode was repaired
        reopens that episode instead of starting a new one.
    weights : tuple of (str, float)
        Weight of each modality in the fused drop.
    z_sd : float
        Typical window-to-window spread (Fisher z) of attuned synchrony; the
        evidence of a modality is weighted by ``(margin / z_sd) ** 2``, so a
        pair whose baseline sits close to chance needs longer to flag.
    arousal_k, arousal_h : float
        Person-level arousal divergence (:mod:`attune_monitor.dsp.divergence`): each second a pair adds
        ``cusum_h * (L' - arousal_k) / arousal_h`` to its evidence (``L'``: ``L`` clipped to
        ``[arousal_floor, arousal_clip]``), where ``L`` is the
        larger of its two people's log-likelihood ratios "in a rupture" vs "in tune"; so ``arousal_h``
        seconds of a ratio one above ``arousal_k`` flag on their own, and less together with a drop of synchrony.
    arousal_clip, arousal_floor : float
        Largest and smallest log-likelihood ratio one second can contribute (the floor keeps an arousal
        that is plainly in tune from cancelling a clear drop of synchrony).
    onset_frac : float
        A flag's onset is the last time the evidence was at most ``onset_frac`` of the threshold (0: where it
        last left 0, the CUSUM's change-point estimate), less ``onset_delay_s``.
    onset_delay_s : float
        How long before that time the onset is dated: the evidence of a second comes from trailing windows
        (synchrony 30 s, arousal levels 10 s, arousal activity 20 s), so it reflects a change only some seconds
        after it began. Never before the pair's last repair, signal loss or the end of its calibration. It moves
        the reported onset only; a flag still needs the same evidence (the lag it corrects: docs/validation.md).
    repair_delay_s : float
        How long before the time the severity fell below ``repaired_frac`` (for good) an episode's end
        (``offset_s``, hence ``time_to_repair_s``) is dated, never before the flag or the deepest point: the
        trailing windows show
        a return some seconds after it happened. Only the reported end moves; when "repaired" is shown and
        whether a relapse reopens the episode do not. On the 84 tune sessions (balanced) the reported end
        lagged the scripted repair by a median 29.8 s with 0 and 5.3 s with 25 s (mean absolute error 43 ->
        25 s); on the eval sets 33-35 -> 8-10 s.
    arousal_in_tune, arousal_rupture : float
        Typical ratio in tune and in a rupture: the arousal *drop* ``(L - in_tune) / (rupture - in_tune)``
        joins the synchrony drop (the larger of the two) in the repair decisions and the display.
    evidence : {"analytic", "learned"}
        What the CUSUM accumulates: ``"analytic"`` (the default of a bare config; every preset in
        :data:`PRESETS` uses ``"learned"``), the synchrony drop weighted by its signal-to-noise ratio
        plus the arousal term above; ``"learned"``, the log-likelihood ratio of :mod:`attune_monitor.dsp.evidence` (a
        tree ensemble over synchrony, its recent course and both people's arousal divergence), less ``learned_k``,
        per second. Flags, onsets, repair and signal-loss handling are the same either way.
    learned_k, learned_h, learned_clip : float
        The learned evidence's reference and threshold: each second adds ``clip(llr, -learned_clip,
        learned_clip) - learned_k``, and ``learned_h`` (times the group factor) flags, in place of ``cusum_h``
        (``drift_h``, ``onset_frac`` and ``learn_evidence`` scale with it).
    ref_chance_sd : float
        The spread of the time-shifted-partner r (surrogate SD) the presets were
        tuned at. Where the pair's running surrogate SD is wider (smooth 1 Hz
        device HR: ~0.8 on a real E4 dyad vs ~0.35-0.45 in the simulated tune sessions), chance
        alone moves r that much, and the evidence is scaled down by
        ``(ref_chance_sd / chance_sd) ** 2``; never scaled up.
    learned_sync_gate : float
        With arming, the learned evidence can only grow while the fused synchrony drop of the armed
        modalities is at least this (a fraction of the way to chance): arousal divergence alone never flags.
    arming : bool
        A modality gives evidence only once it is *armed*: its synchrony measurably above its chance level over
        the last ``arm_span_s`` of clean windows (see :class:`ModalityTrack`). False: the first
        ``calibration_s`` of windows are the baseline, whatever they are (the detector before arming).
    arm_span_s : float
        Seconds of clean windows (none touching a gap, a loss or a shared event) over which the synchrony's
        excess over chance is measured for arming.
    arm_sigma : float
        The excess (mean Fisher z of synchrony minus chance over ``arm_span_s``) must reach this many standard
        errors; the standard error is the surrogate's spread over the square root of the number of
        independent windows in the span (``arm_span_s / window_s``, at least 1).
    arm_min_excess : float
        ... and at least this much (Fisher z), however narrow the surrogate.
    arm_correct : bool
        The longer a track has been tested without arming, the more standard errors it needs: a test run on
        every window of a whole session arms a pair that was never in tune, by chance, far more often than one
        test at ``arm_sigma`` would. After ``u`` seconds of testing unarmed the threshold is the normal quantile
        whose upper tail is ``arm_sigma``'s divided by ``1 + u / arm_span_s`` (the spans tested so far): with
        ``arm_sigma`` 3 and a 120-s span, 3.46 standard errors after 8 minutes, 3.64 after 18, 3.82 after 38. It
        falls back to ``arm_sigma`` once the track arms. False: a fixed threshold.
    lapse_s : float
        A possible rupture not repaired this long after its onset is closed as *unrepaired*: the pair shows
        "out of tune since" the onset and is disarmed until its synchrony is measurably above chance again
        (a long lapse is a state, not a prompt that stays open). ``inf``: never.
    arousal_evidence : bool
        Let a person's arousal divergence add evidence for a rupture (the analytic term above). Off by
        default (why: docs/validation.md): arousal divergence is shown per person and never raises a flag
        alone.
    """

    calibration_s: float = 50.0
    calibration_trim: float = 0.25
    group_prior_weight: float = 0.0
    baseline_halflife_s: float = 300.0
    baseline_cap_up: float = 0.5
    baseline_cap_down: float = 0.3
    learn_evidence: float = 0.3
    group_h_factor: float = 0.3
    min_margin: float = 0.2
    cusum_k: float = 0.7
    cusum_h: float = 10.0
    drift_h: float = 3.0
    drop_clip: float = 2.0
    single_h_factor: float = 1.5
    repair_frac: float = 0.6
    repaired_frac: float = 0.4
    relapse_frac: float = 0.9
    min_repaired_s: float = 8.0
    smooth_s: float = 5.0
    loss_guard_s: float = 20.0
    chance_halflife_s: float = 60.0
    merge_gap_s: float = 20.0
    weights: tuple = (("hr", 1.0), ("eda", 1.0))
    z_sd: float = 0.6
    ref_chance_sd: float = 0.5
    arousal_k: float = 4.5
    arousal_h: float = 25.0
    onset_frac: float = 0.1
    onset_delay_s: float = 10.0
    repair_delay_s: float = 25.0
    arousal_clip: float = 8.0
    arousal_floor: float = 2.0
    arousal_in_tune: float = -2.0
    arousal_rupture: float = 3.5
    evidence: str = "analytic"
    learned_k: float = 3.0
    learned_h: float = 10.0
    learned_clip: float = 12.0
    learned_sync_gate: float = 0.5
    arming: bool = True
    arm_span_s: float = 120.0
    arm_sigma: float = 3.0
    arm_min_excess: float = 0.2
    arm_correct: bool = True
    lapse_s: float = 240.0
    arousal_evidence: bool = False

    def __post_init__(self) -> None:
        """Check every field (:class:`attune_monitor.errors.ConfigError` naming the field, its range and a fix)."""
        self.validate()

    def validate(self) -> DetectorConfig:
        """Check every field's range and the hysteresis ordering; return self.

        Raises
        ------
        attune_monitor.errors.ConfigError
            A ``ValueError`` naming the field, the value, the range and a value to use instead.
        """
        check_fields(self, _DETECTOR_LIMITS)
        for name in ("arming", "arousal_evidence", "arm_correct"):
            check_flag(self, name)
        if self.evidence not in EVIDENCE_KINDS:
            raise config_error(self, "evidence", f"one of {', '.join(EVIDENCE_KINDS)}", self.evidence)
        if not (isinstance(self.weights, tuple) and all(
                isinstance(w, tuple) and len(w) == 2 and isinstance(w[0], str) and _WEIGHT.accepts(w[1])
                for w in self.weights)):
            raise config_error(self, "weights", "a tuple of (modality, weight 0 or more) pairs", self.weights)
        # the orderings: each message names the field that breaks it and the bound it must keep
        if not self.repaired_frac < self.repair_frac:
            raise config_error(self, "repaired_frac", f"a fraction less than repair_frac ({self.repair_frac:g})",
                               self.repaired_frac)
        if not self.repair_frac < self.relapse_frac:
            raise config_error(self, "relapse_frac", f"a fraction greater than repair_frac ({self.repair_frac:g})",
                               self.relapse_frac)
        if not self.drift_h < self.cusum_h:
            raise config_error(self, "drift_h", f"evidence 0 or more and less than cusum_h ({self.cusum_h:g})",
                               self.drift_h)
        if not self.arousal_floor <= self.arousal_clip:
            raise config_error(self, "arousal_floor", f"a ratio at most arousal_clip ({self.arousal_clip:g})",
                               self.arousal_floor)
        if not self.arousal_in_tune < self.arousal_rupture:
            raise config_error(self, "arousal_rupture",
                               f"a ratio greater than arousal_in_tune ({self.arousal_in_tune:g})", self.arousal_rupture)
        return self

    @property
    def threshold(self) -> float:
        """The evidence that flags a couple: ``learned_h`` with learned evidence, else ``cusum_h``."""
        return self.learned_h if self.evidence == "learned" else self.cusum_h

    @property
    def drift_threshold(self) -> float:
        """The evidence above which a pair is shown drifting (``drift_h``, in proportion to :attr:`threshold`)."""
        return self.drift_h * self.threshold / self.cusum_h

    @property
    def drift_frac(self) -> float:
        """Drop at which evidence starts to accumulate (the lower edge of the "usual" band in displays)."""
        return self.cusum_k

    def weight(self, modality: str) -> float:
        """Weight of ``modality`` in the fused drop (1 when not listed)."""
        return dict(self.weights).get(modality, 1.0)


_SECONDS = Limit(0, None, what="seconds")
_POSITIVE_S = Limit(0, None, low_open=True, what="seconds")
_FRACTION = Limit(0, 1, what="a fraction")
_NUMBER = Limit(what="number")
_WEIGHT = Limit(0, None, what="a weight")
_CLIP = Limit(what="log-likelihood ratio", inf=True)  # +-inf: no clip / no floor
#: The range of each numeric field of :class:`DetectorConfig` (the orderings between fields: ``validate``).
_DETECTOR_LIMITS = {
    "calibration_s": _POSITIVE_S,
    "calibration_trim": Limit(0, 0.5, high_open=True, what="a fraction"),
    "group_prior_weight": _FRACTION,
    "baseline_halflife_s": _POSITIVE_S,
    "baseline_cap_up": Limit(0, None, what="a share of the margin"),
    "baseline_cap_down": Limit(0, None, what="a share of the margin"),
    "learn_evidence": _FRACTION,
    "group_h_factor": Limit(0, None, what="a factor"),
    "min_margin": Limit(0, None, what="a Fisher-z distance"),
    "cusum_k": Limit(0, None, what="a drop"),
    "cusum_h": Limit(0, None, low_open=True, what="evidence"),
    "drift_h": Limit(0, None, what="evidence"),
    "drop_clip": Limit(0, None, low_open=True, what="a drop", inf=True),
    "single_h_factor": Limit(1, None, what="a factor"),
    "repair_frac": Limit(0, None, low_open=True, what="a fraction"),
    "repaired_frac": Limit(0, None, low_open=True, what="a fraction"),
    "relapse_frac": Limit(0, None, low_open=True, what="a fraction"),
    "min_repaired_s": _SECONDS,
    "smooth_s": _POSITIVE_S,
    "loss_guard_s": _SECONDS,
    "chance_halflife_s": _POSITIVE_S,
    "merge_gap_s": _SECONDS,
    "z_sd": Limit(0, None, low_open=True, what="a Fisher-z spread"),
    "ref_chance_sd": Limit(0, None, low_open=True, what="a Fisher-z spread"),
    "arousal_k": _NUMBER,
    "arousal_h": _POSITIVE_S,
    "onset_frac": Limit(0, 1, high_open=True, what="a fraction"),
    "onset_delay_s": _SECONDS,
    "repair_delay_s": _SECONDS,
    "arousal_clip": _CLIP,
    "arousal_floor": _CLIP,
    "arousal_in_tune": _NUMBER,
    "arousal_rupture": _NUMBER,
    "learned_k": _NUMBER,
    "learned_h": Limit(0, None, low_open=True, what="evidence"),
    "learned_clip": Limit(0, None, low_open=True, what="a log-likelihood ratio", inf=True),
    "learned_sync_gate": _NUMBER,
    "arm_span_s": _POSITIVE_S,
    "arm_sigma": Limit(0, None, what="standard errors"),
    "arm_min_excess": Limit(0, None, what="a Fisher-z excess"),
    "lapse_s": Limit(0, None, low_open=True, what="seconds", inf=True),
}


#: The presets with the analytic evidence (what they were before the learned evidence; see the module docstring).
ANALYTIC_PRESETS = {
    "conservative": DetectorConfig(cusum_k=0.8, cusum_h=15.0, drift_h=4.0, arousal_k=3.5, arousal_h=40.0),
    "balanced": DetectorConfig(),
    "sensitive": DetectorConfig(cusum_k=0.6, cusum_h=10.0, drift_h=3.0, arousal_k=3.5, arousal_h=25.0,
                                arousal_floor=1.0, onset_delay_s=8.0),
}
#: Learned evidence (:mod:`attune_monitor.dsp.evidence`): reference and threshold per preset
#: (``bench/train_evidence.py cv``).
LEARNED_THRESHOLDS = {"conservative": (3.0, 10.0), "balanced": (3.0, 7.0), "sensitive": (2.5, 7.0)}
#: The presets with the learned evidence (``get_preset(name, "learned")``, what :data:`PRESETS` are): trees fitted
#: on the seven rupture families of the simulator, thresholds as leave-one-family-out chose them.
LEARNED_PRESETS = {name: replace(cfg, evidence="learned", learned_k=LEARNED_THRESHOLDS[name][0],
                                 learned_h=LEARNED_THRESHOLDS[name][1])
                   for name, cfg in ANALYTIC_PRESETS.items()}
#: Sensitivity presets (see the module docstring for what each trades): armed, learned evidence that grows only
#: while synchrony drops.
PRESETS = LEARNED_PRESETS


#: Queue key of the arousal divergence in :class:`RuptureDetector` (never a modality name).
AROUSAL_KEY = "_arousal"


def get_preset(name: str, evidence: str | None = None) -> DetectorConfig:
    """Return the :class:`DetectorConfig` of a preset by name.

    With ``evidence`` "analytic" or "learned": that kind of evidence; None: the preset's own, learned.
    """
    if name not in PRESETS:
        raise ValueError(f"Invalid value for 'preset': expected one of {', '.join(PRESETS)}, but got {name!r}.")
    if evidence is not None and evidence not in EVIDENCE_KINDS:
        raise ValueError(
            f"Invalid value for 'evidence': expected one of {', '.join(EVIDENCE_KINDS)}, but got {evidence!r}.")
    table = PRESETS if evidence is None else {"analytic": ANALYTIC_PRESETS, "learned": LEARNED_PRESETS}[evidence]
    return table[name]


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def pair_words(state: str, out_of_tune_since: float | None = None) -> str:
    """A pair's state in the words every view uses: ``"out of tune since 12:34"`` after a long lapse."""
    if state == "out_of_tune" and out_of_tune_since is not None:
        return f"out of tune since {_clock(out_of_tune_since)}"
    return STATE_WORDS.get(state, state)


def _bank_available() -> bool:
    """Numba is there for the pair bank (imports it: called only for groups of :data:`PAIR_BANK_MIN_PAIRS` pairs)."""
    from .pair_bank import available

    return available()


def _fisher(r: float) -> float:
    # min(max(r, -0.999), 0.999) spelt out: the same comparisons, so the same value (NaN passes), without two
    # builtin calls (this runs ~3 times per pair and window: ~6,000 times per window at 64 people)
    if -0.999 > r:
        r = -0.999
    if 0.999 < r:
        r = 0.999
    return math.atanh(r)


def trim_mean(values, proportiontocut: float) -> float:
    """Mean of ``values`` without the ``proportiontocut`` smallest and largest of them (rounded down).

    ``scipy.stats.trim_mean(values, proportiontocut, axis=None)`` in numpy, bitwise (the same partition and
    mean), without importing scipy.stats: NaN when ``values`` is empty, holds a NaN or is cut entirely.

    Parameters
    ----------
    values : array_like, any shape (flattened)
    proportiontocut : float
        Share cut at each end, 0 <= proportiontocut <= 0.5.

    Returns
    -------
    float
    """
    a = np.asarray(values).ravel()
    if a.size == 0 or np.isnan(a).any():
        return math.nan
    lowercut = int(proportiontocut * a.size)
    uppercut = a.size - lowercut
    if lowercut > uppercut:
        raise ValueError(f"Invalid value for 'proportiontocut': at most half of the values can be cut at each end, "
                         f"but got {proportiontocut}.")
    if lowercut == uppercut:  # everything cut (proportiontocut 0.5, an even count)
        return math.nan
    kept = np.partition(a, (lowercut, uppercut - 1))[lowercut:uppercut]
    if not np.issubdtype(kept.dtype, np.inexact):  # integers: the mean in float64, as scipy's
        kept = kept.astype(np.float64)
    return float(np.mean(kept))


def arm_tail(config: DetectorConfig) -> float:
    """The one-sided tail of ``arm_sigma`` (NaN without ``arm_correct``: the threshold stays ``arm_sigma``)."""
    return 0.5 * math.erfc(config.arm_sigma / math.sqrt(2.0)) if config.arm_correct else math.nan


def arm_sigma_after(config: DetectorConfig, unarmed_s: float, tail: float | None = None) -> float:
    """Standard errors arming needs after ``unarmed_s`` seconds of testing without passing.

    ``arm_sigma``'s one-sided tail divided by ``1 + unarmed_s / arm_span_s``, the spans tested (Bonferroni); never
    below ``arm_sigma``. ``arm_sigma`` itself at 0 s, for NaN and without ``arm_correct``. ``tail``: the config's
    :func:`arm_tail`, when the caller keeps it.
    """
    tail = arm_tail(config) if tail is None else tail
    if not unarmed_s > 0.0 or tail != tail:  # (NaN: not testing yet / no correction)
        return config.arm_sigma
    z = normal_isf(tail / (1.0 + unarmed_s / config.arm_span_s))
    return z if z > config.arm_sigma else config.arm_sigma


def normal_isf(tail: float) -> float:
    """The standard normal quantile with upper tail ``tail`` (0 < tail < 1): ``z`` with ``P(Z > z) = tail``.

    Wichura's AS241 (Applied Statistics 37, 1988: relative error about 1e-16), on the tail itself so that a small
    tail keeps its precision. :mod:`attune_monitor.dsp._pair_kernels` compiles this very function (bitwise equal
    thresholds).
    """
    q = 0.5 - tail
    if abs(q) <= 0.425:
        r = 0.180625 - q * q
        num = (((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r + 6.7265770927008700853e+4) * r
                   + 4.5921953931549871457e+4) * r + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                + 1.3314166789178437745e+2) * r + 3.3871328727963666080e+0) * q
        den = (((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r + 3.9307895800092710610e+4) * r
                   + 2.1213794301586595867e+4) * r + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                + 4.2313330701600911252e+1) * r + 1.0)
        return num / den
    r = math.sqrt(-math.log(tail if q > 0.0 else 1.0 - tail))
    if r <= 5.0:
        r = r - 1.6
        num = (((((((7.7454501427834140764e-4 * r + 2.27238449892691845833e-2) * r + 2.41780725177450611770e-1) * r
                   + 1.27045825245236838258e+0) * r + 3.64784832476320460504e+0) * r + 5.76949722146069140550e+0)
                 * r + 4.63033784615654529590e+0) * r + 1.42343711074968357734e+0)
        den = (((((((1.05075007164441684324e-9 * r + 5.4759380849953449460e-4) * r + 1.51986665636164571966e-2) * r
                   + 1.48103976427480074590e-1) * r + 6.89767334985100004550e-1) * r + 1.67638483018380384940e+0)
                 * r + 2.05319162663775882187e+0) * r + 1.0)
    else:
        r = r - 5.0
        num = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 1.24266094738807843860e-3) * r
                   + 2.65321895265761230930e-2) * r + 2.96560571828504891230e-1) * r + 1.78482653991729133580e+0)
                 * r + 5.46378491116411436990e+0) * r + 6.65790464350110377720e+0)
        den = (((((((2.04426310338993978564e-15 * r + 1.42151175831644588870e-7) * r + 1.84631831751005468180e-5)
                   * r + 7.86869131145613259100e-4) * r + 1.48753612908506148525e-2) * r
                 + 1.36929880922735805310e-1) * r + 5.99832206555887937690e-1) * r + 1.0)
    x = num / den
    return x if q > 0.0 else -x


class ModalityTrack:
    """Arming, baseline, chance level and drop of one pair in one modality (streaming).

    With ``config.arming`` (the default) the track is *armed* once the mean of (synchrony - chance) in
    Fisher z over the last ``arm_span_s`` of clean windows reaches :meth:`arm_threshold` standard errors
    (``arm_sigma``, more the longer it has gone unarmed) and ``arm_min_excess``: only then is there an
    attunement to lapse from, and the baseline is that span's trimmed mean. A gap in the windows, a signal loss
    or a shared event (:meth:`reset`) disarms it; the windows that touch the event are left out and arming starts
    again. Armed, it follows the baseline slowly while the pair is attuned and gives each new window's ``drop``
    (NaN when this modality has no evidence: missing, unarmed, just back from a gap, or no longer clearly above
    chance).

    Without arming, the first ``calibration_s`` of valid windows are the baseline, whatever they are.
    """

    def __init__(self, modality: str, config: DetectorConfig, step_s: float, window_s: float = 30.0):
        self.modality = modality
        self.cfg = config
        self.step_s = float(step_s)
        self.window_s = float(window_s)
        self.valid_s = 0.0
        self._calib: list[float] = []
        self.just_calibrated = False
        self.baseline_z = math.nan
        self.first_baseline_z = math.nan
        self.chance_z = math.nan
        self.chance_sd = math.nan
        self.z = math.nan
        self.smooth_z = math.nan
        self.drop = math.nan
        self._guard_until = -math.inf
        self._last_valid_t: float | None = None
        # arming: the clean windows of the last arm_span_s, as (z, chance z, chance spread in z)
        self._arm: deque = deque(maxlen=max(2, int(round(config.arm_span_s / self.step_s))))
        self._arm_sums = [0.0, 0.0, 0.0, 0.0, 0.0]
        self.excess = math.nan     # mean (z - chance z) over the arming span
        self.excess_se = math.nan  # its standard error
        self.ever_full = False     # has the arming span ever been filled (else: still learning)
        self.testable_since = math.nan  # session time the arming test first ran since the track was last armed
        self.arm_need = math.nan   # standard errors the excess needed at the last test (arm_threshold)
        self._arm_tail = arm_tail(config)
        self._alpha_smooth = 1.0 - math.exp(-self.step_s / max(config.smooth_s, 1e-9))
        self._alpha_base = 1.0 - 0.5 ** (self.step_s / max(config.baseline_halflife_s, 1e-9))
        self._alpha_chance = 1.0 - 0.5 ** (self.step_s / max(config.chance_halflife_s, 1e-9))

    @property
    def calibrating(self) -> bool:
        """True until the baseline is known (without arming) / while the track is not armed."""
        return not math.isfinite(self.baseline_z)

    @property
    def armed(self) -> bool:
        """True while the track has a measured attunement to lapse from (its baseline is known)."""
        return not self.calibrating

    @property
    def margin(self) -> float:
        """Baseline minus chance (Fisher z); NaN while calibrating."""
        return self.baseline_z - (self.chance_z if math.isfinite(self.chance_z) else 0.0)

    @property
    def spread_factor(self) -> float:
        """Evidence scale from the chance spread: ``min(1, (ref_chance_sd / chance_sd) ** 2)``."""
        if not math.isfinite(self.chance_sd) or self.chance_sd <= self.cfg.ref_chance_sd:
            return 1.0
        return (self.cfg.ref_chance_sd / self.chance_sd) ** 2

    def arm_threshold(self, t: float) -> float:
        """Standard errors the arming excess needs at session time ``t`` (``arm_sigma``, rising while unarmed).

        The test runs on every window; after ``u = t - testable_since`` seconds of it without arming, the threshold
        is the normal quantile whose upper tail is ``arm_sigma``'s divided by ``1 + u / arm_span_s``, the number of
        spans tested (Bonferroni). A gap or a shared event does not reset ``u``: the tests already run still count.
        """
        return arm_sigma_after(self.cfg, t - self.testable_since, self._arm_tail)

    def reset(self, clean_from: float) -> None:
        """Disarm: forget the baseline and the arming span; windows ending before ``clean_from`` give nothing.

        Called at a gap, a signal loss, a shared event (a marker, a task switch) and a lapse: what comes after
        is measured afresh instead of against a level from before.
        """
        if self.cfg.arming:
            self.baseline_z = math.nan
            self._arm.clear()
            self._arm_sums = [0.0, 0.0, 0.0, 0.0, 0.0]
            self.excess = self.excess_se = self.arm_need = math.nan
        self._guard_until = max(self._guard_until, clean_from)
        self.drop = math.nan

    def _arm_push(self, z: float, cz: float, sdz: float) -> None:
        """Append a clean window to the arming span, keeping running sums (one window in, one out: O(1))."""
        s = self._arm_sums  # sum of excess, of z, of z**2, of finite sd, count of finite sd
        if len(self._arm) == self._arm.maxlen:
            oz, ocz, osd = self._arm[0]
            s[0] -= oz - ocz
            s[1] -= oz
            s[2] -= oz * oz
            if osd == osd:
                s[3] -= osd
                s[4] -= 1.0
        self._arm.append((z, cz, sdz))
        s[0] += z - cz
        s[1] += z
        s[2] += z * z
        if sdz == sdz:
            s[3] += sdz
            s[4] += 1.0

    def _arm_stats(self) -> tuple[float, float]:
        """Mean excess over chance (Fisher z) of the arming span and its standard error."""
        n = len(self._arm)
        s = self._arm_sums
        n_indep = max(1.0, n * self.step_s / max(self.window_s, self.step_s))
        # the surrogate's spread (what chance alone does to one window); unknown: the windows' own spread
        if s[4] > 0.5:
            spread = s[3] / s[4]
        else:
            spread = max(math.sqrt(max(s[2] / n - (s[1] / n) ** 2, 0.0)), 0.1)
        return s[0] / n, spread / math.sqrt(n_indep)

    def step(self, t: float, sync: float, chance: float, chance_sd: float = math.nan) -> float:
        """Take one window; return its drop (NaN: no evidence from this modality now)."""
        cfg = self.cfg
        if math.isfinite(chance_sd):
            self.chance_sd = chance_sd if not math.isfinite(self.chance_sd) else (
                self.chance_sd + self._alpha_chance * (chance_sd - self.chance_sd))
        gap = self._last_valid_t is not None and t - self._last_valid_t > 2 * self.step_s
        if not math.isfinite(sync):
            self.z = self.drop = math.nan
            return math.nan
        if gap:
            # windows after a gap straddle it; with arming the pair is measured afresh after it
            self.reset(t + cfg.loss_guard_s)
        self._last_valid_t = t
        z = self.z = _fisher(float(sync))
        c = _fisher(float(chance)) if math.isfinite(chance) else math.nan
        if math.isfinite(c):
            self.chance_z = (c if not math.isfinite(self.chance_z)
                             else self.chance_z + self._alpha_chance * (c - self.chance_z))
        self.smooth_z = (z if not math.isfinite(self.smooth_z)
                         else self.smooth_z + self._alpha_smooth * (z - self.smooth_z))
        self.valid_s += self.step_s
        if not cfg.arming:
            if self.calibrating:
                self._calib.append(z)
                if self.valid_s >= cfg.calibration_s:
                    # trimmed mean: the first windows of a session often hold warm-up transients
                    self.baseline_z = self.first_baseline_z = float(trim_mean(self._calib, cfg.calibration_trim))
                    self.just_calibrated = True
                    self._calib = []
                self.drop = math.nan
                return math.nan
        else:
            if t < self._guard_until:
                self.drop = math.nan
                return math.nan
            cz = c if math.isfinite(c) else self.chance_z
            sdz = (_fisher(float(chance) + chance_sd) - c) if (math.isfinite(c) and math.isfinite(chance_sd)) else (
                self.chance_sd if math.isfinite(self.chance_sd) else math.nan)
            self._arm_push(z, cz if math.isfinite(cz) else 0.0, sdz)
            full = len(self._arm) == self._arm.maxlen
            if full and self.calibrating:  # (while armed the span is kept, its statistics not needed)
                self.ever_full = True
                if self.testable_since != self.testable_since:
                    self.testable_since = t
                self.excess, self.excess_se = self._arm_stats()
                self.arm_need = self.arm_threshold(t)
            if self.calibrating:
                if full and self.excess >= max(cfg.arm_min_excess, self.arm_need * self.excess_se):
                    self.testable_since = math.nan
                    zs = [x[0] for x in self._arm]
                    self.baseline_z = float(trim_mean(zs, cfg.calibration_trim))
                    if not math.isfinite(self.first_baseline_z):
                        self.first_baseline_z = self.baseline_z
                    self.just_calibrated = True
                self.drop = math.nan
                return math.nan
        margin = self.margin
        if margin < cfg.min_margin or t < self._guard_until:
            self.drop = math.nan
            return math.nan
        self.drop = (self.baseline_z - z) / margin
        return self.drop

    def learn(self) -> None:
        """Follow the baseline with the current smoothed synchrony (call only while not in a possible rupture)."""
        if not self.calibrating and math.isfinite(self.smooth_z):
            # clipped, so that a shared stressor (synchrony up) or a rupture (down) cannot drag the bar far
            m = max(self.margin, self.cfg.min_margin)
            target = min(max(self.smooth_z, self.baseline_z - self.cfg.baseline_cap_down * m),
                         self.baseline_z + self.cfg.baseline_cap_up * m)
            self.baseline_z += self._alpha_base * (target - self.baseline_z)

    def snapshot(self, state: str) -> dict:
        """Current numbers for the UI (baseline and chance as r; the arming excess in Fisher z)."""
        # (called for every pair and modality whenever the views refresh: attributes read once, enum members
        # from module constants, no properties)
        isfinite, tanh = math.isfinite, math.tanh
        b, c, sz, d, ex, se = self.baseline_z, self.chance_z, self.smooth_z, self.drop, self.excess, self.excess_se
        need = self.arm_need
        armed = isfinite(b)
        return {
            "state": state if armed else (_CALIBRATING if not self.cfg.arming or not self.ever_full else _NOT_IN_TUNE),
            "baseline": tanh(b) if armed else None,
            "chance": tanh(c) if isfinite(c) else None,
            "sync": tanh(sz) if isfinite(sz) else None,
            "drop": float(d) if isfinite(d) else None,
            "armed": armed,
            "excess": round(ex, 4) if isfinite(ex) else None,
            "excess_se": round(se, 4) if isfinite(se) else None,
            "arm_need": round(need, 2) if isfinite(need) else None,
        }


@dataclass
class PairEpisodeDraft:
    """A possible rupture being followed by a :class:`PairMachine`."""

    onset_s: float
    flagged_s: float
    nadir_s: float
    nadir_drop: float
    modalities: list
    offset_s: float | None = None
    repaired: bool = False


class PairMachine:
    """Streaming fused CUSUM state machine for one pair over all its modalities.

    Feed it one time step at a time with :meth:`step`; it is a pure function
    of the sequence of windows it has seen.
    """

    def __init__(self, modalities, config: DetectorConfig, step_s: float, window_s: float = 30.0):
        self.modalities = tuple(modalities)
        self.cfg = config
        self.step_s = float(step_s)
        self.window_s = float(window_s)
        self.tracks = {m: ModalityTrack(m, config, step_s, window_s) for m in self.modalities}
        self.out_of_tune_since: float | None = None  # onset of the last lapse, until the pair is armed again
        self.last_inc = math.nan  # the evidence this step added (NaN: none known), for the person-to-group tie
        self._weight = {m: config.weight(m) for m in self.modalities}
        self.h_scale = 1.0
        self.state = PairState.CALIBRATING
        self.state_since: float | None = None
        self.evidence = 0.0
        self._run_start: float | None = None
        self._low_t: float | None = None
        self.drop = math.nan
        self.smooth_drop = math.nan
        self.n_used = 0
        self.used: list = []
        self._cand_since: float | None = None
        self.episode: PairEpisodeDraft | None = None
        self._alpha_smooth = 1.0 - math.exp(-self.step_s / max(config.smooth_s, 1e-9))
        self.smooth_arousal = math.nan  # smoothed arousal drop (see DetectorConfig.arousal_in_tune)
        self._onset_floor = -math.inf  # an onset is never dated before this (last repair, loss, calibration)

    def _set(self, state: str, t: float, events: list[PairEvent]) -> None:
        state = PairState(state)  # a typo'd state fails here, not in a view
        if state != self.state:
            events.append(StateChanged(t=t, state=state, previous=self.state))
            self.state = state
            self.state_since = t

    def step(self, t: float, values: dict, blocked: bool = False, arousal: float = math.nan,
             llr: float = math.nan) -> list[PairEvent]:
        """Advance by one time step.

        Parameters
        ----------
        t : float
            Session time of the windows' end (s).
        values : dict
            ``modality -> (sync, chance)`` for this step (NaN sync where missing).
        blocked : bool
            Signal of either person was lost (any modality) recently enough for this window to hold part of
            it: the window gives no evidence and a possible rupture that was building up is dropped.
        arousal : float
            Person-level arousal divergence of the pair this second (log-likelihood ratio, the larger of its two
            people's; NaN: not known), see :mod:`attune_monitor.dsp.divergence`.
        llr : float
            The learned log-likelihood ratio of this pair this second (:mod:`attune_monitor.dsp.evidence`); used when
            the config's ``evidence`` is ``"learned"``.

        Returns
        -------
        events : list of PairEvent
            :class:`~attune_monitor.dsp.events.StateChanged`, :class:`~attune_monitor.dsp.events.PairRupture`,
            :class:`~attune_monitor.dsp.events.PairRepaired` or :class:`~attune_monitor.dsp.events.PairLapsed`
            (without ``pair``), in the order they happened.
        """
        cfg = self.cfg
        events: list[PairEvent] = []
        drops, ws, used = [], [], []
        for m in self.modalities:
            tr = self.tracks[m]
            d = tr.step(t, *values.get(m, (math.nan, math.nan)))
            if d == d:  # not NaN
                used.append(m)
                clip = cfg.drop_clip  # min(max(d, -clip), clip), spelt out (see _fisher)
                low = -clip if -clip > d else d
                drops.append(clip if clip < low else low)
                # evidence weight = the modality's signal-to-noise ratio (baseline-to-chance distance over the
                # window-to-window spread, squared): the log-likelihood ratio of a mean shift from the
                # baseline to chance is snr**2 * (drop - 1/2) per window.
                ws.append(self._weight[m] * (tr.margin / cfg.z_sd) ** 2 * tr.spread_factor)
        self.used = used
        learned = cfg.evidence == "learned"
        self.last_inc = math.nan
        ep = self.episode
        if self.state in ("possible_rupture", "repairing") and ep is not None and t - ep.onset_s >= cfg.lapse_s:
            # a long lapse is a state, not a prompt: close it unrepaired (whatever the signals do now: lost,
            # disarmed, still low), the pair is out of tune until its synchrony is measurably above chance again
            events.append(PairLapsed(t=t, offset_s=t))
            self._close_unarmed(t, "out_of_tune", ep.onset_s, events)
            return events
        if blocked:
            # evidence gathered from windows that touch a loss is not evidence of a rupture; with arming the
            # pair is measured afresh once the windows are clean again
            self.drop = math.nan
            self._onset_floor = t
            if self.state not in ("possible_rupture", "repairing"):
                self.evidence, self._run_start = 0.0, None
                if cfg.arming:
                    for tr in self.tracks.values():
                        tr.reset(t)
                    self._set(self._unarmed_state(), t, events)
                elif self.state == "drifting":
                    self._set("attuned", t, events)
            return events
        armed = False
        for tr in self.tracks.values():
            if tr.baseline_z == tr.baseline_z:  # armed: its baseline is known (not NaN)
                armed = True
                break
        if self.state in UNARMED_STATES:
            if armed:
                self._set("attuned", t, events)
                self.out_of_tune_since = None
                self.evidence, self._run_start = 0.0, None
                self._onset_floor = t
            else:
                self._set(self._unarmed_state(), t, events)
                self.drop = math.nan
                return events
        elif not armed and self.state in ("attuned", "drifting", "repaired"):
            # disarmed by a gap: no level to compare with until it is measured again
            self.evidence, self._run_start = 0.0, None
            self._set(self._unarmed_state(), t, events)
            self.drop = math.nan
            return events
        arousal_counts = learned or cfg.arousal_evidence
        has_arousal = math.isfinite(arousal) and arousal_counts
        if not drops and not has_arousal:
            # no evidence now (loss, guard, never in tune): freeze
            self.drop = math.nan
            return events
        inc = 0.0
        if drops:
            sw = sum(ws)
            D = sum(w * d for w, d in zip(ws, drops)) / sw
            # HR and EDA noise are correlated (one shared drive): the fused evidence uses their mean SNR, not the sum
            gain = sw / len(ws)
            if len(drops) < 2 and len(self.modalities) >= 2:
                gain /= cfg.single_h_factor  # one noisy series alone needs more evidence
            self.drop = D
            self.smooth_drop = (D if not math.isfinite(self.smooth_drop)
                                else self.smooth_drop + self._alpha_smooth * (D - self.smooth_drop))
            if not learned:
                inc += gain * (D - cfg.cusum_k) * self.step_s
        else:
            self.drop = math.nan
        if has_arousal:
            if not learned:  # (arousal_evidence)
                la = min(max(arousal, cfg.arousal_floor), cfg.arousal_clip)
                inc += cfg.cusum_h * (la - cfg.arousal_k) / cfg.arousal_h * self.step_s
            a = (arousal - cfg.arousal_in_tune) / (cfg.arousal_rupture - cfg.arousal_in_tune)
            a = min(max(a, -cfg.drop_clip), cfg.drop_clip)
            self.smooth_arousal = (a if not math.isfinite(self.smooth_arousal)
                                   else self.smooth_arousal + self._alpha_smooth * (a - self.smooth_arousal))
        if learned:
            # where chance alone spreads wider than in the simulator (smooth 1 Hz device HR), a drop says less;
            # no ratio (a replay without the ensemble, e.g. the report's baseline line): no evidence either way,
            # while the baseline, the severity and the repair go on
            spread = min((self.tracks[m].spread_factor for m in used), default=1.0)
            inc = ((spread * min(max(llr, -cfg.learned_clip), cfg.learned_clip) - cfg.learned_k) * self.step_s
                   if math.isfinite(llr) and (used or not cfg.arming) else 0.0)
            if cfg.arming and not (math.isfinite(self.drop) and self.drop >= cfg.learned_sync_gate):
                inc = min(inc, 0.0)  # synchrony not dropping: arousal divergence alone never raises a flag
        h = self.h_scale * cfg.threshold
        self.last_inc = inc
        prev = self.evidence
        ev, cap = prev + inc, 2.0 * h  # min(max(0.0, ev), cap), spelt out (see _fisher)
        ev = ev if ev > 0.0 else 0.0
        self.evidence = cap if cap < ev else ev
        if prev == 0.0 and self.evidence > 0.0:
            self._run_start = t
        if self.evidence <= cfg.onset_frac * h:
            self._low_t = t
        sd = self.severity
        if self.state in ("attuned", "repaired", "drifting"):
            if self.evidence >= h:
                self.flag(t, events)
            elif self.evidence >= cfg.drift_threshold:
                self._set("drifting", t, events)
            elif self.state == "drifting" and self.evidence == 0.0:
                self._set("attuned", t, events)
            elif (self.state == "repaired" and self.state_since is not None
                  and t - self.state_since >= cfg.min_repaired_s):
                self._set("attuned", t, events)
            if self.state in ("attuned", "repaired", "drifting") and self.evidence <= cfg.learn_evidence * h:
                for tr in self.tracks.values():
                    if math.isfinite(tr.drop):
                        tr.learn()
        elif self.state in ("possible_rupture", "repairing"):
            ep = self.episode
            if ep is not None:
                if sd > ep.nadir_drop:
                    ep.nadir_drop, ep.nadir_s = sd, t
                for m in self.used:
                    if m not in ep.modalities and self.tracks[m].drop >= cfg.repair_frac:
                        ep.modalities.append(m)
            if self.state == "possible_rupture":
                if sd < cfg.repair_frac:
                    self._set("repairing", t, events)
                    self._cand_since = t if sd < cfg.repaired_frac else None
            else:
                if sd >= cfg.relapse_frac:
                    self._cand_since = None
                    self._set("possible_rupture", t, events)
                elif sd < cfg.repaired_frac:
                    if self._cand_since is None:
                        self._cand_since = t
                    if t - self._cand_since >= cfg.min_repaired_s:
                        # the end, dated back like the onset, but never before the flag or the deepest point
                        shown = self._cand_since - cfg.repair_delay_s
                        if ep is not None:
                            shown = max(shown, ep.flagged_s, ep.nadir_s)
                            ep.offset_s, ep.repaired = shown, True
                        events.append(PairRepaired(t=t, offset_s=shown, below_s=self._cand_since))
                        self._cand_since = None
                        self.episode = None
                        self.evidence = 0.0
                        self._run_start = None
                        self._onset_floor = t
                        self._set("repaired", t, events)
                else:
                    self._cand_since = None
        return events

    def flag(self, t: float, events: list[PairEvent], who: list | None = None) -> None:
        """Raise a possible rupture now.

        The pair's own evidence reached its threshold, or the person-to-group tie of one of its members did
        (``who``).
        """
        cfg = self.cfg
        # onset: the last time the evidence was still low (not merely above 0: a slow creep before a
        # rupture would date it too early)
        onset = max(x for x in (self._run_start, self._low_t, t - 1e9) if x is not None)
        # dated back by the delay of the trailing windows, but not into what came before
        onset = max(onset - cfg.onset_delay_s, self._onset_floor)
        self.episode = PairEpisodeDraft(onset, t, t, self.severity, list(self.used))
        events.append(PairRupture(t=t, onset_s=onset, who=tuple(who) if who else None))
        self._set("possible_rupture", t, events)

    def _unarmed_state(self) -> str:
        if self.out_of_tune_since is not None:
            return "out_of_tune"
        if not self.cfg.arming or not any(tr.ever_full for tr in self.tracks.values()):
            return "calibrating"
        return "not_in_tune"

    def _close_unarmed(self, t: float, state: str, since: float | None, events: list[PairEvent],
                       clean_from: float | None = None) -> None:
        """Forget the episode, the evidence and every baseline; measure the pair afresh from ``clean_from``."""
        clean_from = t if clean_from is None else clean_from
        self.episode = None
        self.evidence, self._run_start, self._cand_since = 0.0, None, None
        self.smooth_drop = self.smooth_arousal = math.nan
        for tr in self.tracks.values():
            tr.reset(clean_from)
        self._onset_floor = clean_from
        if since is not None:
            self.out_of_tune_since = since
        self._set(state if self.cfg.arming else "attuned", t, events)

    def shared_event(self, t: float, clean_from: float) -> list[PairEvent]:
        """Something everybody shared happened at ``t`` (a marker, a task switch): re-baseline, don't flag.

        Evidence building up is dropped, an open possible rupture is closed (a
        :class:`~attune_monitor.dsp.events.PairInterrupted`), and the
        pair is measured afresh from windows ending at ``clean_from`` on (windows that hold the event are
        left out).
        """
        events: list[PairEvent] = []
        if self.state in ("possible_rupture", "repairing") and self.episode is not None:
            events.append(PairInterrupted(t=t, offset_s=t))
        self._close_unarmed(t, "out_of_tune" if self.out_of_tune_since is not None else "not_in_tune",
                            None, events, clean_from)
        return events

    @property
    def severity(self) -> float:
        """The larger of the smoothed synchrony drop and the smoothed arousal drop (NaN when neither is known)."""
        vals = [v for v in (self.smooth_drop, self.smooth_arousal) if math.isfinite(v)]
        return max(vals) if vals else math.nan

    def snapshots(self) -> dict:
        """Per-modality numbers for the UI."""
        return {m: tr.snapshot(self.state) for m, tr in self.tracks.items()}


class PairModalityMachine(PairMachine):
    """A :class:`PairMachine` on one modality alone (replays for reports and tests).

    ``step_window(t, sync, chance)`` takes one window of that modality (``step`` keeps the dict form).
    """

    def __init__(self, modality: str, config: DetectorConfig, step_s: float):
        super().__init__((modality,), config, step_s)
        self.modality = modality

    def step_window(self, t: float, sync: float, chance: float, chance_sd: float = math.nan) -> list[PairEvent]:
        """Take one window of the modality: its synchrony, chance level and the chance level's SD."""
        return self.step(t, {self.modality: (sync, chance, chance_sd)})

    @property
    def baseline_z(self) -> float:
        """The modality's baseline (Fisher z; NaN while calibrating)."""
        return self.tracks[self.modality].baseline_z

    @property
    def chance_z(self) -> float:
        """The modality's running chance level (Fisher z)."""
        return self.tracks[self.modality].chance_z

    def threshold_z(self) -> float:
        """Synchrony (Fisher z) below which evidence for a rupture accumulates; NaN when there is no evidence."""
        tr = self.tracks[self.modality]
        if tr.calibrating or tr.margin < self.cfg.min_margin:
            return math.nan
        return tr.baseline_z - self.cfg.cusum_k * tr.margin


@dataclass
class Episode:
    """A possible rupture of one pair (all modalities fused).

    Times are seconds of session time (from the session origin). ``depth`` is
    the deepest smoothed ``drop`` reached: 1.0 means synchrony fell to chance level.
    ``outcome`` is one of :data:`OUTCOMES`: ``"open"`` (still a prompt), ``"repaired"``, ``"unrepaired"``
    (a long lapse, closed after ``lapse_s``: the pair is then shown out of tune since ``onset_s``),
    ``"interrupted"`` (closed by a shared event: a marker or task switch) or ``"session_end"``.
    """

    id: int
    pair: tuple[str, str]
    people: list[str]
    onset_s: float
    flagged_s: float
    nadir_s: float
    offset_s: float | None
    repaired: bool
    depth: float
    modalities: list[str]
    confidence: float
    context: dict[str, str] = field(default_factory=dict)
    open: bool = True
    outcome: str = "open"

    @property
    def time_to_repair_s(self) -> float | None:
        """Seconds from onset to repair (``None`` while unrepaired)."""
        return None if self.offset_s is None or not self.repaired else self.offset_s - self.onset_s

    def to_json(self, time_offset: float = 0.0) -> dict:
        """The ``attune.analysis/1`` episode record; ``time_offset`` is added to every time."""
        r = lambda x: None if x is None else round(float(x) + time_offset, 3)  # noqa: E731
        return {
            "kind": "rupture",
            "pair": list(self.pair),
            "people": list(self.people),
            "onset_s": r(self.onset_s),
            "nadir_s": r(self.nadir_s),
            "offset_s": r(self.offset_s),
            "repaired": bool(self.repaired),
            "time_to_repair_s": None if self.time_to_repair_s is None else round(self.time_to_repair_s, 3),
            "depth": round(float(self.depth), 3),
            "modalities": list(self.modalities),
            "confidence": round(float(self.confidence), 3),
            "context": dict(self.context),
            "outcome": self.outcome,
        }


def _confidence(n_available: int, modalities: list, depth: float) -> float:
    """Confidence in [0, 1]: more when several modalities carry the drop and it is deep."""
    depth_term = min(max(depth - 0.5, 0.0) / 0.8, 1.0)  # 0 at half-way to chance, 1 well below chance
    if len(modalities) >= 2:
        return round(0.75 + 0.25 * depth_term, 3)
    # one modality: lower when another one was available and stayed in tune
    base = 0.45 if n_available >= 2 else 0.55
    return round(base + 0.25 * depth_term, 3)


class RuptureDetector:
    """All pairs: one fused :class:`PairMachine` per pair, giving pair episodes.

    Parameters
    ----------
    participants : list of str
        Participant ids; pairs are ``itertools.combinations`` order, i.e.
        ``np.triu_indices(n, 1)``.
    modalities : sequence of str
        Synchrony modalities, e.g. ``("hr", "eda")``.
    step_s : float
        Seconds between consecutive synchrony windows.
    config : DetectorConfig | str
        A config or a preset name.
    window_s : float
        Length of the synchrony windows (s): a window ending up to ``window_s + loss_guard_s`` after a
        signal loss of either person still holds part of it (see :meth:`note_signal_loss`).
    arousal : bool
        Also take person-level arousal divergence (:meth:`update_arousal`, from :mod:`attune_monitor.dsp.divergence`) as
        evidence; then a time step is processed once the synchrony of every modality *and* the arousal of
        that second have been fed.
    collect_features : bool
        Keep every step's learned-evidence feature rows in :attr:`feature_log` (``(t, X)`` per drain, ``X``
        of shape (n_steps, n_pairs, len(dsp.evidence.FEATURES))), for ``bench/train_evidence.py``.
    evidence_model : object | None
        What turns feature rows into ratios (an ``llr(X)`` method, as
        :class:`attune_monitor.dsp.evidence.TreeEnsemble`);
        None: the shipped ensemble. ``bench/train_evidence.py`` passes the trees of a cross-validation fold.
    pair_bank : bool | None
        Step the pairs in arrays (:mod:`attune_monitor.dsp.pair_bank`; ``machines`` are then read-only views)
        instead of one :class:`PairMachine` each; the events, episodes and states are the same. None: from
        :data:`PAIR_BANK_MIN_PAIRS` pairs on, when numba is there and the config arms without a group prior
        (the presets). True needs that config and numba.
    """

    def __init__(self, participants, modalities=("hr", "eda"), step_s: float = 1.0, config="balanced",
                 window_s: float = 30.0, arousal: bool = False, collect_features: bool = False, evidence_model=None,
                 pair_bank: bool | None = None):
        self.participants = list(participants)
        self.arousal = bool(arousal)
        self.window_s = float(window_s)
        self._losses: dict[str, list] = {p: [] for p in self.participants}
        self.modalities = tuple(modalities)
        self.cfg = (get_preset(config) if isinstance(config, str) else config).validate()
        n = len(self.participants)
        iu = np.triu_indices(n, 1)
        self.pairs = [(self.participants[i], self.participants[j]) for i, j in zip(*iu)]
        self._shared_pending: list[tuple[float, str]] = []  # shared events not yet reached, time order
        # person-to-group ties (3+ people): evidence that one person is drifting away from everyone
        self._tie_ev = np.zeros(n) if n >= 3 else None
        self._pairs_of = [[p for p, pr in enumerate(self.pairs) if person in pr] for person in self.participants]
        self.tie_h_scale = 1.0 + self.cfg.group_h_factor * math.log(max(n, 1))
        self.shared_events: list[tuple[float, str]] = []     # shared events applied (session time, what)
        # more pairs watched, more chances of a false alarm per session: ask each pair for more evidence
        h_scale = 1.0 + self.cfg.group_h_factor * math.log(max(len(self.pairs), 1))
        if pair_bank is None:
            pair_bank = (len(self.pairs) >= PAIR_BANK_MIN_PAIRS and self.cfg.arming
                         and self.cfg.group_prior_weight <= 0 and _bank_available())
        self._bank = None
        if pair_bank:
            from .pair_bank import PairBank, PairView

            self._bank = PairBank(self.modalities, self.cfg, step_s, self.window_s, iu, n, h_scale,
                                  self.cfg.threshold * self.tie_h_scale if n >= 3 else None)
            self.machines: list[PairMachine] = [PairView(self._bank, p) for p in range(len(self.pairs))]
            if self._tie_ev is not None:
                self._tie_ev = self._bank.tie_ev
        else:
            self.machines = [PairMachine(self.modalities, self.cfg, step_s, self.window_s) for _ in self.pairs]
            for mach in self.machines:
                mach.h_scale = h_scale
        self.episodes: list[Episode] = []
        self._open: dict[int, Episode] = {}
        self._pending: dict[str, list] = {}
        self._last_closed: dict[int, Episode] = {}
        self._last_below: dict[int, float] = {}  # per pair: when its last repaired episode's drop fell below
        self._iu = iu
        # learned evidence (dsp.evidence): feature state of every pair, and the ensemble
        self.feature_log: list | None = [] if collect_features else None
        learned = self.cfg.evidence == "learned"
        self._features = PairFeatures(n, iu) if (learned or collect_features) else None
        self._model = (evidence_model or shipped_model()) if learned else None
        # the last few steps of each person's arousal log-likelihood ratio (see person_arousal)
        self._recent_arousal: deque = deque(maxlen=max(1, int(round(self.cfg.smooth_s / step_s))))
        self._version = 0  # bumped whenever the machines may have changed (pair_states' cache key)
        self._states_cache: tuple[int, Sequence[dict]] | None = None

    def note_signal_loss(self, participant: str, onset_s: float, known_s: float, offset_s: float | None = None) -> None:
        """Tell the detector that ``participant`` lost a signal (any modality) from ``onset_s``.

        Call once when the loss is known (``known_s``: the session time at which it was detected, e.g. onset
        plus the loss tracker's minimum duration) with ``offset_s=None``, and again with the same ``onset_s``
        and its ``offset_s`` when the signal is back. Windows ending from ``known_s`` until ``offset_s +
        window_s + loss_guard_s`` of every pair with this person give no evidence, and a possible rupture
        building up when the loss became known is dropped: a lost electrode or strap is never a rupture.
        Only windows ending at or after ``known_s`` are affected, so the result does not depend on chunking.
        """
        if participant not in self._losses:
            raise ValueError(f"Invalid value for 'participant': expected one of {', '.join(self.participants)}, "
                             f"but got {participant!r}.")
        for rec in self._losses[participant]:
            if abs(rec[0] - onset_s) < 1e-9:
                rec[2] = offset_s
                return
        self._losses[participant].append([float(onset_s), float(known_s), offset_s])

    def note_shared_event(self, t: float, what: str = "marker") -> None:
        """Tell the detector that something everybody shared happened at session time ``t`` (s).

        A marker (the experiment's or the facilitator's), a task or phase switch: people react to the same event
        by different amounts, which is not a rupture. Every pair is re-baselined when the detector reaches ``t``:
        evidence building up is dropped, an open possible rupture is closed as interrupted, and arming starts
        again from windows that end ``window_s`` after ``t`` (windows holding the event are left out). Events
        may come in any order and before their time (offline: all at once); the result does not depend on
        chunking as long as an event is noted before the detector reaches it.
        """
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"Invalid value for 't': expected a finite session time in seconds, but got {t!r}.")
        bisect.insort(self._shared_pending, (t, str(what)))

    def _apply_shared(self, t: float) -> list[Event]:
        events: list[Event] = []
        while self._shared_pending and self._shared_pending[0][0] <= t + 1e-9:
            te, what = self._shared_pending.pop(0)
            self.shared_events.append((te, what))
            for p, mach in enumerate(self.machines):
                for ev in mach.shared_event(te, te + self.window_s):
                    events.extend(self._episode_events(p, ev))
        return events

    def _ties(self, t: float) -> list[Event]:
        """Each person's tie to the group: the mean of the evidence their armed pairs added this step.

        One person drifting away from everyone lowers all their pairs at once; the mean of two or more pairs
        is steadier than one pair, so the tie flags sooner than each pair alone would. When it reaches the
        threshold (times ``1 + group_h_factor * ln(n_people)``), every armed pair of that person that is not
        already in a possible rupture is flagged, naming the person. (Why the learned evidence and not the pairs'
        analytic drops: docs/validation.md.)
        """
        events: list[Event] = []
        tie_ev = self._tie_ev
        if tie_ev is None:  # fewer than 3 people: no ties
            return events
        h = self.cfg.threshold * self.tie_h_scale
        watching = ("attuned", "drifting", "repaired")
        for i, person in enumerate(self.participants):
            mine = [self.machines[p] for p in self._pairs_of[i]]
            incs = [m.last_inc for m in mine if m.state in watching and math.isfinite(m.last_inc)]
            if len(incs) < 2:
                tie_ev[i] = 0.0
                continue
            tie_ev[i] = min(max(0.0, tie_ev[i] + sum(incs) / len(incs)), 2.0 * h)
            if tie_ev[i] >= h:
                tie_ev[i] = 0.0
                for p in self._pairs_of[i]:
                    mach = self.machines[p]
                    if mach.state in watching:
                        evs: list[PairEvent] = []
                        mach.flag(t, evs, who=[person])
                        for ev in evs:
                            events.extend(self._episode_events(p, ev))
        return events

    @property
    def person_ties(self) -> dict:
        """``person -> evidence / threshold`` of each person's tie to the group (3+ people; empty otherwise)."""
        if self._tie_ev is None:
            return {}
        h = self.cfg.threshold * self.tie_h_scale
        return {p: float(self._tie_ev[i] / h) for i, p in enumerate(self.participants)}

    def _blocked(self, p: int, t: float) -> bool:
        a, b = self.pairs[p]
        if not self._losses[a] and not self._losses[b]:
            return False
        guard = self.window_s + self.cfg.loss_guard_s
        for person in self.pairs[p]:
            for _onset, known, offset in self._losses[person]:
                if known <= t + 1e-9 and (offset is None or t < offset + guard):
                    return True
        return False

    def update(self, modality: str, t_end: np.ndarray, sync: np.ndarray, chance: np.ndarray,
               chance_sd: np.ndarray | None = None) -> list[Event]:
        """Feed new synchrony windows of one modality.

        Windows are queued per modality and processed in time order once every
        modality has delivered that time; each time step fuses the modalities
        that have a window at that time. So the episodes do not depend on how
        the windows were chunked or in which order the modalities were fed.

        Parameters
        ----------
        modality : str
        t_end : ndarray, shape (n_windows,)
            Session time of each window's end (s), increasing.
        sync : ndarray, shape (n_pairs, n_windows)
            Synchrony (Pearson r, NaN where missing).
        chance_sd : ndarray, shape (n_pairs, n_windows) | None
            Spread (SD) of the surrogate r per window; scales the evidence down
            where chance alone spreads wider than the presets were tuned at.
        chance : ndarray, shape (n_pairs, n_windows) or (n_pairs,)
            Chance level of r per pair.

        Returns
        -------
        events : list of Event
            State changes (:class:`~attune_monitor.dsp.events.StateChanged`, with ``pair``) and episode events
            (:class:`~attune_monitor.dsp.events.EpisodeEvent`: opened, reopened, repaired, closed), in time
            order.
        """
        if modality not in self.modalities:
            raise ValueError(
                f"Invalid value for 'modality': expected one of {', '.join(self.modalities)}, but got {modality!r}."
            )
        t_end = np.asarray(t_end, dtype=float)
        sync = np.asarray(sync, dtype=float).reshape(len(self.pairs), -1)
        chance = np.asarray(chance, dtype=float)
        if chance.ndim == 1:
            chance = np.repeat(chance[:, None], t_end.size, axis=1)
        q = self._pending.setdefault(modality, [])
        # plain Python floats: the per-window state machines work on scalars
        sd = np.full_like(sync, np.nan) if chance_sd is None else np.asarray(chance_sd, dtype=float).reshape(sync.shape)
        if self._bank is not None:  # (the bank takes each step's columns as arrays: of copies, as the lists are)
            sync, chance, sd = (np.array(x, dtype=float, order="F") for x in (sync, chance, sd))
            for k, t in enumerate(t_end.tolist()):
                q.append((t, sync[:, k], chance[:, k], sd[:, k]))
        else:
            for t, sv, cv, dv in zip(t_end.tolist(), sync.T.tolist(), chance.T.tolist(), sd.T.tolist()):
                q.append((t, sv, cv, dv))
        return self._drain(final=False)

    def update_arousal(self, t: np.ndarray, llr: np.ndarray, divergence: np.ndarray | None = None) -> list[Event]:
        """Feed person-level arousal divergence (requires ``arousal=True``).

        Parameters
        ----------
        t : ndarray, shape (n_sec,)
            Session time of each value (s), on the same steps as the synchrony windows.
        llr : ndarray, shape (n_people, n_sec)
            Log-likelihood ratio "in a rupture" vs "in tune" per person (NaN: unknown), see
            :class:`attune_monitor.dsp.divergence.ArousalDivergence`.
        divergence : ndarray, shape (n_people, len(dsp.divergence.FEATURES), n_sec) | None
            The divergence features behind it (the learned evidence uses them; None: unknown).

        Returns
        -------
        events : list of Event
            As :meth:`update`.
        """
        if not self.arousal:
            raise ValueError("This detector was made with arousal=False; pass arousal=True to feed arousal divergence.")
        t = np.asarray(t, dtype=float)
        llr = np.asarray(llr, dtype=float).reshape(len(self.participants), t.size)
        i, j = self._iu
        with np.errstate(invalid="ignore"):
            both = np.fmax(llr[i], llr[j])  # per pair: the larger of its two people's (NaN only if both are)
        q = self._pending.setdefault(AROUSAL_KEY, [])
        if divergence is None:
            divs = [None] * t.size
        else:
            per_person = np.asarray(divergence, dtype=float).reshape(len(self.participants), -1, t.size)
            divs = list(np.moveaxis(per_person, 2, 0))
        for tt, v, person, dv in zip(t.tolist(), list(both.T) if self._bank is not None else both.T.tolist(),
                                     llr.T.tolist(), divs):
            q.append((tt, v, person, dv))
        return self._drain(final=False)

    def _drain(self, final: bool) -> list[Event]:
        events: list[Event] = []
        keys = [*self.modalities, AROUSAL_KEY] if self.arousal else list(self.modalities)
        queues = [self._pending.get(m, []) for m in keys]
        if final:
            horizon = max((q[-1][0] for q in queues if q), default=-np.inf)
        else:
            if any(not q for q in queues):
                return events
            horizon = min(q[-1][0] for q in queues)
        heads = [0] * len(queues)
        lens = [len(q) for q in queues]
        nq = len(queues)
        # the time steps due, each with what every queue has for it
        steps = []
        while True:
            t = math.inf
            for i in range(nq):
                if heads[i] < lens[i]:
                    ti = queues[i][heads[i]][0]
                    if ti < t:
                        t = ti
            if t == math.inf or t > horizon + 1e-9:
                break
            now = {}
            ar = None
            for i in range(nq):
                if heads[i] < lens[i]:
                    item = queues[i][heads[i]]
                    if abs(item[0] - t) < 1e-6:
                        heads[i] += 1
                        if keys[i] == AROUSAL_KEY:
                            ar = item
                        else:
                            now[keys[i]] = item
            steps.append((t, now, ar))
        for i, m in enumerate(keys):
            self._pending[m] = queues[i][heads[i]:]
        if steps:
            self._version += 1
        llr = self._learned_llr(steps)
        if self._bank is not None:
            return self._drain_bank(steps, llr)
        n_pairs = len(self.pairs)
        nan_pairs = [math.nan] * n_pairs
        for s, (t, now, ar) in enumerate(steps):
            if self._shared_pending:
                events.extend(self._apply_shared(t))
            if ar is not None:
                self._recent_arousal.append(ar[2])
            # per pair: {modality: (sync, chance, chance_sd)}, built by zips (C loops) rather than per pair
            mods = list(now)
            cols = [zip(sv, cv, dv) for (_, sv, cv, dv) in now.values()]
            vals_of = [dict(zip(mods, row)) for row in zip(*cols)] if mods else [{} for _ in range(n_pairs)]
            arousal = ar[1] if ar is not None else nan_pairs
            llr_s = llr[s].tolist()
            any_loss = any(self._losses.values())
            for p, mach in enumerate(self.machines):
                evs = mach.step(t, vals_of[p], any_loss and self._blocked(p, t), arousal[p], llr_s[p])
                for ev in evs:
                    events.extend(self._episode_events(p, ev))
            if self._tie_ev is not None:
                events.extend(self._ties(t))
            self._group_prior()
            for p, ep in self._open.items():
                self._refresh(p, ep)
        return events

    def _drain_bank(self, steps: list, llr: np.ndarray) -> list[Event]:
        """``_drain``'s per-step loop with the pair bank: one compiled call per step, its records made events."""
        events: list[Event] = []
        bank = self._bank
        assert bank is not None
        n_pairs, n_mod = len(self.pairs), len(self.modalities)
        nan_pairs = np.full(n_pairs, np.nan)
        for s, (t, now, ar) in enumerate(steps):
            shared: list[float] = []
            while self._shared_pending and self._shared_pending[0][0] <= t + 1e-9:
                te, what = self._shared_pending.pop(0)
                self.shared_events.append((te, what))
                shared.append(te)
            if ar is not None:
                self._recent_arousal.append(ar[2])
            sync, chance, chance_sd = (np.full((n_pairs, n_mod), np.nan) for _ in range(3))
            for k, m in enumerate(self.modalities):
                if m in now:
                    _, sync[:, k], chance[:, k], chance_sd[:, k] = now[m]
            blocked = self._blocked_pairs(t) if any(self._losses.values()) else None
            recs, times = bank.step(t, sync, chance, chance_sd, blocked,
                                    np.ascontiguousarray(ar[1]) if ar is not None else nan_pairs,
                                    np.ascontiguousarray(llr[s]), shared)
            for rec, tm in zip(recs, times):
                events.extend(self._bank_event(rec, tm))
            self._group_prior()
            for p, ep in self._open.items():
                self._refresh(p, ep)
        return events

    def _bank_event(self, rec: list, tm: list) -> list[Event]:
        """The events of one record of the pair bank (``_pair_kernels.K_*``), as ``_episode_events`` makes them."""
        kind, p = rec[0], rec[1]
        if kind == 0:  # K_STATE
            return [StateChanged(t=tm[0], state=STATES[rec[2]], previous=STATES[rec[3]], pair=self.pairs[p])]
        ev: PairEvent
        if kind == 1:  # K_RUPTURE
            ev = PairRupture(t=tm[0], onset_s=tm[1], who=(self.participants[rec[2]],) if rec[2] >= 0 else None)
            return self._episode_events(p, ev, dropping=(rec[4], rec[5]))
        if kind == 2:  # K_REPAIRED
            ev = PairRepaired(t=tm[0], offset_s=tm[1], below_s=tm[2])
        elif kind == 3:  # K_LAPSED
            ev = PairLapsed(t=tm[0], offset_s=tm[1])
        elif kind == 4:  # K_INTERRUPTED
            ev = PairInterrupted(t=tm[0], offset_s=tm[1])
        else:  # pragma: no cover
            raise RuntimeError(f"pair bank: unknown record kind {kind}")
        return self._episode_events(p, ev)

    def _blocked_pairs(self, t: float) -> np.ndarray:
        """``_blocked(p, t)`` of every pair at once, shape (n_pairs,) bool: either person's signal loss."""
        guard = self.window_s + self.cfg.loss_guard_s
        lost = np.array([any(known <= t + 1e-9 and (offset is None or t < offset + guard)
                             for _onset, known, offset in self._losses[person]) for person in self.participants])
        i, j = self._iu
        return lost[i] | lost[j]

    def _learned_llr(self, steps: list) -> np.ndarray:
        """The learned log-likelihood ratio of every pair at each step (NaN when not used), shape (n_steps, n_pairs).

        Features of all due steps are computed at once (they depend only on inputs, never on the machines),
        so a long file costs one pass of the tree ensemble; the feature state carries over between calls.
        """
        out = np.full((len(steps), len(self.pairs)), np.nan)
        if self._features is None or not steps:
            return out
        n_p, n = len(self.pairs), len(self.participants)

        def fz(m: str, k: int) -> np.ndarray:
            a = np.full((len(steps), n_p), np.nan)
            for s, (_, now, _) in enumerate(steps):
                if m in now:
                    a[s] = now[m][k]
            return np.arctanh(np.clip(a, -0.999, 0.999))

        arousal = np.full((len(steps), n), np.nan)
        div = np.full((len(steps), n, len(DIVERGENCE_FEATURES)), np.nan)
        for s, (_, _, ar) in enumerate(steps):
            if ar is not None:
                arousal[s] = ar[2]
                if ar[3] is not None:
                    div[s] = ar[3]
        X = self._features.push(fz("hr", 1), fz("hr", 2), fz("eda", 1), fz("eda", 2), arousal, div)
        if self.feature_log is not None:
            self.feature_log.append((np.array([st[0] for st in steps]), X))
        if self._model is not None:
            out = self._model.llr(X)
        return out

    @property
    def person_arousal(self) -> np.ndarray:
        """Each person's arousal log-likelihood ratio over the last ``smooth_s`` steps (NaN: unknown), shape (n,)."""
        if not self._recent_arousal:
            return np.full(len(self.participants), np.nan)
        x = np.array(self._recent_arousal, dtype=float)
        ok = np.isfinite(x)
        n = ok.sum(axis=0)
        return np.where(n > 0, np.where(ok, x, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)

    def _group_prior(self) -> None:
        """Shrink each just-calibrated baseline towards the median first baseline of the other pairs (groups)."""
        w = self.cfg.group_prior_weight
        if w <= 0 or len(self.participants) < 3:
            return  # nothing to shrink towards (the just-calibrated flags are read only here)
        for m in self.modalities:
            tracks = [mach.tracks[m] for mach in self.machines]
            fresh = [tr for tr in tracks if tr.just_calibrated]
            if not fresh:
                continue
            for tr in fresh:
                tr.just_calibrated = False
                if len(self.participants) < 3 or w <= 0:
                    continue
                others = [o.first_baseline_z for o in tracks if o is not tr and math.isfinite(o.first_baseline_z)]
                if others:
                    tr.baseline_z = (1.0 - w) * tr.first_baseline_z + w * float(np.median(others))

    def _refresh(self, p: int, ep: Episode) -> None:
        draft = self.machines[p].episode
        if draft is not None:
            if draft.nadir_drop >= ep.depth:
                ep.depth, ep.nadir_s = draft.nadir_drop, draft.nadir_s
            for m in draft.modalities:
                if m not in ep.modalities:
                    ep.modalities.append(m)
            ep.confidence = _confidence(self._available(p), ep.modalities, ep.depth)

    def _episode_events(self, p: int, ev: PairEvent, dropping: tuple[int, int] | None = None) -> list[Event]:
        """What one event of pair ``p``'s machine means for the detector.

        A state change is passed on, naming the pair; a rupture, repair, lapse or interruption becomes an event of
        the pair's episode (none when there is no episode to open or close). ``dropping``: see :meth:`_who`.
        """
        pair = self.pairs[p]
        if isinstance(ev, StateChanged):
            return [replace(ev, pair=pair)]
        out: list[Event] = []
        if isinstance(ev, PairRupture):
            draft = self.machines[p].episode
            assert draft is not None  # the machine drafts the episode as it raises the rupture
            last = self._last_closed.get(p)
            opened: type[EpisodeEvent]
            if last is not None and ev.t - self._last_below[p] <= self.cfg.merge_gap_s + self.cfg.min_repaired_s:
                # the same rupture again after a brief recovery (or its relapse): reopen it
                ep = last
                ep.open, ep.repaired, ep.offset_s, ep.outcome = True, False, None, "open"
                self._open[p] = ep
                opened = EpisodeReopened
            else:
                ep = Episode(
                    id=len(self.episodes) + 1, pair=pair, people=list(ev.who) if ev.who else self._who(p, dropping),
                    onset_s=draft.onset_s,
                    flagged_s=ev.t, nadir_s=draft.nadir_s, offset_s=None, repaired=False,
                    depth=draft.nadir_drop, modalities=list(draft.modalities), confidence=0.0,
                )
                self._open[p] = ep
                self.episodes.append(ep)
                opened = EpisodeOpened
            self._refresh(p, ep)
            out.append(opened(t=ev.t, pair=pair, episode=ep))
        elif isinstance(ev, (PairLapsed, PairInterrupted)):
            closing = self._open.pop(p, None)
            if closing is not None:
                closing.offset_s, closing.repaired, closing.open = ev.offset_s, False, False
                closing.outcome = "unrepaired" if isinstance(ev, PairLapsed) else "interrupted"
                out.append(EpisodeClosed(t=ev.t, pair=pair, episode=closing))
        elif isinstance(ev, PairRepaired):
            closing = self._open.pop(p, None)
            if closing is not None:
                closing.offset_s, closing.repaired, closing.open = ev.offset_s, True, False
                closing.outcome = "repaired"
                self._last_below[p] = ev.below_s
                self._last_closed[p] = closing
                out.append(EpisodeRepaired(t=ev.t, pair=pair, episode=closing))
        return out

    def _available(self, p: int) -> int:
        return sum(1 for tr in self.machines[p].tracks.values() if not tr.calibrating)

    def _who(self, p: int, dropping: tuple[int, int] | None = None) -> list[str]:
        """Who is disconnecting: in a group, the member of the pair most of whose pairs are dropping.

        ``dropping``: how many pairs of each of the two are drifting, in a possible rupture or repairing, as the
        pair bank counted them when the rupture was raised (None: counted here, from the machines).
        """
        a, b = self.pairs[p]
        if len(self.participants) < 3:
            return [a, b]
        pa = self.person_arousal
        la, lb = (pa[self.participants.index(x)] for x in (a, b))
        if math.isfinite(la) and math.isfinite(lb) and abs(la - lb) >= 1.0:
            # one of them moved away from the group in their own arousal: that is who
            return [a] if la > lb else [b]
        score = {}
        for k, person in enumerate((a, b)):
            mine = [q for q, pr in enumerate(self.pairs) if person in pr]
            dropping_states = ("drifting", "possible_rupture", "repairing")
            n_dropping = (sum(1 for q in mine if self.machines[q].state in dropping_states)
                          if dropping is None else dropping[k])
            score[person] = n_dropping / len(mine)
        if abs(score[a] - score[b]) < 1e-9:
            return [a, b]
        return [max(score, key=lambda person: score[person])]

    def pair_states(self) -> list[dict]:
        """Per pair: the fused state, its words, the evidence and per-modality snapshots.

        The machines change only when time steps are processed, so the dicts are built once per change and
        shared by later calls (a view refreshing 20 times a second between two synchrony windows pays nothing);
        treat them as read-only. The list itself is new on every call.
        """
        if self._bank is not None:
            return list(self.pair_table())
        if self._states_cache is None or self._states_cache[0] != self._version:
            out = []
            isfinite = math.isfinite
            for pair, mach in zip(self.pairs, self.machines):
                state, since, sd = mach.state, mach.out_of_tune_since, mach.smooth_drop
                out.append({"pair": pair, "state": state, "words": pair_words(state, since),
                            "evidence": mach.evidence, "drop": sd if isfinite(sd) else None,
                            "armed": state not in UNARMED_STATES, "out_of_tune_since": since,
                            "modalities": {m: tr.snapshot(state) for m, tr in mach.tracks.items()}})
            self._states_cache = (self._version, out)
        return list(self._states_cache[1])

    def any_calibrating(self) -> bool:
        """True while some pair is still learning its baseline (state ``calibrating`` in :meth:`pair_states`).

        Read from the machines' states, or the pair bank's state column, without building the pair dicts.
        """
        if self._bank is not None:
            return self._bank.any_calibrating()
        return any(mach.state == _CALIBRATING for mach in self.machines)

    def pair_table(self) -> Sequence[dict]:
        """:meth:`pair_states` for a view model, with its dicts built only when someone reads them.

        With the pair bank (large groups): a :class:`attune_monitor.dsp.pair_bank.PairStateTable`, the bank's
        columns copied once per change (the live tick builds no dict; the first reader of a row builds them all,
        later readers share them). With the per-pair machines: the list of :meth:`pair_states`. Either way a
        sequence of the same dicts, in pair order, to be treated as read-only.
        """
        if self._bank is None:
            return self.pair_states()
        if self._states_cache is None or self._states_cache[0] != self._version:
            self._states_cache = (self._version, self._bank.table(self.pairs))
        return self._states_cache[1]

    def finish(self, t_end: float | None = None) -> list[Episode]:
        """Close the session: process what is queued; open episodes stay unrepaired.

        Returns
        -------
        episodes : list of Episode
        """
        self._drain(final=True)
        self._version += 1
        for ep in self._open.values():
            ep.open = False
            ep.outcome = "session_end"
        self._open.clear()
        return self.episodes


# the usable quality codes as plain ints: SignalLossTracker tests every stream's block each tick, and each Enum
# attribute costs a __getattr__ call through the metaclass (Python 3.11)
_Q_OK, _Q_CORRECTED = int(Quality.OK), int(Quality.CORRECTED)


class SignalLossTracker:
    """Streaming runs of unusable samples per participant and modality.

    Feed it each new block of grid quality codes; it reports periods of at
    least ``min_duration_s`` during which the signal was missing or
    unreliable, with the most common reason.
    """

    def __init__(self, fs: float, min_duration_s: float = 2.0):
        self.fs = float(fs)
        self.min_n = max(1, int(round(min_duration_s * fs)))
        self._runs: dict[tuple[str, str], dict] = {}
        self.periods: list[dict] = []

    def update_rows(self, participants, modality: str, start: int, quality: np.ndarray) -> list[SignalEvent]:
        """:meth:`update` of each row of ``quality`` (person ``participants[i]``), in row order.

        Only the rows with an unusable code or a run still open go through :meth:`update` (the same events in the
        same order); the rest, all usable with no run open, would report nothing and change nothing. One array
        test for every person instead of a call per person each tick.

        Parameters
        ----------
        participants : sequence of str, length n_people
        modality : str
        start : int
            Grid index of the first column.
        quality : ndarray, shape (n_people, n_new)
            Quality codes.

        Returns
        -------
        events : list of SignalEvent
        """
        q = np.asarray(quality)
        if q.shape[1] == 0:
            return []
        rows = set(np.flatnonzero(((q != _Q_OK) & (q != _Q_CORRECTED)).any(axis=1)).tolist())
        if self._runs:
            rows.update(i for i, p in enumerate(participants) if (p, modality) in self._runs)
        events: list[SignalEvent] = []
        for i in sorted(rows):
            events += self.update(participants[i], modality, start, q[i])
        return events

    def update(self, participant: str, modality: str, start: int, quality: np.ndarray) -> list[SignalEvent]:
        """Feed codes for grid indices ``start .. start + len(quality) - 1``.

        Returns
        -------
        events : list of SignalEvent
            :class:`~attune_monitor.dsp.events.SignalLost` when a run reaches the minimum duration,
            :class:`~attune_monitor.dsp.events.SignalBack` when it ends.
        """
        q = np.asarray(quality)
        key = (participant, modality)
        run = self._runs.get(key)
        events: list[SignalEvent] = []
        if q.size == 0:
            return events
        bad = (q != _Q_OK) & (q != _Q_CORRECTED)
        if run is None and not bad.any():
            return events  # (the usual live block: all good, no run open)
        # boundaries of bad runs within the block, vectorised
        edges = np.flatnonzero(np.diff(np.r_[0, bad.astype(np.int8), 0]))
        starts, stops = edges[::2], edges[1::2]
        for s, e in zip(starts, stops):
            codes = q[s:e]
            if run is not None and s == 0 and run["end"] == start:
                run["end"] = start + e
                run["codes"] = np.bincount(codes, minlength=len(Quality)) + run["codes"]
            else:
                if run is not None:
                    events += self._close(key, run)
                run = {"start": start + s, "end": start + e, "codes": np.bincount(codes, minlength=len(Quality)),
                       "reported": None}
            if run["reported"] is None and run["end"] - run["start"] >= self.min_n:
                rec = {"participant": participant, "modality": modality, "onset_s": run["start"] / self.fs,
                       "offset_s": None, "reason": self._reason(run["codes"])}
                run["reported"] = rec
                self.periods.append(rec)
                events.append(SignalLost(t=rec["onset_s"], **rec))
            if e < q.size:  # the run ended inside this block
                events += self._close(key, run)
                run = None
        if run is not None and run["end"] < start + q.size:
            events += self._close(key, run)
            run = None
        if run is None:
            self._runs.pop(key, None)
        else:
            self._runs[key] = run
        return events

    def _close(self, key, run) -> list[SignalEvent]:
        rec = run.get("reported")
        if rec is None:
            return []
        rec["offset_s"] = run["end"] / self.fs
        rec["reason"] = self._reason(run["codes"])
        return [SignalBack(t=rec["offset_s"], **rec)]

    @staticmethod
    def _reason(counts: np.ndarray) -> str:
        counts = np.asarray(counts).copy()
        counts[[Quality.OK, Quality.CORRECTED]] = 0
        # warm-up is the least informative reason: prefer any other
        if counts.sum() > counts[Quality.WARMUP]:
            counts[Quality.WARMUP] = 0
        return REASONS.get(Quality(int(np.argmax(counts))), "unknown")

    def currently_lost(self) -> list[tuple[str, str]]:
        """(participant, modality) whose signal is lost right now."""
        return [k for k, r in self._runs.items() if r.get("reported") is not None]


def arousal_trend(times: np.ndarray, level: np.ndarray, onset: float, end: float, threshold: float = 0.3) -> str:
    """Arousal context of one person during an episode.

    Parameters
    ----------
    times : ndarray, shape (n,)
        Session times (s).
    level : ndarray, shape (n,)
        The person's arousal level, standardised to their own session
        variability (e.g. z-scored HR; NaN allowed).
    onset, end : float
        The episode's span (s).
    threshold : float
        Change (in standard deviations) over the span that counts as a trend.

    Returns
    -------
    trend : {"rising", "falling", "steady"}
    """
    sel = (times >= onset) & (times <= end) & np.isfinite(level)
    if sel.sum() < 4:
        return "steady"
    t, y = times[sel], level[sel]
    slope = np.polyfit(t - t[0], y, 1)[0]
    change = slope * (t[-1] - t[0])
    if change > threshold:
        return "rising"
    if change < -threshold:
        return "falling"
    return "steady"


def episode_dict(ep: Episode) -> dict:
    """A plain dict of an :class:`Episode` (for events and the recorder)."""
    d = asdict(ep)
    d["pair"] = list(ep.pair)
    d["time_to_repair_s"] = ep.time_to_repair_s
    return d
