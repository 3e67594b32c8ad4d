"""Attune's LSL stream convention, and recognition of streams found in the wild.

The convention (documented in ``hardware.md``)
----------------------------------------------
One LSL stream per signal per person. For a stream of kind ``K``:

* ``type``: ``RR``, ``HR``, ``EDA``, ``ECG`` or ``PPG`` (see :data:`KIND_TYPES`).
* ``name``: free, by default ``"<participant> <device> <type>"``.
* ``source_id``: stable per device and signal (serial number + type), so a
  restarted device is recognised as the same stream.
* ``desc``::

      <participant>P1</participant>            (pseudonym; never a real name needed)
      <manufacturer>Polar</manufacturer>
      <device>H10</device>
      <channels><channel><label>RR</label><unit>ms</unit><type>RR</type></channel></channels>

A device HR stream (``type`` ``HR``) whose values are averages over the last
``W`` seconds of beats may declare ``<averaging_s>W</averaging_s>`` in its
desc: each value then describes the heart rate about ``W / 2`` s before its
timestamp, and Attune dates it back by that much so it lines up with a
partner's beat-by-beat HR (see :data:`DEFAULT_HR_AVERAGING_S`).

Canonical units inside Attune (see :data:`CANONICAL_UNIT`): RR in seconds, HR
in beats per minute, EDA in microsiemens, ECG in millivolts, PPG in arbitrary
units. :func:`describe` works out the scale from a stream's declared unit
(:func:`read_unit`: SI units with prefixes, spelled-out words, skin resistance,
and MNE's unit-multiplier codes, which mne-lsl writes as ``<unit>0</unit>``
beside the MNE channel type that names the SI unit), or from the magnitude of
its first values when no unit is declared.

Stream identity
---------------
A stream is who it says it is by ``(name, type, source_id, hostname)``
(:attr:`StreamDescriptor.identity`); its ``uid`` tells one run of the outlet
from the next. A new uid with a known identity after the old one vanished is
the same stream restarted; two live uids with one identity are duplicates,
which Attune reports and never mixes (see :mod:`attune_monitor.acquisition.live`). mne-lsl
players left at the default ``source_id`` "MNE-LSL" are therefore different
streams as long as their names differ, and a player's ``<name>-annotations``
stream (type ``annotations``) is an event stream (:func:`is_marker_stream`,
decoded by :func:`marker_texts`), never the heart signal.

This module is pure Python (no pylsl): it works on the stream's XML header,
so the same rules apply to live streams and to XDF files.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = [
    "KIND_TYPES", "CANONICAL_UNIT", "DEFAULT_HR_AVERAGING_S", "KIND_MODALITY", "TYPE_ALIASES", "MARKER_TYPES",
    "ANNOTATION_TYPES", "PLAUSIBLE_MAX_RATE", "MAX_INLET_RATE", "rate_is_implausible", "is_marker_stream",
    "unusable_reason", "marker_texts", "MNE_TYPE_UNITS", "FIFF_KIND_UNITS", "FIFF_UNIT_MULTIPLIERS", "read_unit",
    "mne_unit", "Channel", "StreamDescriptor", "identity_key", "header_fingerprint", "kind_from_type", "unit_scale",
    "unit_conversion", "describe", "dict_to_xml", "desc_fields"
]

#: Kinds of stream Attune understands, with the LSL ``type`` it publishes for each.
KIND_TYPES = {"rr": "RR", "hr": "HR", "eda": "EDA", "ecg": "ECG", "ppg": "PPG"}

#: The unit each kind is normalised to.
CANONICAL_UNIT = {"rr": "s", "hr": "bpm", "eda": "uS", "ecg": "mV", "ppg": "au"}

#: Seconds of beats a device HR value averages over when its stream does not say (``<averaging_s>``).
#: Wrist and strap HR (BLE Heart Rate Measurement, optical sensors) is a trailing average of the last
#: few beats; 4 s is an assumption, not a measurement: declare the real span when a device documents it
#: (an Empatica E4 export's HR.csv does: 10 s, see :mod:`attune_monitor.acquisition.files`).
DEFAULT_HR_AVERAGING_S = 4.0

#: Which synchrony modality a stream kind feeds.
KIND_MODALITY = {"rr": "hr", "hr": "hr", "ecg": "hr", "ppg": "hr", "eda": "eda"}

# Stream types (and name fragments) seen in the wild, lower-case, per kind.
TYPE_ALIASES = {
    "rr": ("rr", "ibi", "rri", "rr-interval", "rrinterval", "interbeatinterval", "nn"),
    "hr": ("hr", "heartrate", "heart_rate", "heart rate", "bpm", "pulse"),
    "eda": ("eda", "gsr", "skinconductance", "skin_conductance", "sc", "electrodermal"),
    "ecg": ("ecg", "ekg"),
    "ppg": ("ppg", "bvp", "pleth", "photoplethysmogram"),
}

# Stream types that say the stream is something else: their names are not searched for heart/EDA words
# (Attune's own "Attune synchrony hr" stream must not be taken for a heart-rate stream).
_OTHER_TYPES = {
    "synchrony", "markers", "marker", "stringmarker", "events", "event", "eeg", "emg", "eog", "meg", "nirs",
    "accelerometer", "acc", "gyroscope", "gyro", "magnetometer", "mocap", "audio", "video", "gaze", "control",
    "temperature", "temp", "resp", "respiration", "annotations", "annotation", "stim",
}

#: Stream types of event / marker streams (another app's experiment markers, a facilitator's button box, an
#: mne-lsl player's annotations ...).
MARKER_TYPES = frozenset({"markers", "marker", "stringmarker", "events", "event", "annotations", "annotation"})

#: Stream type mne-lsl gives the annotation stream of a player (``<name>-annotations``): one float channel per
#: annotation description (the label), one-hot: the annotation's duration (-1 for none) on its channel, 0 elsewhere.
ANNOTATION_TYPES = frozenset({"annotations", "annotation"})


#: The highest nominal rate (Hz) a stream of each kind plausibly has: the fastest devices of hardware.md with room
#: to spare (ECG / PPG amplifiers sample at up to a few kHz, EDA at up to 1 kHz, a device HR or RR stream is a few
#: values a second; "marker": event / marker streams, normally irregular). A header claiming more is not believed:
#: the stream is not used (buffers sized by the claim would take the memory of the machine: 300 s of a "1e8 Hz"
#: stream are 279 GiB), see :func:`unusable_reason`.
PLAUSIBLE_MAX_RATE = {"ecg": 10_000.0, "ppg": 10_000.0, "eda": 1_000.0, "hr": 1_000.0, "rr": 100.0,
                      "marker": 1_000.0}

#: The highest nominal rate (Hz) of any stream Attune opens an inlet on, even only to read its full header: liblsl
#: reserves an inlet's queue (seconds x nominal rate places, ~17 bytes each) when the inlet is made, so one inlet on
#: a header claiming 1e8 Hz takes gigabytes. Streams claiming more are described from their short header only.
MAX_INLET_RATE = 100_000.0


def rate_is_implausible(d) -> bool:
    """True when a stream's nominal rate cannot be believed.

    True when a stream's nominal rate is not a rate (negative, not finite) or above :data:`MAX_INLET_RATE`, or
    above :data:`PLAUSIBLE_MAX_RATE` of its kind (heart, EDA or marker stream).
    """
    rate = float(d.srate or 0.0)
    if not math.isfinite(rate) or rate < 0 or rate > MAX_INLET_RATE:
        return True
    kind = d.kind if d.kind is not None else ("marker" if is_marker_stream(d) else None)
    return kind is not None and rate > PLAUSIBLE_MAX_RATE[kind]


def is_marker_stream(d) -> bool:
    """True when a stream descriptor is an event / marker stream: a :data:`MARKER_TYPES` type or string samples.

    Attune's own derived streams (type ``AttuneEvents``, ``Synchrony``) are not: they belong to the recording that
    made them. Nor is a string stream that says it is a heart or EDA signal (``type`` RR, ECG ...): its text is
    not anyone's markers, and Attune cannot read it as the signal either (:func:`unusable_reason`).
    """
    typ = (d.type or "").strip().lower()
    if typ in ("attuneevents", "attuneroster", "synchrony"):
        return False
    if typ in MARKER_TYPES:
        return True
    return str(d.channel_format).lower() == "string" and getattr(d, "kind", None) is None


def unusable_reason(d) -> str | None:
    """Why Attune refuses a stream it would otherwise use, in one sentence that says how to fix it; else ``None``.

    * a heart or EDA stream (``kind`` set) whose samples are text (channel format ``string``): neither the signal
      (Attune reads numbers) nor markers;
    * a heart, EDA or marker stream whose header claims a nominal rate above :data:`PLAUSIBLE_MAX_RATE` for its
      kind ("implausible rate"): any process can publish such a header, and buffers sized by it would exhaust
      the memory.

    Parameters
    ----------
    d : StreamDescriptor
    """
    kind = d.kind if d.kind is not None else ("marker" if is_marker_stream(d) else None)
    if kind is None:
        return None  # not used by Attune anyway
    what = f"stream {d.name!r} (type {d.type!r}, source_id {d.source_id!r}, host {d.hostname!r})"
    if kind != "marker" and str(d.channel_format).lower() == "string":
        return (f"{what} says it is {kind.upper()} but carries text (channel format string): Attune reads "
                f"{kind.upper()} only as numbers, and does not take it for markers either. Publish the values as "
                "float32 or double64, or give the stream another type.")
    rate = float(d.srate or 0.0)
    top = PLAUSIBLE_MAX_RATE[kind]
    if rate_is_implausible(d):
        label = "an event / marker" if kind == "marker" else ("a " if kind == "ppg" else "an ") + kind.upper()
        return (f"implausible rate: {what} claims {rate:g} Hz, more than {label} stream has (at most {top:g} Hz): "
                "not used. Fix the nominal_srate the publisher declares (0 for an irregular stream).")
    return None


def marker_texts(d, values) -> list[str]:
    """The text of each sample of an event / marker stream.

    Parameters
    ----------
    d : StreamDescriptor
        The marker stream's descriptor (its channel labels decode mne-lsl annotations).
    values : sequence, shape (n_samples, n_channels)
        Samples as pulled or recorded (strings, or numbers).

    Returns
    -------
    texts : list of str, length n_samples
        String samples as sent (several channels joined with ``" | "``). An mne-lsl annotation stream
        (type ``annotations``, numeric one-hot) gives the annotation description (the label of the channel
        that is set), with its duration when it has one: ``"task start"``, ``"rest (1.5 s)"``; other numeric
        markers give their values (``"3"``).
    """
    import numpy as np

    typ = (d.type or "").strip().lower()
    labels = [c.label for c in d.channels]
    out = []
    for v in values:
        row = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
        if row and all(isinstance(x, str) for x in row):
            out.append(" | ".join(row))
            continue
        nums = np.asarray(row, dtype=float)
        if typ in ANNOTATION_TYPES and labels:
            words = []
            for k in np.flatnonzero(np.isfinite(nums) & (nums != 0)):
                label = labels[k] if k < len(labels) and labels[k] else f"annotation {k}"
                words.append(f"{label} ({nums[k]:g} s)" if nums[k] > 0 else label)
            out.append(" | ".join(words))
        else:
            out.append(" | ".join(f"{x:g}" for x in nums))
    return out


# Unit spellings, lower-case, with the factor that takes them to the canonical unit.
_UNIT_SCALES = {
    "rr": {"s": 1.0, "sec": 1.0, "seconds": 1.0, "second": 1.0, "ms": 1e-3, "msec": 1e-3,
           "milliseconds": 1e-3, "millisecond": 1e-3, "1/1024s": 1 / 1024, "1/1024 s": 1 / 1024},
    "hr": {"bpm": 1.0, "beats/min": 1.0, "1/min": 1.0, "beats per minute": 1.0, "hz": 60.0},
    "eda": {"us": 1.0, "µs": 1.0, "μs": 1.0, "microsiemens": 1.0, "micro siemens": 1.0,
            "micro-siemens": 1.0, "usiemens": 1.0, "ms": 1e3, "millisiemens": 1e3, "s": 1e6,
            "siemens": 1e6, "ns": 1e-3, "nanosiemens": 1e-3},
    "ecg": {"mv": 1.0, "millivolts": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolts": 1e-3,
            "v": 1e3, "volts": 1e3},
    "ppg": {},
}

#: Skin-resistance units (some EDA devices and apps, e.g. Shimmer's, offer resistance as well as conductance):
#: conductance in microsiemens = factor / resistance. "MOhm" lower-cased is megaohm (skin is never milliohms).
_RESISTANCE_UNITS = {"ohm": 1e6, "ohms": 1e6, "ω": 1e6, "kohm": 1e3, "kohms": 1e3, "kω": 1e3, "k ohm": 1e3,
                     "kiloohm": 1e3, "kiloohms": 1e3, "mohm": 1.0, "mohms": 1.0, "mω": 1.0, "megaohm": 1.0,
                     "megaohms": 1.0}


#: SI prefixes as symbols (case matters: ``m`` milli, ``M`` mega) and as words.
_SI_PREFIXES = {"": 1.0, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1,
                "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_PREFIX_WORDS = {"": 1.0, "pico": 1e-12, "nano": 1e-9, "micro": 1e-6, "milli": 1e-3, "centi": 1e-2, "deci": 1e-1,
                 "kilo": 1e3, "mega": 1e6, "giga": 1e9}
_SI_SYMBOL_RE = re.compile(r"^(p|n|u|µ|μ|m|c|d|k|K|M|G)?(S|V|Ω|Ohms?|ohms?|s|secs?|Hz)$")
_SI_WORD_RE = re.compile(r"^(pico|nano|micro|milli|centi|deci|kilo|mega|giga)?[ -]?"
                         r"(siemens|siemen|volts?|ohms?|seconds?|secs?|hertz)$")
_PREFIXED_WORD_RE = re.compile(r"^(p|n|u|µ|μ|m|k|K|M|G)[ -]?(siemens|siemen|volts?|ohms?|seconds?|secs?|hertz)$",
                               re.I)
#: Spellings that say "no unit" (mne-lsl writes ``none`` for its annotation channels).
_NO_UNIT = {"", "none", "n/a", "na", "unknown", "unitless", "au", "a.u.", "arbitrary", "arb", "-"}

#: MNE channel types -> the SI unit their values are in (mne-lsl writes the type beside the unit multiplier).
#: ``misc`` has no unit in MNE: an EDA channel typed ``misc`` says nothing about its unit.
MNE_TYPE_UNITS = {"ecg": "V", "eeg": "V", "emg": "V", "eog": "V", "bio": "V", "resp": "V", "seeg": "V",
                  "ecog": "V", "dbs": "V", "gsr": "S"}
#: FIFF channel kinds (mne-lsl's ``<kind>``) -> SI unit: ECG, galvanic skin response, EEG, EMG, EOG, BIO, RESP.
FIFF_KIND_UNITS = {402: "V", 1300: "S", 2: "V", 302: "V", 202: "V", 102: "V", 602: "V"}
#: MNE's unit-multiplier codes (``FIFF_UNITM_*``): the power of ten in front of the channel type's SI unit.
FIFF_UNIT_MULTIPLIERS = frozenset({18, 15, 12, 9, 6, 3, 2, 1, 0, -1, -2, -3, -6, -9, -12, -15, -18})
_MULTIPLIER_SYMBOLS = {-12: "p", -9: "n", -6: "µ", -3: "m", 0: "", 3: "k", 6: "M", 9: "G"}

#: Per kind: the SI unit its values must be in, and the factor from it to :data:`CANONICAL_UNIT`.
_KIND_SI = {"rr": ("s", 1.0), "ecg": ("V", 1e3), "eda": ("S", 1e6), "hr": ("Hz", 60.0)}


def read_unit(text: str | None) -> tuple[str, float] | None:
    """An SI unit with its prefix, as ``(unit, factor)``.

    Symbols are read case-sensitively (``"mS"`` millisiemens, ``"MOhm"`` megaohm, ``"ms"`` milliseconds,
    ``"µV"`` / ``"uV"`` microvolts); words case-insensitively (``"microsiemens"``, ``"milli-volts"``,
    ``"kOhms"``, ``"uSiemens"``). Heart-rate spellings (``"bpm"``, ``"1/min"``, ``"beats per minute"``) give
    ``("bpm", 1.0)``.

    Parameters
    ----------
    text : str | None
        The declared unit.

    Returns
    -------
    unit_factor : tuple of (str, float) | None
        ``unit`` one of ``"S"``, ``"V"``, ``"ohm"``, ``"s"``, ``"Hz"``, ``"bpm"``; the value in that unit is
        ``value * factor``. ``None`` when the text is not such a unit (or is empty).

    Examples
    --------
    >>> read_unit("µS"), read_unit("kOhm"), read_unit("millivolts")
    (('S', 1e-06), ('ohm', 1000.0), ('V', 0.001))
    """
    u = (text or "").strip()
    if not u:
        return None
    low = _norm(u)
    if low in ("bpm", "beats/min", "beats per minute", "1/min", "/min", "beats/minute", "min^-1", "min-1"):
        return "bpm", 1.0
    m = _SI_SYMBOL_RE.match(u)
    if m:
        return _base(m.group(2)), _SI_PREFIXES[m.group(1) or ""]
    m = _SI_WORD_RE.match(low)
    if m:
        return _base(m.group(2)), _PREFIX_WORDS[m.group(1) or ""]
    m = _PREFIXED_WORD_RE.match(u)
    if m:
        return _base(m.group(2)), _SI_PREFIXES[m.group(1)]
    return None


def _base(symbol: str) -> str:
    """``"S"``, ``"V"``, ``"ohm"``, ``"s"`` or ``"Hz"`` for a unit symbol or word (no prefix)."""
    if symbol in ("S", "V", "s", "Hz"):
        return symbol
    low = symbol.lower()
    if low in ("s", "sec", "secs"):
        return "s"
    if low.startswith("ohm") or low == "ω":
        return "ohm"
    if low.startswith("siemen"):
        return "S"
    if low.startswith("volt"):
        return "V"
    if low.startswith("second") or low.startswith("sec"):
        return "s"
    return "Hz"


def mne_unit(text: str | None, channel_type: str | None = None, fiff_kind=None) -> tuple[str, float] | None:
    """The unit of an MNE unit-multiplier code (what mne-lsl writes as ``<unit>``), as ``(unit, factor)``.

    mne-lsl's ``StreamInfo.set_channel_info`` writes each channel's ``unit_mul`` (``"0"`` for 10^0, ``"-6"``
    for micro) as its ``<unit>``, beside the MNE channel ``<type>`` (``ecg``: volts, ``gsr``: siemens) and
    the FIFF ``<kind>`` (402 ECG, 1300 galvanic skin response); a player's samples are the Raw's SI values
    divided by 10^unit_mul.

    Parameters
    ----------
    text : str | None
        The declared unit.
    channel_type : str | None
        The channel's ``<type>`` (an MNE channel type).
    fiff_kind : str | int | None
        The channel's ``<kind>`` (a FIFF channel kind), used when the type names no unit.

    Returns
    -------
    unit_factor : tuple of (str, float) | None
        ``("V", 1e-6)`` for ``"-6"`` on an ``ecg`` channel; ``None`` when ``text`` is not a multiplier code
        or the channel's type and kind name no unit (MNE's ``misc``).
    """
    u = (text or "").strip()
    if not re.fullmatch(r"[+-]?\d{1,2}", u) or int(u) not in FIFF_UNIT_MULTIPLIERS:
        return None
    base = MNE_TYPE_UNITS.get(_norm(channel_type))
    if base is None:
        try:
            base = FIFF_KIND_UNITS.get(int(float(fiff_kind))) if fiff_kind is not None else None
        except ValueError:
            base = None
    return (base, 10.0 ** int(u)) if base is not None else None


@dataclass(frozen=True)
class Channel:
    """One channel of a stream header (``fiff_kind``: mne-lsl's ``<kind>``, a FIFF channel kind)."""

    label: str
    unit: str | None = None
    type: str | None = None
    fiff_kind: str | None = None


@dataclass
class StreamDescriptor:
    """What Attune knows about one stream, from its header.

    Attributes
    ----------
    kind : str | None
        One of :data:`KIND_TYPES` keys, or ``None`` when the stream is not one
        Attune uses (markers, accelerometer, EEG ...).
    participant : str | None
        From the ``participant`` element of the desc; ``None`` when absent
        (the roster then decides).
    unit : str | None
        The unit as declared (or guessed, see ``unit_guessed``).
    scale : float | None
        Multiply raw values by this to get :data:`CANONICAL_UNIT` of ``kind``
        (with ``reciprocal``: divide it by them). ``None`` when it cannot be
        known yet (no unit declared; call :meth:`guess_scale` with the first values).
    reciprocal : bool
        The values are skin *resistance* (kΩ, Ω, MΩ): conductance = ``scale / value``
        (see :meth:`to_canonical`).
    channel_index : int
        Which channel carries the signal (0 unless a label says otherwise).
    averaging_s : float | None
        Device HR: the span (s) each value averages over, from the desc's ``averaging_s``; ``None`` when
        not declared (see :meth:`hr_averaging_s`).
    declared_unit : str | None
        The unit text as the header (or a roster rule) declared it; ``unit`` is what it means (an mne-lsl
        ``"0"`` on an ``ecg`` channel is ``"V"``).
    """

    name: str
    type: str
    source_id: str = ""
    hostname: str = ""
    srate: float = 0.0
    channel_count: int = 1
    channel_format: str = "float32"
    uid: str = ""
    channels: list[Channel] = field(default_factory=list)
    participant: str | None = None
    manufacturer: str | None = None
    device: str | None = None
    kind: str | None = None
    unit: str | None = None
    scale: float | None = None
    unit_guessed: bool = False
    channel_index: int = 0
    reciprocal: bool = False
    averaging_s: float | None = None
    declared_unit: str | None = None

    @property
    def hr_averaging_s(self) -> float:
        """Seconds each value averages over.

        The declared ``averaging_s``, else :data:`DEFAULT_HR_AVERAGING_S` for device HR (``kind == "hr"``); 0 for every
        other kind (beat by beat or raw).
        """
        if self.kind != "hr":
            return 0.0
        return DEFAULT_HR_AVERAGING_S if self.averaging_s is None else float(self.averaging_s)

    @property
    def modality(self) -> str | None:
        """The synchrony modality (``"hr"`` or ``"eda"``) this stream feeds, if any."""
        return KIND_MODALITY.get(self.kind) if self.kind else None

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """``(name, type, source_id, hostname)``: who the stream says it is.

        A new ``uid`` with a known identity after the old one vanished is the same stream restarted; two live
        uids with one identity are duplicates (see :mod:`attune_monitor.acquisition.live`).
        """
        return (self.name, self.type, self.source_id, self.hostname)

    @property
    def key(self) -> str:
        """The identity as one string (:func:`identity_key`): how Attune keys its receivers and recordings."""
        return identity_key(*self.identity)

    @property
    def signal_channel(self) -> Channel | None:
        """The header's description of the signal channel (``channel_index``), if it has one."""
        return self.channels[self.channel_index] if 0 <= self.channel_index < len(self.channels) else None

    def set_unit(self, unit: str | None) -> None:
        """Declare the unit of the signal channel.

        Sets ``unit``, ``scale`` and ``reciprocal`` (``scale`` None when the unit is not known for the kind). An MNE
        unit-multiplier code (``"0"``, ``"-6"``) is read with the signal channel's MNE type (:func:`mne_unit`); ``unit``
        then says what it means (``"V"``, ``"µV"``).
        """
        ch = self.signal_channel
        ctype, fkind = (ch.type, ch.fiff_kind) if ch is not None else (None, None)
        self.declared_unit = unit
        self.unit = unit
        self.scale, self.reciprocal = (unit_conversion(self.kind, unit, channel_type=ctype, fiff_kind=fkind)
                                       if self.kind else (None, False))
        coded = mne_unit(unit, ctype, fkind)
        if coded is not None:
            base, factor = coded
            power = int(round(math.log10(factor)))
            prefix = _MULTIPLIER_SYMBOLS.get(power)
            self.unit = f"{prefix}{base}" if prefix is not None else f"1e{power} {base}"
        elif self.scale is None and _norm(unit) in _NO_UNIT:
            self.unit = None  # "none": no unit declared (mne-lsl's annotation channels, MNE misc channels)
        self.unit_guessed = False
        if self.kind == "ppg":
            self.scale, self.unit = 1.0, self.unit or "au"

    def to_canonical(self, raw):
        """Raw values of the signal channel in :data:`CANONICAL_UNIT` of ``kind``, shape as ``raw`` (float).

        A resistance of zero or below (or not finite) becomes NaN: no conductance can be read from it.
        """
        import numpy as np

        raw = np.asarray(raw, dtype=np.float64)
        scale = self.scale if self.scale is not None else 1.0
        if not self.reciprocal:
            return raw * scale
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(raw > 0, scale / np.where(raw > 0, raw, 1.0), np.nan)

    def guess_scale(self, values) -> float | None:
        """Fill in ``scale`` from the magnitude of the first values when no unit was declared.

        Parameters
        ----------
        values : array-like, shape (n_samples,)
            Raw values of the signal channel.

        Returns
        -------
        scale : float | None
            The scale now in ``self.scale`` (``None`` if still unknown).
        """
        if self.scale is not None or self.kind is None:
            return self.scale
        import numpy as np

        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return None
        med = float(np.median(np.abs(v)))
        if self.kind == "rr":
            # 250 ms .. 2500 ms in ms; 0.25 .. 2.5 in s; 1/1024 s ticks are 256..2560 (ambiguous with ms: take ms)
            self.scale, self.unit = (1e-3, "ms") if med > 10 else (1.0, "s")
        elif self.kind == "eda":
            if med > 200:  # nanosiemens or raw ADC: cannot be told apart; assume nS
                self.scale, self.unit = 1e-3, "nS"
            elif 0 < med < 1e-3:  # below 1 nS as microsiemens is no skin: siemens (MNE's SI unit), 0.1-1000 uS
                self.scale, self.unit = 1e6, "S"
            else:
                self.scale, self.unit = 1.0, "uS"
        elif self.kind == "hr":
            self.scale, self.unit = (60.0, "Hz") if med < 4 else (1.0, "bpm")
        elif self.kind == "ecg":
            if med > 20:
                self.scale, self.unit = 1e-3, "uV"
            elif 0 < med < 5e-3:  # a median |ECG| under 5 uV as millivolts is a flat line: volts (MNE's SI unit)
                self.scale, self.unit = 1e3, "V"
            else:
                self.scale, self.unit = 1.0, "mV"
        else:
            self.scale, self.unit = 1.0, "au"
        self.unit_guessed = True
        return self.scale

    def to_dict(self) -> dict:
        """A JSON-ready summary (for ``attune streams --json`` and recordings)."""
        return {
            "name": self.name, "type": self.type, "source_id": self.source_id,
            "hostname": self.hostname, "srate": self.srate, "channel_count": self.channel_count,
            "participant": self.participant, "kind": self.kind, "modality": self.modality,
            "unit": self.unit, "unit_guessed": self.unit_guessed, "declared_unit": self.declared_unit,
        }


def identity_key(name: str, type: str, source_id: str, hostname: str) -> str:
    """One string for a stream identity (see :attr:`StreamDescriptor.identity`).

    ``"name|type|source_id@host"`` (``|`` and ``@`` inside a field are escaped, so different identities never share a
    key).
    """
    def esc(s: str) -> str:
        return (s or "").replace("\\", "\\\\").replace("|", "\\|").replace("@", "\\@")

    return f"{esc(name)}|{esc(type)}|{esc(source_id)}@{esc(hostname)}"


def header_fingerprint(d: StreamDescriptor) -> tuple:
    """What a restarted outlet of the same stream repeats in its header.

    Channel count and format, nominal rate, every channel's label, unit and type, and the desc's participant,
    manufacturer and device.

    A publisher that claims a known identity (:attr:`StreamDescriptor.identity`) with another fingerprint is a
    different source, not the stream restarted (:mod:`attune_monitor.acquisition.inlet` refuses it).
    """
    return (d.channel_count, str(d.channel_format), float(d.srate),
            tuple((c.label, c.unit, c.type) for c in d.channels), d.participant, d.manufacturer, d.device)


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").strip().lower())


def kind_from_type(stream_type: str | None, name: str | None = None, labels=(), channel_types=()) -> str | None:
    """Recognise the kind of a stream from its ``type``, else its name or channel labels.

    Parameters
    ----------
    stream_type : str | None
        The LSL ``type`` field (``"RR"``, ``"IBI"``, ``"GSR"``, ``"BVP"`` ...).
    name : str | None
        The stream name, used when the type says nothing (``"Polar H10 ECG"``).
    labels : iterable of str
        Channel labels, used last.
    channel_types : iterable of str
        Channel types (an mne-lsl stream of several MNE channel types has an empty stream type and says
        ``ecg`` / ``gsr`` per channel), used after the stream type, before the name.

    Returns
    -------
    kind : str | None
        ``"rr"``, ``"hr"``, ``"eda"``, ``"ecg"``, ``"ppg"`` or ``None``.
    """
    t = _norm(stream_type).replace("-", "").replace("_", "")
    for kind, aliases in TYPE_ALIASES.items():
        if t in {a.replace("-", "").replace("_", "") for a in aliases}:
            return kind
    if t in _OTHER_TYPES:
        return None
    if not t:
        for ct in channel_types:
            ct_kind = kind_from_type(ct) if _norm(ct) not in _OTHER_TYPES else None
            if ct_kind is not None:
                return ct_kind
    # Names and labels: whole-word match, most specific kinds first (ECG names often also say "HR").
    texts = [_norm(name)] + [_norm(lbl) for lbl in labels]
    for kind in ("rr", "ecg", "ppg", "eda", "hr"):
        for text in texts:
            words = set(re.split(r"[^a-z0-9µμ]+", text))
            if words & set(TYPE_ALIASES[kind]):
                return kind
    return None


def unit_scale(kind: str, unit: str | None) -> float | None:
    """Factor from ``unit`` to the canonical unit of ``kind`` (``None`` if the unit is unknown).

    For a skin resistance unit the factor of the reciprocal (see :func:`unit_conversion`).
    """
    return unit_conversion(kind, unit)[0]


def unit_conversion(kind: str, unit: str | None, *, channel_type: str | None = None,
                    fiff_kind=None) -> tuple[float | None, bool]:
    """``(scale, reciprocal)`` from ``unit`` to the canonical unit of ``kind``.

    ``reciprocal`` is True for skin resistance (EDA in kΩ, Ω or MΩ): conductance (µS) = ``scale / value``.
    ``scale`` is None when the unit is unknown (or is not a unit of ``kind``: volts for EDA).

    Parameters
    ----------
    kind : str
        ``"rr"``, ``"hr"``, ``"eda"``, ``"ecg"`` or ``"ppg"``.
    unit : str | None
        As declared: a spelling seen in the wild (``"ms"``, ``"microsiemens"``, ``"kOhms"``), any SI unit with
        a prefix (:func:`read_unit`), or an MNE unit-multiplier code (:func:`mne_unit`, read with
        ``channel_type`` / ``fiff_kind``).
    channel_type, fiff_kind : str | None
        The signal channel's ``<type>`` and ``<kind>`` (mne-lsl's MNE channel type and FIFF kind).

    Examples
    --------
    >>> unit_conversion("eda", "0", channel_type="gsr"), unit_conversion("ecg", "V")
    ((1000000.0, False), (1000.0, False))
    """
    if kind == "ppg":
        return 1.0, False
    u = _norm(unit)
    if u in _NO_UNIT:
        return None, False
    if u in _UNIT_SCALES.get(kind, {}):
        return _UNIT_SCALES[kind][u], False
    if kind == "eda" and u in _RESISTANCE_UNITS:
        return _RESISTANCE_UNITS[u], True
    parsed = read_unit(unit) or mne_unit(unit, channel_type, fiff_kind)
    if parsed is None:
        return None, False
    base, factor = parsed
    if kind == "eda" and base == "ohm":
        return 1e6 / factor, True
    if kind == "hr" and base == "bpm":
        return factor, False
    want = _KIND_SI.get(kind)
    if want is not None and base == want[0]:
        return factor * want[1], False
    return None, False


def _is_resistance(ch: Channel) -> bool:
    u = _norm(ch.unit)
    return u in _RESISTANCE_UNITS or "resist" in _norm(ch.label) or "resist" in _norm(ch.type)


def _text(el: ET.Element | None, tag: str) -> str | None:
    if el is None:
        return None
    child = el.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip() or None


def describe(header: str | dict) -> StreamDescriptor:
    """Build a :class:`StreamDescriptor` from a stream header.

    Parameters
    ----------
    header : str | dict
        The stream's XML (``pylsl.StreamInfo.as_xml()`` or an XDF StreamHeader
        chunk), or the ``info`` dict pyxdf returns (values are lists of strings).

    Returns
    -------
    desc : StreamDescriptor
    """
    if isinstance(header, dict):
        root = dict_to_xml(header)
    else:
        root = ET.fromstring(header)
    desc_el = root.find("desc")
    channels: list[Channel] = []
    if desc_el is not None:
        for ch in desc_el.findall("./channels/channel"):
            channels.append(Channel(_text(ch, "label") or "", _text(ch, "unit"), _text(ch, "type"),
                                    _text(ch, "kind")))
    d = StreamDescriptor(
        name=_text(root, "name") or "",
        type=_text(root, "type") or "",
        source_id=_text(root, "source_id") or "",
        hostname=_text(root, "hostname") or "",
        srate=float(_text(root, "nominal_srate") or 0.0),
        channel_count=int(float(_text(root, "channel_count") or 1)),
        channel_format=_text(root, "channel_format") or "float32",
        uid=_text(root, "uid") or "",
        channels=channels,
        participant=_text(desc_el, "participant"),
        manufacturer=_text(desc_el, "manufacturer"),
        device=_text(desc_el, "device") or _text(desc_el, "model"),
        averaging_s=_declared_seconds(_text(desc_el, "averaging_s")),
    )
    d.kind = kind_from_type(d.type, d.name, [c.label for c in channels], [c.type for c in channels])
    if d.kind is not None:
        # Pick the channel whose label or type names the kind; else the first. For EDA a conductance channel
        # comes before a resistance one (Shimmer's software offers both).
        matches = [i for i, ch in enumerate(channels)
                   if _norm(ch.type) not in _OTHER_TYPES and kind_from_type(ch.type, ch.label) == d.kind]
        if d.kind == "eda":
            matches.sort(key=lambda i: _is_resistance(channels[i]))
        if matches:
            d.channel_index = matches[0]
        unit = channels[d.channel_index].unit if channels and d.channel_index < len(channels) else None
        d.set_unit(unit or _text(desc_el, "unit"))
    return d


def _declared_seconds(text: str | None) -> float | None:
    """A declared number of seconds in ``[0, 600)``, else ``None``.

    A declared number of seconds in ``[0, 600)``, else ``None`` (absent, not a number or absurd: the default
    applies).
    """
    try:
        v = float(text) if text is not None else None
    except ValueError:
        return None
    return v if v is not None and 0.0 <= v < 600.0 else None


def dict_to_xml(info: dict) -> ET.Element:
    """Turn pyxdf's nested ``info`` dict back into an Element.

    pyxdf maps each element to ``{child_tag: [child, ...]}`` where a child is a
    text string (leaf), a dict (subtree) or ``None`` (empty element).
    """

    def build(parent: ET.Element, tag: str, items) -> None:
        for item in items if isinstance(items, list) else [items]:
            el = ET.SubElement(parent, tag)
            if isinstance(item, dict):
                for k, v in item.items():
                    build(el, k, v)
            elif item is not None:
                el.text = str(item)

    root = ET.Element("info")
    for k, v in info.items():
        if k in ("effective_srate", "segments", "clock_segments", "stream_id", "clock_times", "clock_values"):
            continue
        build(root, k, v)
    return root


def desc_fields(kind: str, participant: str, *, device: str, manufacturer: str, unit: str | None = None,
                label: str | None = None, averaging_s: float | None = None) -> dict:
    """The header fields Attune's convention asks of a stream of ``kind`` (for outlets and writers).

    ``averaging_s``: for device HR, the span (s) each value averages over (declared as ``<averaging_s>``).

    Returns
    -------
    fields : dict
        ``type``, ``participant``, ``device``, ``manufacturer``,
        ``channels`` (a list of ``{"label", "unit", "type"}``) and, when given, ``averaging_s``.
    """
    if kind not in KIND_TYPES:
        raise ValueError(f"Invalid value for 'kind': expected one of {', '.join(KIND_TYPES)}, but got {kind!r}.")
    default_unit = {"rr": "ms", "hr": "bpm", "eda": "microsiemens", "ecg": "uV", "ppg": "au"}[kind]
    typ = KIND_TYPES[kind]
    return {
        "type": typ,
        "participant": participant,
        "device": device,
        "manufacturer": manufacturer,
        "channels": [{"label": label or typ, "unit": unit or default_unit, "type": typ}],
        **({"averaging_s": f"{float(averaging_s):g}"} if averaging_s is not None else {}),
    }
