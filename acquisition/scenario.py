"""Simulator scenarios: who is recorded with what, how coupled they are, what happens when.

A scenario is a TOML file. Built-in ones live in ``acquisition/scenarios/``
(``attune simulate --scenario couple-rupture-repair``); a user can pass a path.

Schema (every time in seconds from the first sample)::

    name = "couple-rupture-repair"
    description = "one line for --help and the truth file"
    duration_s = 300
    coupling = 0.7                 # 0..1, or a schedule [[t_s, c], ...] (piecewise linear)
    repair_s = 6                   # default seconds for coupling to come back after a rupture
    shared_events_per_min = 3      # conversational moments both react to (0: slow shared drive only)
    shared_salience = 1.0          # scale of the shared moments' salience (optional)
    own_events_per_min = 1.0       # each person's own, unshared moments at rest (optional)
    drive_band_hz = [0.005, 0.1]   # band of the slow shared and own drives (optional)

    [[participants]]
    id = "P1"                      # pseudonym
    heart = "rr"                   # rr (Polar H10 RR) | hr (1 Hz wrist HR) | both | none
    eda = "e4"                     # e4 (4 Hz) | emotibit (15 Hz) | shimmer (32 Hz) | none
    ecg = false                    # raw ECG, 130 Hz, microvolts (Polar H10)
    ppg = false                    # PPG/BVP, 64 Hz (E4)
    hr_bpm = 70                    # resting heart rate
    eda_us = 4.0                   # tonic skin conductance level
    resp_hz = 0.25                 # mean breathing rate (optional)
    noise = 1.0                    # scale of sensor and beat-to-beat noise (optional)

    [[ruptures]]
    onset_s = 60
    duration_s = 50
    who = "P2"
    style = "aversive"             # aversive | withdrawn (the family when 'family' is absent)
    repair_s = 6                   # optional
    # family = "partial"           # optional, one of RUPTURE_FAMILIES (acquisition.physiology says what
    #                              # each changes); then optionally depth = 0.7 (fraction of the coupling
    #                              # lost), ramp_s = 60 (drift), arousal = "up" | "down" | "none";
    #                              # what is not given is drawn from the seed

    [[confounds]]                  # not ruptures: a monitor must not flag them
    kind = "shared_stressor"       # shared_stressor | electrode_loss | strap_dropout | ectopic | motion
    participants = ["P1", "P2"]    # default: everybody
    onset_s = 150
    duration_s = 30
    # electrode_loss: mode = "zero" | "gap";  ectopic: count = 5;  shared_stressor: hr_bpm = 15, eda_us = 1.5
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from attune_monitor.errors import AttuneError

__all__ = [
    "HEART_DEVICES", "EDA_DEVICES", "RUPTURE_STYLES", "RUPTURE_FAMILIES", "AROUSAL_SHIFTS", "CONFOUND_KINDS",
    "ScenarioError", "Participant", "Rupture", "Confound", "Scenario", "builtin_names", "load_scenario",
    "parse_scenario"
]

HEART_DEVICES = ("rr", "hr", "both", "none")
EDA_DEVICES = ("e4", "emotibit", "shimmer", "none")
RUPTURE_STYLES = ("aversive", "withdrawn")
#: Rupture models (``family`` of a rupture); the first two styles are families of their own, and the default.
RUPTURE_FAMILIES = ("coupling_loss", "aversive", "withdrawn", "partial", "drift", "sudden", "leave_group")
#: Direction of the arousal shift of a rupture of the newer families.
AROUSAL_SHIFTS = ("up", "down", "none")
CONFOUND_KINDS = ("shared_stressor", "electrode_loss", "strap_dropout", "ectopic", "motion")


class ScenarioError(ValueError, AttuneError):
    """A scenario file is unusable; the message says where and how to fix it."""


@dataclass(frozen=True)
class Participant:
    """One simulated person and the devices they wear."""

    id: str
    heart: str = "rr"
    eda: str = "e4"
    ecg: bool = False
    ppg: bool = False
    hr_bpm: float = 70.0
    eda_us: float = 4.0
    resp_hz: float = 0.25
    #: scale of the sensor noise (EDA, ECG, PPG) and of the beat-to-beat heart-rate variability
    noise: float = 1.0


@dataclass(frozen=True)
class Rupture:
    """A scripted rupture: ``who`` decouples from everybody else for ``duration_s``.

    ``family`` None is the style's own family (``aversive`` or ``withdrawn``); ``depth``, ``ramp_s`` and
    ``arousal`` None are drawn from the seed where the family uses them (see ``acquisition.physiology``).
    """

    onset_s: float
    duration_s: float
    who: str
    style: str = "aversive"
    repair_s: float | None = None
    family: str | None = None
    depth: float | None = None
    ramp_s: float | None = None
    arousal: str | None = None

    @property
    def model(self) -> str:
        """The rupture's family: ``family``, or the style when no family is given."""
        return self.family or self.style


