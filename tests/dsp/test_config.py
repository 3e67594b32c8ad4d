"""The config dataclasses check every field when they are made (``__post_init__``).

Every bad value of every field is refused with a :class:`attune_monitor.errors.ConfigError` (a ``ValueError``
and an ``AttuneError``) whose message names the field, the value, the range and a value to use; the defaults
and the shipped presets are accepted; the ranges the CLI checks are the ones the configs check.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from attune_monitor.dsp.detector import ANALYTIC_PRESETS, LEARNED_PRESETS, PRESETS, DetectorConfig, get_preset
from attune_monitor.dsp.divergence import DivergenceConfig
from attune_monitor.dsp.engine import EngineConfig
from attune_monitor.dsp.limits import DEFAULT_PRESET, DEFAULT_WINDOW_S, PRESET_NAMES, WINDOW_RANGE_S
from attune_monitor.dsp.pipeline import PipelineConfig
from attune_monitor.errors import AttuneError, ConfigError

NAN, INF = float("nan"), float("inf")
NOT_NUMBERS = ["30", None, True, NAN]

#: field -> bad values (besides NOT_NUMBERS for every numeric field)
PIPELINE_BAD = {
    "fs": [0, -4.0, INF],
    "window_s": [-3, 0, WINDOW_RANGE_S[0] - 0.5, WINDOW_RANGE_S[1] + 1, INF],
    "step_s": [0, -1.0, 31.0],             # > window_s (30)
    "max_lag_s": [-1.0, 29.5, 45.0, INF],  # 3 grid samples per lagged segment of the window (30 s)
    "history_s": [0, 29.0, -600.0],        # at least window_s
    "wcc_step_s": [0, -5.0],
}
ENGINE_BAD = {
    **{name: [0, -1.0, INF] for name in ("window_s", "step_s", "wcc_window_s", "wcc_step_s", "slope_s",
                                          "concordance_window_s", "concordance_step_s", "phasic_chance_every_s")},
    "max_lag_s": [-0.5, INF],
    "phasic_max_lag_s": [-3.0, INF],
    "min_valid": [0, 1.5, -0.2],
}
DETECTOR_POSITIVE = ("calibration_s", "baseline_halflife_s", "smooth_s", "chance_halflife_s", "arousal_h",
                     "arm_span_s", "cusum_h", "drop_clip", "z_sd", "ref_chance_sd", "learned_h", "learned_clip")
DETECTOR_AT_LEAST_0 = ("baseline_cap_up", "baseline_cap_down", "group_h_factor", "min_margin", "cusum_k",
                       "min_repaired_s", "loss_guard_s", "merge_gap_s", "onset_delay_s", "repair_delay_s",
                       "arm_sigma", "arm_min_excess")
DETECTOR_ANY_FINITE = ("arousal_k", "learned_k", "learned_sync_gate", "arousal_in_tune", "arousal_rupture")
DETECTOR_BAD = {
    **{name: [0, -1.0, INF] for name in DETECTOR_POSITIVE if not name.endswith("_clip")},
    **{name: [-0.1, INF] for name in DETECTOR_AT_LEAST_0},
    **{name: [INF, -INF] for name in DETECTOR_ANY_FINITE},
    "calibration_trim": [-0.1, 0.5, 0.9],
    "group_prior_weight": [-0.1, 1.5],
    "learn_evidence": [-0.1, 1.1],
    "single_h_factor": [0.5, 0, -1.0],
    "repair_frac": [0, -0.6],
    "repaired_frac": [0, -0.4],
    "relapse_frac": [0, -0.9],
    "drift_h": [-1.0],
    "onset_frac": [-0.1, 1.0],
    "lapse_s": [0, -240.0, -INF],
    "arousal_clip": [],   # any number, +-inf: no clip (NaN, strings ... refused)
    "arousal_floor": [],  # -inf: no floor
    "drop_clip": [0, -1.0, -INF],
    "learned_clip": [0, -1.0, -INF],
}
DIVERGENCE_BAD = {
    **{name: [0, -1.0, INF] for name in ("level_s", "activity_s", "baseline_s", "scale_s", "refresh_s",
                                          "scale_refresh_s")},
    "baseline_gap_s": [-1.0, 240.0],
    "baseline_min_s": [-1.0, 241.0],
    "scale_gap_s": [-1.0, 300.0],
    "scale_min_s": [-1.0, 301.0],
    "scale_prior_s": [-1.0, INF],
    "min_fraction": [0, 1.5],
    "exclude_llr": [],  # any ratio, inf: exclude nothing
}
CASES = [(cls, name, value) for cls, table in ((PipelineConfig, PIPELINE_BAD), (EngineConfig, ENGINE_BAD),
                                               (DetectorConfig, DETECTOR_BAD), (DivergenceConfig, DIVERGENCE_BAD))
         for name, values in table.items() for value in [*values, *NOT_NUMBERS]]


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


@pytest.mark.parametrize(("cls", "name", "value"), CASES,
                         ids=[f"{c.__name__}.{n}={v!r}" for c, n, v in CASES])
def test_every_bad_value_is_refused_naming_the_field_the_value_and_a_fix(cls, name, value):
    with pytest.raises(ConfigError) as info:
        cls(**{name: value})
    msg = str(info.value)
    assert msg.startswith(f"Invalid value for '{name}' of {cls.__name__}: expected ")
    assert f"but got {_shown(value)}" in msg
    assert "\n" not in msg
    fix = re.fullmatch(rf".*; use e\.g\. {name}=(.+)\.", msg)
    assert fix, msg
    # the suggested fix is itself accepted (the field's default, or the longest lag the window leaves room for)
    cls(**{name: ast.literal_eval(fix.group(1))})


@pytest.mark.parametrize("cls", [PipelineConfig, EngineConfig, DetectorConfig, DivergenceConfig])
def test_every_numeric_field_of_every_config_has_bad_values_checked_here(cls):
    """No numeric field escapes the table above (a new field needs its range and its test)."""
    table = {PipelineConfig: PIPELINE_BAD, EngineConfig: ENGINE_BAD, DetectorConfig: DETECTOR_BAD,
             DivergenceConfig: DIVERGENCE_BAD}[cls]
    numeric = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, float)}
    assert numeric == set(table)


def test_the_error_is_a_value_error_and_an_attune_error():
    with pytest.raises(ValueError):
        PipelineConfig(window_s=-3)
    with pytest.raises(AttuneError):
        PipelineConfig(window_s=-3)


def test_the_message_reads_as_the_cli_does():
    with pytest.raises(ConfigError) as info:
        PipelineConfig(window_s=-3)
    assert str(info.value) == ("Invalid value for 'window_s' of PipelineConfig: expected seconds between 6 and 120, "
                               "but got -3; use e.g. window_s=30.")
    with pytest.raises(ConfigError, match=r"'lapse_s' of DetectorConfig: expected seconds greater than 0 \(or inf\)"):
        DetectorConfig(lapse_s=-1.0)


@pytest.mark.parametrize(("cls", "name", "value", "words"), [
    (PipelineConfig, "preset", "loud", "one of conservative, balanced, sensitive (or a DetectorConfig)"),
    (PipelineConfig, "preset", None, "one of conservative, balanced, sensitive"),
    (PipelineConfig, "arousal", "yes", "True or False"),
    (PipelineConfig, "arousal", 1, "True or False"),
    (DetectorConfig, "arming", 0, "True or False"),
    (DetectorConfig, "arousal_evidence", "no", "True or False"),
    (DetectorConfig, "evidence", "bayesian", "one of analytic, learned"),
    (DetectorConfig, "weights", (("hr", -1.0),), "a tuple of (modality, weight 0 or more) pairs"),
    (DetectorConfig, "weights", [("hr", 1.0)], "a tuple of (modality, weight 0 or more) pairs"),
    (DetectorConfig, "weights", (("hr", NAN),), "a tuple of (modality, weight 0 or more) pairs"),
    (EngineConfig, "wcc_detrend", None, "True or False"),
    (EngineConfig, "modalities", (), "a non-empty tuple of unique names"),
    (EngineConfig, "modalities", ("hr", "hr"), "a non-empty tuple of unique names"),
    (EngineConfig, "modalities", ["hr"], "a non-empty tuple of unique names"),
    (EngineConfig, "concordance_modalities", ("eda", 3), "a tuple of unique names"),
    (EngineConfig, "phasic_modalities", ("ecg",), "a tuple of unique names from ('hr', 'eda')"),
    (EngineConfig, "chance_of", ("spearman",), "a tuple of unique names from ('synchrony', 'pearson')"),
    (EngineConfig, "chance_modalities", ("eda", "ppg"), "a tuple of unique names from ('hr', 'eda')"),
    (EngineConfig, "surrogate_shifts_s", (), "a non-empty tuple of seconds greater than 0"),
    (EngineConfig, "surrogate_shifts_s", (20.0, -20.0), "a non-empty tuple of seconds greater than 0"),
    (EngineConfig, "surrogate_shifts_s", (20.0, NAN), "a non-empty tuple of seconds greater than 0"),
    (DivergenceConfig, "exclude_llr", NAN, "a finite log-likelihood ratio (or -inf or inf)"),
])
def test_non_numeric_fields_are_checked(cls, name, value, words):
    with pytest.raises(ConfigError, match=re.escape(f"Invalid value for '{name}' of {cls.__name__}: expected {words}")):
        cls(**{name: value})


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"repaired_frac": 0.7}, "repaired_frac", "a fraction less than repair_frac (0.6)"),
    ({"relapse_frac": 0.5}, "relapse_frac", "a fraction greater than repair_frac (0.6)"),
    ({"drift_h": 10.0}, "drift_h", "evidence 0 or more and less than cusum_h (10)"),
    ({"arousal_floor": 9.0}, "arousal_floor", "a ratio at most arousal_clip (8)"),
    ({"arousal_rupture": -3.0}, "arousal_rupture", "a ratio greater than arousal_in_tune (-2)"),
])
def test_the_detector_orderings_name_the_field_that_breaks_them(change, field, words):
    with pytest.raises(ConfigError, match=re.escape(f"'{field}' of DetectorConfig: expected {words}, but got")):
        DetectorConfig(**change)


def test_a_replace_is_checked_too():
    with pytest.raises(ConfigError, match="'learned_h' of DetectorConfig"):
        dataclasses.replace(get_preset("balanced"), learned_h=0.0)


def test_defaults_presets_and_edges_are_accepted():
    for cls in (PipelineConfig, EngineConfig, DetectorConfig, DivergenceConfig):
        cls()
    for table in (ANALYTIC_PRESETS, LEARNED_PRESETS, PRESETS):
        for name, cfg in table.items():
            assert cfg.validate() is cfg
            assert PipelineConfig(preset=name).preset == name
            assert PipelineConfig(preset=cfg).preset is cfg
    lo, hi = WINDOW_RANGE_S
    PipelineConfig(window_s=lo, step_s=lo, max_lag_s=4.25, history_s=lo)
    PipelineConfig(window_s=hi, history_s=hi)
    PipelineConfig(window_s=int(lo) + 1, fs=1, max_lag_s=3, arousal=False)  # ints are numbers
    DetectorConfig(arousal_floor=-INF, arousal_clip=INF, drop_clip=INF, learned_clip=INF)
    DetectorConfig(lapse_s=INF, arm_correct=False, arming=False, arousal_evidence=True, evidence="learned",
                   weights=(("hr", 0.0),))
    EngineConfig(chance_of=(), chance_modalities=None, phasic_modalities=("eda",), max_lag_s=0)
    DivergenceConfig(exclude_llr=INF)
    assert math.isinf(DivergenceConfig(exclude_llr=INF).exclude_llr)


def test_one_home_for_the_cli_constants():
    """The CLI's window range, defaults and preset names are dsp's (the same objects), and they are PipelineConfig's."""
    from attune_monitor.ui.commands import options

    assert options.WINDOW_RANGE_S is WINDOW_RANGE_S
    assert options.DEFAULT_WINDOW_S is DEFAULT_WINDOW_S and options.DEFAULT_PRESET is DEFAULT_PRESET
    assert options.PRESET_NAMES is PRESET_NAMES
    assert PipelineConfig().window_s == DEFAULT_WINDOW_S and PipelineConfig().preset == DEFAULT_PRESET
    assert tuple(PRESETS) == tuple(ANALYTIC_PRESETS) == PRESET_NAMES


