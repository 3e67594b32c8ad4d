"""Attune DSP core: pure numpy/scipy preprocessing, synchrony and rupture/repair detection.

Imports neither Qt nor pylsl, and none of its modules imports
:mod:`attune_monitor.acquisition`. Windows and steps are given in seconds;
array shapes are stated in docstrings; streaming state is explicit so that
feeding data in chunks gives the same numbers as processing it all at once.

The public API is importable from here; each name is loaded on first use
(PEP 562), so ``import attune_monitor.dsp`` stays cheap (no scipy)::

    from attune_monitor import dsp

    m = dsp.rolling_pearson(x, fs=4.0, window_s=30.0)   # x: (n_people, n_samples)
    m.values                                            # (n_pairs, n_windows)

Batch synchrony (:mod:`~attune_monitor.dsp.synchrony`)
    :func:`rolling_pearson`, :func:`windowed_xcorr`, :func:`sc_concordance`,
    :func:`directional_agreement`, :func:`single_session_index`,
    :func:`group_synchrony`, :func:`connectedness`, :func:`fisher_mean`,
    :func:`pair_index`; results :class:`WindowedMetric`, :class:`XcorrResult`.
Chance level (surrogates)
    :func:`shifted_surrogate`, :func:`surrogate_shifts`, :func:`surrogate_stats`.
Streaming
    :class:`SynchronyEngine` with :class:`EngineConfig`; the whole session
    pipeline :class:`SessionPipeline` with :class:`PipelineConfig` and its
    input :class:`Slot`.
Detection (:mod:`~attune_monitor.dsp.detector`)
    :func:`get_preset`, :data:`PRESETS`, :class:`DetectorConfig`,
    :class:`RuptureDetector`, :class:`Episode`, :class:`PairState`,
    :data:`STATES`; arousal readings :func:`away_at`, :func:`away_before_flag`.
Events (:mod:`~attune_monitor.dsp.events`: what :class:`SessionPipeline` and :class:`RuptureDetector` report)
    :class:`Event`; per pair :class:`StateChanged` and (inside the detector) :class:`PairRupture`,
    :class:`PairRepaired`, :class:`PairLapsed`, :class:`PairInterrupted`; per episode :class:`EpisodeOpened`,
    :class:`EpisodeReopened`, :class:`EpisodeRepaired`, :class:`EpisodeClosed`; per signal :class:`SignalLost`,
    :class:`SignalBack`; :class:`SharedEvent`; bases :class:`PairEvent`, :class:`EpisodeEvent`,
    :class:`SignalEvent`; wire names :data:`EVENT_TYPES`.
A whole recording
    :func:`analyze_recording` (forwarded from :mod:`attune_monitor.analysis`,
    which reads files through the acquisition layer; it is loaded only when
    asked for, so the dsp modules themselves never import acquisition).
"""

if __name__ != "attune_monitor.dsp":  # pragma: no cover - only a wrong import gets here
    raise ImportError(
        f"import this package as 'attune_monitor.dsp', not '{__name__}' (a second copy under another name would "
        "break the guarantee that LSL's loopback configuration is in force before pylsl loads); install Attune with "
        "'make install' or 'pip install -e .' and write 'from attune_monitor import dsp'")

import importlib

#: public name -> module (relative to this package, or absolute) that defines it
_HOME = {
    **dict.fromkeys(
        ("rolling_pearson", "windowed_xcorr", "sc_concordance", "directional_agreement",
         "single_session_index", "group_synchrony", "connectedness", "fisher_mean", "pair_index", "WindowedMetric",
         "XcorrResult", "shifted_surrogate", "surrogate_shifts", "surrogate_stats"), ".synchrony"),
    **dict.fromkeys(("SynchronyEngine", "EngineConfig"), ".engine"),
    **dict.fromkeys(("SessionPipeline", "PipelineConfig", "Slot", "Update"), ".pipeline"),
    **dict.fromkeys(("get_preset", "PRESETS", "DetectorConfig", "RuptureDetector", "Episode", "PairState", "STATES"),
                    ".detector"),
    **dict.fromkeys(("away_at", "away_before_flag"), ".arousal"),
    **dict.fromkeys(("Event", "PairEvent", "StateChanged", "PairRupture", "PairRepaired", "PairLapsed",
                     "PairInterrupted", "EpisodeEvent", "EpisodeOpened", "EpisodeReopened", "EpisodeRepaired",
                     "EpisodeClosed", "SignalEvent", "SignalLost", "SignalBack", "SharedEvent", "EVENT_TYPES"),
                    ".events"),
    "analyze_recording": "attune_monitor.analysis",
}

__all__ = list(_HOME)


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
