"""The ranges of the session settings, and the checks the config dataclasses run in ``__post_init__``.

One home for each constant the DSP and the command line share: :data:`WINDOW_RANGE_S` (the synchrony windows a
session accepts), :data:`DEFAULT_WINDOW_S` and :data:`DEFAULT_PRESET` (what :class:`PipelineConfig
<attune_monitor.dsp.pipeline.PipelineConfig>` uses when nothing is set) and :data:`PRESET_NAMES` (the keys of
:data:`attune_monitor.dsp.detector.PRESETS`). ``attune_monitor.ui.commands.options`` imports them from here, so
the ``--help`` and the pipeline cannot disagree.

This module imports neither numpy nor scipy: ``attune --help`` builds its parsers from these constants.

The checks (:func:`check_fields`) raise :class:`attune_monitor.errors.ConfigError` (a ``ValueError``) with one
message style, the CLI's: what was wrong, the range in words, and a value to use instead::

    Invalid value for 'window_s' of PipelineConfig: expected seconds between 6 and 120, but got -3; use e.g.
    window_s=30.
"""

from __future__ import annotations

import dataclasses
import math
from numbers import Real
from typing import NamedTuple

from attune_monitor.errors import ConfigError

__all__ = [
    "WINDOW_RANGE_S", "DEFAULT_WINDOW_S", "DEFAULT_PRESET", "PRESET_NAMES", "Limit", "check_fields", "check_flag",
    "check_names",
    "config_error",
]

#: The synchrony windows (s) a session accepts: ``PipelineConfig.window_s``, ``--window`` and the GUI's settings.
#: The lower end leaves samples to correlate at the lead-lag search's largest lag (5 s on the 4-Hz grid needs a
#: window over 5.75 s): 5 s was refused by the engine.
WINDOW_RANGE_S = (6.0, 120.0)
#: ``PipelineConfig``'s synchrony window (s) when none is given (what an unset ``--window`` becomes).
DEFAULT_WINDOW_S = 30.0
#: ``PipelineConfig``'s detector preset when none is given (what an unset ``--preset`` becomes).
DEFAULT_PRESET = "balanced"
#: The detector presets, in order (the keys of :data:`attune_monitor.dsp.detector.PRESETS`).
PRESET_NAMES = ("conservative", "balanced", "sensitive")


class Limit(NamedTuple):
    """The values one numeric field of a config accepts.

    Attributes
    ----------
    low, high : float | None
        Bounds (``None``: unbounded on that side).
    low_open, high_open : bool
        The bound itself is excluded (``low_open=True, low=0``: "greater than 0").
    what : str
        What the value is, in the words of the message ("seconds", "a fraction", "a number").
    inf : bool
        An infinite value within the bounds is accepted (``lapse_s=inf``: never; ``arousal_floor=-inf``: no floor).
    bound : str
        Where a bound comes from, when it is another field (``"window_s"``): said after the range.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    what: str = "a number"
    inf: bool = False
    bound: str = ""

    def accepts(self, value) -> bool:
        """Whether ``value`` is a real number (not a bool) within the limit."""
        if not isinstance(value, Real) or isinstance(value, bool) or math.isnan(value):
            return False
        x = float(value)  # numbers.Real declares no ordering; every real number converts
        if math.isinf(x) and not self.inf:
            return False
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))

    def words(self) -> str:
        """The range in words: "seconds between 6 and 120", "seconds greater than 0", "a number 1 or more"."""
        lo, hi = self.low, self.high
        if lo is not None and hi is not None and not self.low_open and not self.high_open:
            text = f"{self.what} between {lo:g} and {hi:g}"
        else:
            parts = []
            if lo is not None:
                parts.append(f"greater than {lo:g}" if self.low_open else f"{lo:g} or more")
            if hi is not None:
                parts.append(f"less than {hi:g}" if self.high_open else f"at most {hi:g}")
            text = " and ".join([f"{self.what} " + parts[0]] + parts[1:]) if parts else f"a finite {self.what}"
        if self.bound:
            text += f" ({self.bound})"
        if self.inf:
            text += " (or inf)" if self.low is not None else " (or -inf or inf)"
        return text


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def config_error(config, name: str, expected: str, value, example=None) -> ConfigError:
    """The :class:`ConfigError` for ``config.name``: what was expected, what was given, a value to use.

    Parameters
    ----------
    config : dataclass instance
        The config being checked (its class names the message).
    name : str
        The field.
    expected : str
        What the field accepts, in words.
    value
        The value given.
    example : optional
        A value to suggest; default: the field's default.
    """
    if example is None:
        example = next((f.default for f in dataclasses.fields(config) if f.name == name), None)
    fix = "" if example is None or example is dataclasses.MISSING else f"; use e.g. {name}={_shown(example)}"
    return ConfigError(f"Invalid value for '{name}' of {type(config).__name__}: expected {expected}, "
                       f"but got {_shown(value)}{fix}.")


def check_fields(config, limits: dict[str, Limit]) -> None:
    """Raise :class:`ConfigError` for the first field of ``config`` outside its :class:`Limit`.

    Parameters
    ----------
    config : dataclass instance
    limits : dict
        Field name -> :class:`Limit`.

    Raises
    ------
    ConfigError
        ``Invalid value for 'step_s' of EngineConfig: expected seconds greater than 0, but got -1; use e.g. step_s=1.``
    """
    for name, limit in limits.items():
        value = getattr(config, name)
        if not limit.accepts(value):
            raise config_error(config, name, limit.words(), value)


def check_flag(config, name: str) -> None:
    """Raise :class:`ConfigError` unless ``config.name`` is a bool."""
    value = getattr(config, name)
    if not isinstance(value, bool):
        raise config_error(config, name, "True or False", value)


def check_names(config, name: str, *, allowed=None, empty: bool = True) -> None:
    """Raise :class:`ConfigError` unless ``config.name`` is a tuple of unique strings (from ``allowed``, if given)."""
    value = getattr(config, name)
    ok = (isinstance(value, tuple) and all(isinstance(v, str) for v in value) and len(set(value)) == len(value)
          and (empty or value) and (allowed is None or set(value) <= set(allowed)))
    if not ok:
        words = "a tuple of unique names" if empty else "a non-empty tuple of unique names"
        if allowed is not None:
            words += f" from {tuple(allowed)!r}"
        raise config_error(config, name, words, value)