def test_limits_import_no_numpy():
    """attune --help builds its parsers from attune_monitor.dsp.limits: it must stay numpy-free."""
    code = ("import sys, attune_monitor.dsp.limits; "
            "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("window_s", "max_lag_s"), [(6.0, 5.0), (6.0, 5.25), (6.0, 5.5), (8.0, 7.25), (8.0, 7.5),
                                                    (30.0, 5.0)])
def test_the_lag_search_must_fit_the_window_as_the_engine_requires(window_s, max_lag_s):
    """PipelineConfig refuses a lag the engine would refuse (3 samples per lagged segment), and only such a lag."""
    from attune_monitor.dsp.engine import SynchronyEngine
    from attune_monitor.dsp.pipeline import engine_config

    raw = EngineConfig(window_s=window_s, wcc_window_s=window_s, max_lag_s=max_lag_s, modalities=("hr",))
    try:
        SynchronyEngine(2, 4.0, raw)
        engine_ok = True
    except ValueError as exc:
        assert "max_lag_s" in str(exc)
        engine_ok = False
    if engine_ok:
        SynchronyEngine(2, 4.0, engine_config(PipelineConfig(window_s=window_s, max_lag_s=max_lag_s), ("hr",)))
    else:
        with pytest.raises(ConfigError, match=r"'max_lag_s' of PipelineConfig: expected seconds that leave 3 grid "
                                              rf"samples per lagged segment of the {window_s:g} s window at 4 Hz"):
            PipelineConfig(window_s=window_s, max_lag_s=max_lag_s)
        fixed = PipelineConfig(window_s=window_s, max_lag_s=(round(window_s * 4) - 3) / 4)  # the suggested fix
        SynchronyEngine(2, 4.0, engine_config(fixed, ("hr",)))
    assert engine_ok == (max_lag_s <= window_s - 0.75)


def test_every_window_in_the_range_analyses_a_recording_with_the_default_lag():
    """The shortest and longest windows --window and the GUI accept run end to end (5 s, the old lower end, was
    refused by the engine: its default 5-s lag search left no samples to correlate)."""
    from attune_monitor.acquisition import read_recording
    from attune_monitor.analysis import analyze_recording

    rec = read_recording(Path(__file__).resolve().parents[2] / "recordings" / "sample-couple.xdf")
    for window_s in WINDOW_RANGE_S:
        res = analyze_recording(rec, PipelineConfig(window_s=window_s))
        assert res.window_s == window_s
        assert any(np.isfinite(s["sync"]).any() for s in res.sync.values())
    with pytest.raises(ConfigError, match="'window_s' of PipelineConfig: expected seconds between 6 and 120"):
        PipelineConfig(window_s=5.0)
