"""What the ``attune`` commands share: session options, the checks of option values, and session plumbing.

No command module reaches into another's helpers: what two commands need lives here, once —

* the constants behind several options: the LSL scopes (:data:`SCOPES`, from
:mod:`attune_monitor.acquisition.lslconfig`), the
  signals a session can use (:data:`SIGNALS`, also the GUI's menu :data:`MODALITY_CHOICES`), the synchrony
  window's range (:data:`WINDOW_RANGE_S`, from :mod:`attune_monitor.dsp.limits`, also the GUI's settings and
  ``PipelineConfig``), the simulator's defaults;
* the session options ``--preset`` / ``--window`` / ``--signals`` of ``monitor``, ``demo`` and ``replay``
  (:func:`add_session_options`, :func:`session_settings`);
* one set of checks for option values (:func:`check_range`, :func:`check_positive`, :func:`check_at_least`,
  :func:`check_preset`), each raising :class:`attune_monitor.ui.errors.UsageError` with one message style: what was
  wrong, the
  range in the words the ``--help`` uses ("between 6 and 120", "a positive number", "1 or more"), and a value to
  use instead;
* what the live commands do alike: open the view, wait for a live source, build the runner, check a recording.

Nothing heavy is imported at module level: the parsers are built from this module for ``attune --help``, and the
LSL configuration must be chosen before anything imports pylsl.
"""

from __future__ import annotations

import math
import sys
import time

from attune_monitor.acquisition.lslconfig import SCOPES
from attune_monitor.dsp.limits import DEFAULT_PRESET, DEFAULT_WINDOW_S, PRESET_NAMES, WINDOW_RANGE_S

from ..errors import UsageError

__all__ = [
    "SCOPES", "SIGNALS", "MODALITY_CHOICES", "WINDOW_RANGE_S", "DEFAULT_WINDOW_S", "DEFAULT_PRESET", "PRESET_NAMES",
    "DEFAULT_SCENARIO", "DEFAULT_SEED", "MIN_RATE_HZ", "MAX_RATE_HZ", "MAX_SPAN_S",
    "check_range", "check_positive", "check_at_least", "check_preset",
    "add_session_options", "session_settings", "session_modalities", "describe_settings", "will_use_gui",
    "make_runner", "open_view", "roster_missing", "wait_for_source", "make_assign", "check_usable",
]

#: The signals a session can use: ``--signals`` choice -> (the GUI's words for it, the modalities it uses).
SIGNALS = {
    "both": ("heart + skin", ("hr", "eda")),
    "heart": ("heart only", ("hr",)),
    "skin": ("skin only", ("eda",)),
}
#: The GUI's "Signals used" menu (the same choices as ``--signals``): its words -> the modalities.
MODALITY_CHOICES = {words: modalities for words, modalities in SIGNALS.values()}
# The synchrony windows (s) a session accepts (``--window``, the GUI's settings, ``PipelineConfig`` itself), what
# an unset ``--window`` / ``--preset`` becomes (the defaults of PipelineConfig) and the detector presets (the
# ``--preset`` choices) have their one home in attune_monitor.dsp.limits, which imports no numpy: the parsers are
# built for ``attune --help``. Re-exported here for the commands and the GUI.
#: The simulator's defaults (``attune simulate`` and ``attune demo``). With seed 3 the balanced preset flags both
#: scripted ruptures of the default scenario (at 4:30 and 6:50 of session time; seed 0 leaves the first one
#: unflagged, so a first live try showed nothing); tests/test_simulate_cli.py checks it.
DEFAULT_SCENARIO = "couple-rupture-repair"
DEFAULT_SEED = 3
#: The lowest sampling rate (Hz) at which each waveform kind can be read (the beat detectors' and the EDA
#: filters' bands must fit under the Nyquist frequency), and the highest Attune takes from a file.
MIN_RATE_HZ = {"ecg": 12.0, "ppg": 2.0, "eda": 0.2}
MAX_RATE_HZ = 20000.0
#: The longest span of heart/EDA samples analysed at once (a session lasts hours, not days).
MAX_SPAN_S = 48 * 3600.0