@dataclass(frozen=True)
class Confound:
    """Something that changes the signals but is not a rupture."""

    kind: str
    participants: tuple[str, ...]
    onset_s: float
    duration_s: float
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (see the module docstring for the TOML schema)."""

    name: str
    participants: tuple[Participant, ...]
    duration_s: float = 300.0
    coupling: tuple[tuple[float, float], ...] = ((0.0, 0.7),)
    repair_s: float = 6.0
    ruptures: tuple[Rupture, ...] = ()
    #: Poisson rate of shared conversational moments (a laugh, a raised voice, a pause) that evoke
    #: co-occurring SCRs and heart-rate responses in the engaged partners; 0 leaves only the slow shared drive.
    shared_events_per_min: float = 3.0
    confounds: tuple[Confound, ...] = ()
    description: str = ""
    #: scale of the shared moments' salience (SCR amplitude and HR response)
    shared_salience: float = 1.0
    #: each person's own (unshared) response-eliciting moments per minute, at rest
    own_events_per_min: float = 1.0
    #: band (Hz) of the slow shared drive and of everybody's own drive
    drive_band_hz: tuple[float, float] = (0.005, 0.1)

    @property
    def ids(self) -> list[str]:
        """The participants' ids, in order."""
        return [p.id for p in self.participants]

    @property
    def mean_coupling(self) -> float:
        """The scenario's baseline coupling (mean of the schedule's values)."""
        return float(sum(c for _, c in self.coupling) / len(self.coupling))

    def with_participants(self, n: int) -> Scenario:
        """The same scenario with ``n`` participants (extra people are copies of the defaults, P<k>).

        Raises
        ------
        ScenarioError
            When ``n`` would drop somebody a rupture or confound is about.
        """
        if n < 1:
            raise ScenarioError(f"Invalid value for 'participants': expected at least 1, but got {n}.")
        people = list(self.participants)
        if n < len(people):
            kept = {p.id for p in people[:n]}
            needed = {r.who for r in self.ruptures} | {q for c in self.confounds for q in c.participants}
            if needed - kept:
                raise ScenarioError(
                    f"scenario {self.name}: cannot reduce to {n} participants: its ruptures/confounds involve "
                    f"{', '.join(sorted(needed - kept))}; choose at least {len(people)} or another scenario.")
            people = people[:n]
            confounds = self.confounds
        else:
            devices = [("rr", "e4"), ("hr", "emotibit"), ("both", "shimmer"), ("rr", "e4")]
            taken = {p.id for p in people}
            k = 1
            while len(people) < n:
                pid = f"P{k}"
                k += 1
                if pid in taken:
                    continue
                heart, eda = devices[len(people) % len(devices)]
                people.append(Participant(pid, heart=heart, eda=eda, hr_bpm=62.0 + 4 * (len(people) % 5),
                                          eda_us=2.5 + 0.8 * (len(people) % 4),
                                          resp_hz=0.22 + 0.015 * (len(people) % 4)))
                taken.add(pid)
            # confounds that concern everybody keep concerning everybody
            everybody = set(self.ids)
            confounds = tuple(replace(c, participants=tuple(p.id for p in people))
                              if set(c.participants) == everybody and c.kind == "shared_stressor" else c
                              for c in self.confounds)
        return replace(self, participants=tuple(people), confounds=confounds)