# -- checks of option values ---------------------------------------------------------------------------------------
def _shown(value) -> str:
    """A value as the user typed it (``8``, not ``8.0``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _number_in(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_range(name: str, value, low: float, high: float, *, what: str = "a number") -> None:
    """Refuse a value outside ``[low, high]`` (or not a finite number).

    Parameters
    ----------
    name : str
        The option, e.g. ``"--window"``.
    value : int | float | None
        The value given; ``None`` (option not given) passes.
    low, high : float
        The inclusive bounds, as the ``--help`` states them ("between 6 and 120").
    what : str
        What the value is, e.g. ``"seconds"``, ``"a number of people"``.

    Raises
    ------
    UsageError
        ``Invalid value for '--window': expected seconds between 6 and 120, but got 200; use e.g. --window 120.``
    """
    if value is None or (_number_in(value) and low <= value <= high):
        return
    nearest = high if _number_in(value) and value > high else low
    raise UsageError(f"Invalid value for '{name}': expected {what} between {_shown(low)} and {_shown(high)}, "
                     f"but got {_shown(value)}; use e.g. {name} {_shown(nearest)}.")


def check_positive(name: str, value, *, what: str = "a positive number of seconds", example: float = 1) -> None:
    """Refuse a value that is not a positive finite number (``None``, option not given, passes).

    Parameters
    ----------
    name : str
        The option, e.g. ``"--wait"``.
    value : int | float | None
    what : str
        The expected value in words; says "positive" as the ``--help`` does.
    example : float
        A value to suggest instead.

    Raises
    ------
    UsageError
        ``Invalid value for '--wait': expected a positive number of seconds, but got 0; use e.g. --wait 15.``
    """
    if value is None or (_number_in(value) and value > 0):
        return
    raise UsageError(f"Invalid value for '{name}': expected {what}, but got {_shown(value)}; "
                     f"use e.g. {name} {_shown(example)}.")


def check_at_least(name: str, value, low: float, *, what: str = "a whole number") -> None:
    """Refuse a value below ``low`` (or not a finite number); ``None``, option not given, passes.

    Parameters
    ----------
    name : str
        The option, e.g. ``"--jobs"``.
    value : int | float | None
    low : float
        The smallest value accepted, as the ``--help`` states it ("1 or more").
    what : str
        What the value is, e.g. ``"seconds"``.

    Raises
    ------
    UsageError
        ``Invalid value for '--jobs': expected a whole number, 1 or more, but got 0; use e.g. --jobs 1.``
    """
    if value is None or (_number_in(value) and value >= low):
        return
    raise UsageError(f"Invalid value for '{name}': expected {what}, {_shown(low)} or more, but got {_shown(value)}; "
                     f"use e.g. {name} {_shown(low)}.")


def check_preset(preset: str, name: str = "--preset") -> None:
    """Refuse a detector preset that :data:`attune_monitor.dsp.detector.PRESETS` does not have.

    Raises
    ------
    UsageError
        ``Invalid value for '--preset': expected one of conservative, balanced, sensitive, but got 'wild'.``
    """
    from attune_monitor.dsp.detector import PRESETS

    if preset not in PRESETS:
        raise UsageError(f"Invalid value for '{name}': expected one of {', '.join(PRESETS)}, but got {preset!r}.")


# -- session options ---------------------------------------------------------------------------------------------
def add_session_options(p) -> None:
    """Add ``--preset``, ``--window``, ``--signals`` to a parser; in GUI mode they override the stored Settings.

    Parameters
    ----------
    p : argparse.ArgumentParser
    """
    low, high = WINDOW_RANGE_S
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="detector sensitivity: conservative, balanced, sensitive (default: the GUI's setting, "
                        f"else {DEFAULT_PRESET})")
    p.add_argument("--window", type=float, default=None, metavar="S",
                   help=f"synchrony window in seconds, between {low:g} and {high:g} (default: the GUI's setting, "
                        f"else {DEFAULT_WINDOW_S:g})")
    both, *single = SIGNALS
    p.add_argument("--signals", choices=tuple(SIGNALS), default=None,
                   help=f"signals used: {both} ({SIGNALS[both][0]}), {' or '.join(single)} (default: the GUI's "
                        f"setting, else {both})")


def session_modalities(modalities) -> tuple | None:
    """The ``modalities`` argument of a session: ``None`` for every signal, else the tuple.

    Parameters
    ----------
    modalities : sequence of str | None
        E.g. ``("hr",)``; ``("hr", "eda")`` (both) and ``None`` mean every signal the streams have.
    """
    if modalities is None or set(modalities) == set(SIGNALS["both"][1]):
        return None
    return tuple(modalities)


def session_settings(args, gui: bool):
    """Pipeline settings of a session: command-line flags, else (GUI mode) the stored Settings, else defaults.

    Parameters
    ----------
    args : argparse.Namespace
        With ``preset``, ``window``, ``signals`` (each ``None`` when not given).
    gui : bool
        Whether the session opens the GUI (then the stored Settings are the fallback).

    Returns
    -------
    config : dsp.pipeline.PipelineConfig
    modalities : tuple of str | None
        None: every signal the streams have.
    settings : ui.gui.settings.Settings | None
        GUI mode: the stored settings with the flags applied (handed to the window; not saved).

    Raises
    ------
    UsageError
        For a preset, window or signals value the session cannot use.
    """
    from attune_monitor.dsp.pipeline import PipelineConfig

    preset = getattr(args, "preset", None)
    window = getattr(args, "window", None)
    signals = getattr(args, "signals", None)
    if preset is not None:
        check_preset(preset)
    check_range("--window", window, *WINDOW_RANGE_S, what="seconds")
    if signals is not None and signals not in SIGNALS:
        raise UsageError(f"Invalid value for '--signals': expected one of {', '.join(SIGNALS)}, but got {signals!r}.")
    settings = None
    if gui:
        try:
            from ..gui.settings import Settings

            settings = Settings.load()
        except Exception:  # noqa: BLE001 - unreadable settings: defaults
            settings = None
    if settings is not None:
        if preset is not None:
            settings.preset = preset
        if window is not None:
            settings.window_s = float(window)
        if signals is not None:
            settings.modalities = SIGNALS[signals][0]
        return settings.pipeline_config(), session_modalities(MODALITY_CHOICES[settings.modalities]), settings
    given = {"preset": preset, "window_s": None if window is None else float(window)}
    config = PipelineConfig(**{k: v for k, v in given.items() if v is not None})  # unset: the pipeline's defaults
    return config, session_modalities(SIGNALS[signals][1]) if signals else None, None


def describe_settings(config, modalities) -> str:
    """One line for stderr: what the pipeline uses, e.g. ``signals heart only, window 30 s, sensitivity balanced``.

    Parameters
    ----------
    config : dsp.pipeline.PipelineConfig
    modalities : tuple of str | None
        As :func:`session_settings` returns them.
    """
    mods = tuple(modalities) if modalities is not None else SIGNALS["both"][1]
    words = next((w for w, m in MODALITY_CHOICES.items() if set(m) == set(mods)), "+".join(mods))
    return f"signals {words}, window {config.window_s:g} s, sensitivity {config.preset}"


def will_use_gui(args) -> bool:
    """True when the session will open the GUI (not ``--headless``, a display, Qt importable)."""
    from ..headless import has_display

    if getattr(args, "headless", False) or not has_display():
        return False
    try:
        import PySide6.QtWidgets  # noqa: F401
    except Exception:  # noqa: BLE001 - open_view says why and falls back
        return False
    return True


# -- the live commands' session ----------------------------------------------------------------------------------
def make_runner(source, config, modalities):
    """A :class:`~attune_monitor.ui.runner.Runner`, or a clear usage error when the signals leave fewer than 2 people.

    Parameters
    ----------
    source : live or recording source (``inputs``, ``origin``, ``poll``)
    config : dsp.pipeline.PipelineConfig
    modalities : tuple of str | None

    Raises
    ------
    UsageError
        What the runner says about an unusable set of inputs.
    """
    from ..runner import Runner

    try:
        return Runner(source, config, modalities=modalities)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def open_view(runner, args, title: str, settings=None) -> int:
    """Show the session: the GUI unless ``--headless`` or no display (then say so and use the terminal view).

    Parameters
    ----------
    runner : ui.runner.Runner
    args : argparse.Namespace
        With ``headless``, ``screenshot``, ``quit_after`` and optionally ``duration``.
    title : str
        The window title.
    settings : ui.gui.settings.Settings | None

    Returns
    -------
    code : int
        The exit code of the view.
    """
    from ..headless import has_display, run_headless

    if not args.headless:
        try:
            from ..gui.app import run_gui
        except ModuleNotFoundError as exc:  # the [gui] extra is not installed: the message says how to install it
            print(f"attune: {exc}; showing the terminal view.", file=sys.stderr)
        except Exception as exc:  # noqa: BLE001 - Qt broken: the terminal view still works
            print(f"attune: the GUI cannot start ({exc}); showing the terminal view instead.", file=sys.stderr)
        else:
            if has_display():
                quit_after = args.quit_after if args.quit_after is not None else getattr(args, "duration", None)
                return run_gui(runner, screenshot=args.screenshot, quit_after=quit_after, title=title,
                               settings=settings)
            from ..gui.display import display_usable

            print(f"attune: no usable display ({display_usable()[1]}); showing the terminal view instead "
                  "(use --headless to skip this check).", file=sys.stderr)
    duration = getattr(args, "duration", None)
    if duration is None and args.quit_after is not None:
        duration = args.quit_after
    return run_headless(runner, duration=duration, out=sys.stdout)


#: Seconds without a new stream after which the streams seen are taken as the session's (2+ people seen).
SETTLE_S = 1.0


def roster_missing(roster, receivers) -> list[str]:
    """The roster's stream rules that no received stream matches, in words (``"P2: name 'Polar H10 8553*'"``).

    Parameters
    ----------
    roster : acquisition.roster.Roster | None
    receivers : dict
        ``key -> receiver`` of a live session (each with a ``descriptor``).
    """
    if roster is None:
        return []
    from attune_monitor.acquisition.roster import MATCH_FIELDS

    seen = [r.descriptor for r in receivers.values()]
    out = []
    for person in roster.participants:
        for rule in person.streams:
            if not any(rule.matches(d) for d in seen):
                what = ", ".join(f"{f} {getattr(rule, f)!r}" for f in MATCH_FIELDS if getattr(rule, f) is not None)
                out.append(f"{person.id}: {what}")
    return out


def wait_for_source(session, wait_s: float, expected=None, settle_s: float = SETTLE_S, roster=None):
    """A :class:`~attune_monitor.acquisition.sources.LiveSource` once 2 people's streams are seen (within ``wait_s``).

    The source's slots are fixed when it is made, so it is made once the streams have settled: at least 2 people
    seen and no new stream for ``settle_s`` plus one of the session's rescans (a loaded machine resolves a
    device's streams seconds apart), or, when the streams to come are known (``expected``, or a ``roster``'s
    stream rules), once every one of them is received. At ``wait_s`` the streams seen so far are used (2 people at
    least); one that appears later is announced, not added (:func:`roster_missing` names a roster's).

    Parameters
    ----------
    session : acquisition.live.LiveSession
        Started.
    wait_s : float
        How long to wait (s).
    expected : collection of str, optional
        Source ids of every stream that will come (the demo's simulator knows them).
    settle_s : float
        Seconds without a new stream after which the streams are taken as complete (without ``expected`` or a
        ``roster``).
    roster : acquisition.roster.Roster, optional
        Who wears which stream: complete once each of its stream rules matches a received stream.

    Raises
    ------
    UsageError
        When no 2 people's streams appeared in time: what was found, and what to try.
    """
    from attune_monitor.acquisition.files import RecordingError
    from attune_monitor.acquisition.sources import LiveSource

    start = time.monotonic()
    deadline = start + wait_s
    expected = set(expected) if expected is not None else None
    settle_s = max(settle_s, float(getattr(session, "rescan_interval", 0.0)) + 0.5)
    last = None
    n_seen, changed_at = -1, start
    while True:
        now = time.monotonic()
        receivers = session.receivers
        if len(receivers) != n_seen:
            n_seen, changed_at = len(receivers), now
        if expected is not None:
            complete = expected <= {r.descriptor.source_id for r in receivers.values()}
        elif roster is not None and any(p.streams for p in roster.participants):
            complete = not roster_missing(roster, receivers)
        else:
            complete = now - changed_at >= settle_s
        if len(session.participants) >= 2 and (complete or now >= deadline):
            try:
                return LiveSource(session)
            except RecordingError as exc:
                last = exc
        if now >= deadline:
            why = str(last) if last else (
                f"found streams of {len(session.participants)} participant(s) "
                f"({', '.join(session.participants) or 'none'}); synchrony needs at least 2")
            raise UsageError(f"no session to monitor after {wait_s:g} s: {why}. Start the wearables or "
                             "`attune simulate`, check `attune streams`, or wait longer with --wait.")
        time.sleep(0.1)


# -- recordings (analyze, export, replay) --------------------------------------------------------------------------
def make_assign(recording, roster_path: str | None):
    """Apply a roster to a recording: drop ignored streams, apply kind/unit overrides, return ``assign``.

    Parameters
    ----------
    recording : acquisition.files.Recording
        Its ``streams`` are edited in place.
    roster_path : str | None

    Returns
    -------
    assign : callable | None
        ``assign(descriptor) -> participant id | None`` for :func:`attune_monitor.ui.runner.analyze_recording`.
    notes : list of str
    """
    if not roster_path:
        return None, []
    from attune_monitor.acquisition.roster import Roster
    from attune_monitor.acquisition.roster import assign as roster_assign

    roster = Roster.load(roster_path)
    notes = []
    kept = []
    for s in recording.streams:
        d = s.descriptor
        if roster.ignored(d):
            notes.append(f"stream {d.name!r} ignored by the roster")
            continue
        if roster.match(d) is not None:
            assigned = roster_assign([d], roster)
            if assigned.streams:  # the rule's kind/unit overrides applied
                s.descriptor = assigned.streams[0].descriptor
            notes += assigned.warnings
        kept.append(s)
    recording.streams = kept

    def assign(d):
        hit = roster.match(d)
        return hit[0].id if hit else None

    return assign, notes


def check_usable(recording, assign) -> None:
    """Raise RecordingError with a clear reason when the recording cannot give synchrony.

    Checks that there are heart or EDA streams, that their sampling rates fit their kinds
    (:data:`MIN_RATE_HZ`), that they span at most :data:`MAX_SPAN_S`, and that they belong to 2+ people.

    Parameters
    ----------
    recording : acquisition.files.Recording
    assign : callable | None
        As :func:`make_assign` returns it.

    Raises
    ------
    acquisition.files.RecordingError
    """
    from attune_monitor.acquisition.files import RecordingError
    from attune_monitor.acquisition.sources import choose_inputs

    physio = recording.physio_streams()
    if not physio:
        kinds = ", ".join(f"{s.descriptor.name!r} ({s.descriptor.type or 'no type'}, {len(s.timestamps)} samples)"
                          for s in recording.streams[:6]) or "none"
        raise RecordingError(
            f"{recording.path}: no heart (RR/HR/ECG/PPG) or EDA streams with samples (streams: {kinds}); "
            "if one of them is, name its kind in a roster (--roster).")
    chosen, _ = choose_inputs(physio, assign)
    for spec, _stream in chosen:
        low = MIN_RATE_HZ.get(spec.kind)
        rate = float(spec.srate or 0.0)
        if low is not None and not (math.isfinite(rate) and low <= rate <= MAX_RATE_HZ):
            got = "no regular rate (irregular samples)" if rate == 0 else f"a sampling rate of {rate:g} Hz"
            raise RecordingError(
                f"{recording.path}: stream {spec.name!r} ({spec.kind.upper()}) has {got} (declared, or from its "
                f"timestamps), but {spec.kind.upper()} needs between {low:g} and {MAX_RATE_HZ:g} Hz; if it is "
                "another kind of signal, name its kind in a roster (--roster), or [[ignore]] it there.")
    starts = [float(stream.timestamps[0]) for _, stream in chosen]
    ends = [float(stream.timestamps[-1]) for _, stream in chosen]
    if starts and max(ends) - min(starts) > MAX_SPAN_S:
        span = max(ends) - min(starts)
        raise RecordingError(
            f"{recording.path}: its heart/EDA samples span {span / 86400:.3g} days, longer than Attune analyses at "
            f"once ({MAX_SPAN_S / 3600:g} h); a timestamp is probably wrong (a clock reset or a device sending "
            "another clock), or split the recording into sessions.")
    people = sorted({spec.participant for spec, _ in chosen})
    if len(people) < 2:
        names = ", ".join(repr(spec.name) for spec, _ in chosen)
        raise RecordingError(
            f"{recording.path}: synchrony needs at least 2 participants, but all heart/EDA streams ({names}) "
            f"belong to {people[0]!r}; analyse a recording of two or more people, or assign the streams to "
            "people with --roster.")