def builtin_names() -> list[str]:
    """Names of the scenarios shipped in ``acquisition/scenarios/``."""
    files = resources.files("attune_monitor.acquisition.scenarios")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a TOML file by path.

    Raises
    ------
    ScenarioError
        Unknown name, unreadable file, bad TOML or an invalid field.
    """
    text_name = str(name_or_path)
    path = Path(text_name)
    if text_name in builtin_names():
        packaged = resources.files("attune_monitor.acquisition.scenarios").joinpath(text_name + ".toml")
        text = packaged.read_text(encoding="utf-8")
        source = text_name
    elif path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ScenarioError(f"cannot read scenario file '{path}': {exc.strerror or exc}; check the path.") from None
        source = str(path)
    else:
        raise ScenarioError(f"Invalid value for 'scenario': expected one of {', '.join(builtin_names())} "
                            f"or a path to a .toml file, but got {text_name!r}.")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source}: not valid TOML ({exc}); fix the file.") from None
    return parse_scenario(data, source=source)


def _num(where: str, key: str, value, *, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ScenarioError(f"{where}: '{key}' must be a number, but got {value!r}.")
    value = float(value)
    if value != value or (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else f"at least {lo:g}"
        raise ScenarioError(f"{where}: '{key}' must be {rng}, but got {value:g}.")
    return value


def _choice(where: str, key: str, value, options) -> str:
    if value not in options:
        raise ScenarioError(f"{where}: '{key}' must be one of {', '.join(options)}, but got {value!r}.")
    return value


def _unknown(where: str, table: dict, allowed) -> None:
    extra = sorted(set(table) - set(allowed))
    if extra:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(extra)}; expected some of {', '.join(allowed)}.")


def parse_scenario(data: dict, *, source: str = "<dict>") -> Scenario:
    """Validate a scenario given as a dict (parsed TOML); see the module docstring for the schema."""
    name = str(data.get("name") or Path(source).stem)
    where = f"scenario {name}"
    _unknown(where, data, ("name", "description", "duration_s", "coupling", "repair_s", "shared_events_per_min",
                           "shared_salience", "own_events_per_min", "drive_band_hz", "participants", "ruptures",
                           "confounds"))
    duration = _num(where, "duration_s", data.get("duration_s", 300.0), lo=1.0, hi=24 * 3600.0)
    repair = _num(where, "repair_s", data.get("repair_s", 6.0), lo=0.0, hi=600.0)
    events = _num(where, "shared_events_per_min", data.get("shared_events_per_min", 3.0), lo=0.0, hi=30.0)
    salience = _num(where, "shared_salience", data.get("shared_salience", 1.0), lo=0.0, hi=5.0)
    own_events = _num(where, "own_events_per_min", data.get("own_events_per_min", 1.0), lo=0.0, hi=30.0)
    band = data.get("drive_band_hz", [0.005, 0.1])
    if not (isinstance(band, list) and len(band) == 2):
        raise ScenarioError(f"{where}: 'drive_band_hz' must be [low, high] in Hz, but got {band!r}.")
    band = (_num(where, "drive_band_hz low", band[0], lo=0.001, hi=0.5),
            _num(where, "drive_band_hz high", band[1], lo=0.001, hi=0.5))
    if not band[1] > band[0]:
        raise ScenarioError(f"{where}: 'drive_band_hz' must be [low, high] with low < high, but got {list(band)}.")
    raw_c = data.get("coupling", 0.7)
    if isinstance(raw_c, list):
        if not raw_c:
            raise ScenarioError(f"{where}: 'coupling' schedule is empty; give a number or [[t_s, c], ...].")
        sched = []
        for k, item in enumerate(raw_c, 1):
            if not (isinstance(item, list) and len(item) == 2):
                raise ScenarioError(f"{where}: coupling point {k} must be [t_s, c], but got {item!r}.")
            sched.append((_num(f"{where}: coupling point {k}", "t_s", item[0], lo=0.0),
                          _num(f"{where}: coupling point {k}", "c", item[1], lo=0.0, hi=1.0)))
        if any(b[0] <= a[0] for a, b in zip(sched, sched[1:])):
            raise ScenarioError(f"{where}: coupling schedule times must increase, but got {[t for t, _ in sched]}.")
        coupling = tuple(sched)
    else:
        coupling = ((0.0, _num(where, "coupling", raw_c, lo=0.0, hi=1.0)),)

    raw_people = data.get("participants")
    if not isinstance(raw_people, list) or not raw_people:
        raise ScenarioError(f"{where}: needs at least one [[participants]] table with an 'id'.")
    people = []
    for k, p in enumerate(raw_people, 1):
        w = f"{where}: participant {k}"
        if not isinstance(p, dict):
            raise ScenarioError(f"{w}: must be a table, but got {p!r}.")
        _unknown(w, p, ("id", "heart", "eda", "ecg", "ppg", "hr_bpm", "eda_us", "resp_hz", "noise"))
        pid = p.get("id")
        if not isinstance(pid, str) or not pid.strip():
            raise ScenarioError(f"{w}: 'id' must be a non-empty pseudonym such as \"P{k}\", but got {pid!r}.")
        for flag in ("ecg", "ppg"):
            if not isinstance(p.get(flag, False), bool):
                raise ScenarioError(f"{w}: '{flag}' must be true or false, but got {p[flag]!r}.")
        people.append(Participant(
            id=pid.strip(), heart=_choice(w, "heart", p.get("heart", "rr"), HEART_DEVICES),
            eda=_choice(w, "eda", p.get("eda", "e4"), EDA_DEVICES), ecg=p.get("ecg", False), ppg=p.get("ppg", False),
            hr_bpm=_num(w, "hr_bpm", p.get("hr_bpm", 70.0), lo=35.0, hi=180.0),
            eda_us=_num(w, "eda_us", p.get("eda_us", 4.0), lo=0.1, hi=60.0),
            resp_hz=_num(w, "resp_hz", p.get("resp_hz", 0.25), lo=0.08, hi=0.6),
            noise=_num(w, "noise", p.get("noise", 1.0), lo=0.0, hi=10.0)))
    ids = [p.id for p in people]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ScenarioError(f"{where}: participant ids must be unique, but {', '.join(dup)} appear twice.")

    ruptures = []
    for k, r in enumerate(data.get("ruptures", []), 1):
        w = f"{where}: rupture {k}"
        if not isinstance(r, dict):
            raise ScenarioError(f"{w}: must be a table, but got {r!r}.")
        _unknown(w, r, ("onset_s", "duration_s", "who", "style", "repair_s", "family", "depth", "ramp_s", "arousal"))
        if "who" not in r:
            raise ScenarioError(f"{w}: 'who' is missing; give one of {', '.join(ids)}.")
        onset = _num(w, "onset_s", r.get("onset_s"), lo=0.0, hi=duration)
        style = _choice(w, "style", r.get("style", "aversive"), RUPTURE_STYLES)
        family = r.get("family")
        if family is not None:
            family = _choice(w, "family", family, RUPTURE_FAMILIES)
            if family in RUPTURE_STYLES:
                if "style" in r and r["style"] != family:
                    raise ScenarioError(f"{w}: 'style' {r['style']!r} contradicts 'family' {family!r}; "
                                        "give one of them.")
                style = family
            elif "style" in r:
                raise ScenarioError(f"{w}: 'style' applies to the aversive and withdrawn families only, but "
                                    f"'family' is {family!r}; drop 'style'.")
        newer = family is not None and family not in RUPTURE_STYLES
        for key in ("depth", "ramp_s", "arousal"):
            if key in r and not newer:
                raise ScenarioError(f"{w}: '{key}' needs a 'family' other than aversive or withdrawn "
                                    f"(one of {', '.join(f for f in RUPTURE_FAMILIES if f not in RUPTURE_STYLES)}).")
        if "ramp_s" in r and family != "drift":
            raise ScenarioError(f"{w}: 'ramp_s' applies to the drift family only, but 'family' is {family!r}.")
        if family == "leave_group" and len(people) < 3:
            raise ScenarioError(f"{w}: family 'leave_group' needs a group of at least 3 people, but there are "
                                f"{len(people)}; use 'coupling_loss' for a couple.")
        ruptures.append(Rupture(
            onset_s=onset, duration_s=_num(w, "duration_s", r.get("duration_s"), lo=1.0, hi=duration),
            who=_choice(w, "who", r["who"], ids), style=style,
            repair_s=None if r.get("repair_s") is None else _num(w, "repair_s", r["repair_s"], lo=0.0, hi=600.0),
            family=family,
            depth=None if r.get("depth") is None else _num(w, "depth", r["depth"], lo=0.01, hi=1.0),
            ramp_s=None if r.get("ramp_s") is None else _num(w, "ramp_s", r["ramp_s"], lo=0.0, hi=600.0),
            arousal=None if r.get("arousal") is None else _choice(w, "arousal", r["arousal"], AROUSAL_SHIFTS)))
    if len(people) < 2 and ruptures:
        raise ScenarioError(f"{where}: a rupture needs at least two participants, but there is only {ids[0]}.")

    confounds = []
    for k, c in enumerate(data.get("confounds", []), 1):
        w = f"{where}: confound {k}"
        if not isinstance(c, dict):
            raise ScenarioError(f"{w}: must be a table, but got {c!r}.")
        kind = _choice(w, "kind", c.get("kind"), CONFOUND_KINDS)
        allowed = {"shared_stressor": ("hr_bpm", "eda_us"), "electrode_loss": ("mode",),
                   "strap_dropout": (), "ectopic": ("count",), "motion": ("count",)}[kind]
        _unknown(w, c, ("kind", "participants", "onset_s", "duration_s") + allowed)
        who = c.get("participants", ids)
        if isinstance(who, str):
            who = [who]
        for q in who:
            _choice(w, "participants", q, ids)
        opts = {key: c[key] for key in allowed if key in c}
        if "mode" in opts:
            _choice(w, "mode", opts["mode"], ("zero", "gap"))
        for key in ("count",):
            if key in opts:
                opts[key] = int(_num(w, key, opts[key], lo=1, hi=10000))
        for key in ("hr_bpm", "eda_us"):
            if key in opts:
                opts[key] = _num(w, key, opts[key], lo=0.0, hi=60.0)
        confounds.append(Confound(kind=kind, participants=tuple(who),
                                  onset_s=_num(w, "onset_s", c.get("onset_s"), lo=0.0, hi=duration),
                                  duration_s=_num(w, "duration_s", c.get("duration_s"), lo=0.1, hi=duration),
                                  options=opts))
    return Scenario(name=name, participants=tuple(people), duration_s=duration, coupling=coupling, repair_s=repair,
                    shared_events_per_min=events, ruptures=tuple(ruptures), confounds=tuple(confounds),
                    description=str(data.get("description", "")), shared_salience=salience,
                    own_events_per_min=own_events, drive_band_hz=band)
