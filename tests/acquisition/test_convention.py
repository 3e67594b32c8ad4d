"""Recognition of stream headers found in the wild (acquisition.convention)."""

from __future__ import annotations

import numpy as np
import pytest

from attune_monitor.acquisition.convention import desc_fields, describe, kind_from_type, unit_conversion, unit_scale


def _xml(name, typ, unit=None, label=None, participant=None, srate=0):
    unit_xml = f"<unit>{unit}</unit>" if unit else ""
    ch = f"<channels><channel><label>{label or typ}</label>{unit_xml}</channel></channels>"
    who = f"<participant>{participant}</participant>" if participant else ""
    return (f"<info><name>{name}</name><type>{typ}</type><channel_count>1</channel_count>"
            f"<nominal_srate>{srate}</nominal_srate><source_id>x</source_id><desc>{who}{ch}</desc></info>")


@pytest.mark.parametrize("typ,name,kind", [
    ("RR", "P1 H10 RR", "rr"), ("IBI", "E4 IBI", "rr"), ("HeartRate", "EmotiBit HR", "hr"), ("HR", "x", "hr"),
    ("GSR", "Shimmer", "eda"), ("EDA", "x", "eda"), ("BVP", "E4 BVP", "ppg"), ("PPG", "x", "ppg"), ("ECG", "x", "ecg"),
    ("", "Polar H10 ECG", "ecg"), ("00:07:80:4D:2E:76", "OpenSignals", None),
    ("Markers", "HR markers", None), ("Synchrony", "Attune synchrony hr", None), ("EEG", "BioSemi", None),
])
def test_kind_from_type_and_name(typ, name, kind):
    assert kind_from_type(typ, name) == kind


def test_units_are_normalised():
    d = describe(_xml("P1 RR", "RR", unit="ms", participant="P1"))
    assert (d.kind, d.participant, d.scale, d.modality) == ("rr", "P1", 1e-3, "hr")
    assert describe(_xml("EDA", "EDA", unit="µS")).scale == 1.0
    assert describe(_xml("EDA", "GSR", unit="nanosiemens")).scale == pytest.approx(1e-3)
    assert describe(_xml("ECG", "ECG", unit="microvolts")).scale == pytest.approx(1e-3)
    assert unit_scale("rr", "furlongs") is None


@pytest.mark.parametrize("kind,values,scale,unit", [
    ("rr", [812.0, 790.0, 805.0], 1e-3, "ms"), ("rr", [0.81, 0.79], 1.0, "s"),
    ("eda", [2.1, 2.3], 1.0, "uS"), ("eda", [2100.0, 2300.0], 1e-3, "nS"), ("hr", [1.2, 1.25], 60.0, "Hz"),
])
def test_units_guessed_from_magnitude_when_undeclared(kind, values, scale, unit):
    d = describe(_xml("s", kind.upper()))
    assert d.scale is None
    assert d.guess_scale(values) == pytest.approx(scale) and d.unit == unit and d.unit_guessed


def test_desc_fields_validates_kind():
    f = desc_fields("rr", "P1", device="H10", manufacturer="Polar")
    assert f["type"] == "RR" and f["channels"][0]["unit"] == "ms"
    with pytest.raises(ValueError, match="expected one of rr, hr, eda, ecg, ppg, but got 'emg'"):
        desc_fields("emg", "P1", device="x", manufacturer="y")


def _shimmer_header(channels):
    chans = "".join(f"<channel><label>{lbl}</label><unit>{unit}</unit></channel>" for lbl, unit in channels)
    return (f"<?xml version='1.0'?><info><name>Shimmer_A1B2</name><type>GSR</type><channel_count>{len(channels)}"
            f"</channel_count><nominal_srate>128</nominal_srate><channel_format>float32</channel_format>"
            f"<source_id>shimmer-a1b2</source_id><desc><channels>{chans}</channels></desc></info>")


def test_eda_prefers_conductance_and_reads_resistance_as_its_reciprocal():
    both = describe(_shimmer_header([("Timestamp", "mSecs"), ("GSR_Skin_Resistance_CAL", "kOhms"),
                                     ("GSR_Skin_Conductance_CAL", "uSiemens")]))
    assert both.kind == "eda" and both.channel_index == 2 and not both.reciprocal and both.scale == 1.0
    only_r = describe(_shimmer_header([("Timestamp", "mSecs"), ("GSR_Skin_Resistance_CAL", "kOhms")]))
    assert only_r.channel_index == 1 and only_r.reciprocal and only_r.unit == "kOhms"
    # 250 kOhm = 4 uS; 0 or negative: no conductance (NaN)
    np.testing.assert_allclose(only_r.to_canonical([250.0, 1000.0, 0.0, -3.0]), [4.0, 1.0, np.nan, np.nan])
    for unit, raw, us in (("Ohm", 250_000.0, 4.0), ("MOhm", 0.25, 4.0), ("kΩ", 500.0, 2.0)):
        d = describe(_shimmer_header([("GSR", unit)]))
        assert d.reciprocal and d.to_canonical([raw])[0] == pytest.approx(us), unit
    assert unit_conversion("eda", "kohm") == (1e3, True) and unit_conversion("eda", "uS") == (1.0, False)
    assert unit_conversion("hr", "kohm") == (None, False)  # resistance means nothing for heart rate


def test_roster_unit_can_be_a_resistance():
    from attune_monitor.acquisition.roster import Roster, assign

    d = describe(_shimmer_header([("GSR", "")]))   # no unit declared
    roster = Roster.from_dict({"participant": [{"id": "P1", "streams": [{"name": "Shimmer_A1B2", "kind": "eda",
                                                                          "unit": "kOhm"}]}]})
    a = assign([d], roster)
    got = a.primary("P1", "eda").descriptor
    assert got.reciprocal and got.scale == 1e3 and got.to_canonical([125.0])[0] == pytest.approx(8.0)


def test_recorded_resistance_is_read_as_conductance(tmp_path):
    from attune_monitor.acquisition.files import load_recording
    from attune_monitor.acquisition.xdf_writer import XdfWriter

    with XdfWriter(tmp_path / "r.xdf", fsync=False) as w:
        sid = w.add_stream(_shimmer_header([("GSR_Skin_Resistance_CAL", "kOhms")]))
        w.write_samples(sid, 100.0 + np.arange(4) / 128, np.array([[250.0], [500.0], [0.0], [125.0]]))
    (s,) = load_recording(tmp_path / "r.xdf").streams
    np.testing.assert_allclose(s.signal, [4.0, 2.0, np.nan, 8.0])


@pytest.mark.parametrize("declared,kind,expected", [
    (None, "HR", 4.0),        # device HR that does not say: the documented default
    ("10", "HR", 10.0),       # an E4 export's HR.csv: 10 s spans
    ("0", "HR", 0.0),         # beat by beat
    ("soon", "HR", 4.0),      # not a number: the default, not a crash
    ("-3", "HR", 4.0),
    (None, "RR", 0.0),        # beat-by-beat kinds are never dated back
    ("10", "EDA", 0.0),
])
def test_device_hr_declares_its_averaging_span(declared, kind, expected):
    from attune_monitor.acquisition.convention import DEFAULT_HR_AVERAGING_S

    extra = f"<averaging_s>{declared}</averaging_s>" if declared is not None else ""
    d = describe(_xml("P1 watch", kind).replace("<desc>", f"<desc>{extra}"))
    assert d.hr_averaging_s == expected
    assert DEFAULT_HR_AVERAGING_S == 4.0


def test_averaging_span_round_trips_through_a_written_header():
    from attune_monitor.acquisition.xdf_writer import stream_header_xml

    fields = desc_fields("hr", "P1", device="Verity Sense", manufacturer="Polar", averaging_s=4)
    xml = stream_header_xml(name="P1 HR", type="HR", channel_count=1, nominal_srate=1.0, desc=fields)
    assert describe(xml).averaging_s == 4.0
    assert "averaging_s" not in desc_fields("rr", "P1", device="H10", manufacturer="Polar")


def test_e4_export_hr_is_declared_as_ten_second_averages(tmp_path):
    """Empatica documents HR.csv as averages over 10 s spans; the loader says so, and analysis dates it back."""
    from attune_monitor.acquisition.files import E4_HR_AVERAGING_S, load_e4_folder
    from attune_monitor.acquisition.sources import choose_inputs

    folder = tmp_path / "P1"
    folder.mkdir()
    (folder / "HR.csv").write_text("1560279835.0\n1.0\n" + "\n".join(["72.0"] * 30) + "\n")
    (folder / "EDA.csv").write_text("1560279825.0\n4.0\n" + "\n".join(["2.0"] * 160) + "\n")
    rec = load_e4_folder(folder)
    kinds = {s.descriptor.kind: s.descriptor for s in rec.streams}
    assert E4_HR_AVERAGING_S == 10.0
    assert kinds["hr"].hr_averaging_s == 10.0 and kinds["eda"].hr_averaging_s == 0.0
    chosen, _ = choose_inputs(rec.streams)
    assert {spec.kind: spec.averaging_s for spec, _ in chosen} == {"hr": 10.0, "eda": 0.0}


# --------------------------------------------------------------------------- units: SI, prefixes, MNE's codes
@pytest.mark.parametrize("text,unit,factor", [
    ("S", "S", 1.0), ("mS", "S", 1e-3), ("µS", "S", 1e-6), ("μS", "S", 1e-6), ("uS", "S", 1e-6), ("nS", "S", 1e-9),
    ("microsiemens", "S", 1e-6), ("micro-siemens", "S", 1e-6), ("uSiemens", "S", 1e-6), ("Siemens", "S", 1.0),
    ("V", "V", 1.0), ("mV", "V", 1e-3), ("µV", "V", 1e-6), ("uV", "V", 1e-6), ("millivolts", "V", 1e-3),
    ("volts", "V", 1.0), ("kOhm", "ohm", 1e3), ("KOhms", "ohm", 1e3), ("MOhm", "ohm", 1e6), ("Ω", "ohm", 1.0),
    ("kΩ", "ohm", 1e3), ("s", "s", 1.0), ("ms", "s", 1e-3), ("mSecs", "s", 1e-3), ("seconds", "s", 1.0),
    ("Hz", "Hz", 1.0), ("bpm", "bpm", 1.0), ("1/min", "bpm", 1.0), ("beats per minute", "bpm", 1.0),
])
def test_si_units_with_prefixes_are_read(text, unit, factor):
    from attune_monitor.acquisition.convention import read_unit

    got = read_unit(text)
    assert got is not None and got[0] == unit and got[1] == pytest.approx(factor), text


@pytest.mark.parametrize("text", ["", None, "furlongs", "0", "-6", "none", "MOhmz", "kS/m"])
def test_what_is_not_an_si_unit_is_not_read_as_one(text):
    from attune_monitor.acquisition.convention import read_unit

    assert read_unit(text) is None


@pytest.mark.parametrize("kind,unit,scale,reciprocal", [
    # EDA to uS: siemens and its prefixes, resistance as the reciprocal
    ("eda", "S", 1e6, False), ("eda", "mS", 1e3, False), ("eda", "µS", 1.0, False), ("eda", "nS", 1e-3, False),
    ("eda", "kOhm", 1e3, True), ("eda", "MOhm", 1.0, True), ("eda", "Ohm", 1e6, True),
    # ECG to mV
    ("ecg", "V", 1e3, False), ("ecg", "mV", 1.0, False), ("ecg", "µV", 1e-3, False), ("ecg", "nV", 1e-6, False),
    # RR to s, HR to bpm
    ("rr", "s", 1.0, False), ("rr", "ms", 1e-3, False), ("rr", "µs", 1e-6, False),
    ("hr", "bpm", 1.0, False), ("hr", "Hz", 60.0, False), ("hr", "mHz", 0.06, False),
    # a unit of another quantity is no unit of the kind
    ("eda", "V", None, False), ("ecg", "S", None, False), ("hr", "kOhm", None, False), ("rr", "V", None, False),
])
def test_units_convert_to_the_canonical_unit(kind, unit, scale, reciprocal):
    got = unit_conversion(kind, unit)
    assert got[1] == reciprocal
    assert got[0] == (pytest.approx(scale) if scale is not None else None), (kind, unit)


def _mne_lsl_header(name, ch_type, unit, fiff_kind, stype=None, label="X"):
    """A header as mne-lsl's StreamInfo.set_channel_info writes it (unit: MNE's unit-multiplier code)."""
    return (f"<info><name>{name}</name><type>{stype if stype is not None else ch_type}</type>"
            "<channel_count>1</channel_count><channel_format>double64</channel_format><source_id>MNE-LSL"
            f"</source_id><nominal_srate>250</nominal_srate><desc><channels><channel><label>{label}</label>"
            f"<type>{ch_type}</type><unit>{unit}</unit><kind>{fiff_kind}</kind><coil_type>0</coil_type>"
            "<range_cal>1.0</range_cal></channel></channels></desc></info>")


@pytest.mark.parametrize("ch_type,code,fiff_kind,kind,unit,scale", [
    ("ecg", "0", 402, "ecg", "V", 1e3),        # MNE stores ECG in volts: 1 mV arrives as 0.001
    ("ecg", "-6", 402, "ecg", "µV", 1e-3),     # a player after set_channel_units("microvolts")
    ("ecg", "-3", 402, "ecg", "mV", 1.0),
    ("gsr", "0", 1300, "eda", "S", 1e6),       # galvanic skin response in siemens: 4 uS arrives as 4e-6
    ("gsr", "-6", 1300, "eda", "µS", 1.0),
])
def test_mne_unit_codes_are_read_with_the_channel_type(ch_type, code, fiff_kind, kind, unit, scale):
    d = describe(_mne_lsl_header("P1-X", ch_type, code, fiff_kind))
    assert (d.kind, d.unit, d.declared_unit, d.unit_guessed) == (kind, unit, code, False)
    assert d.scale == pytest.approx(scale)
    raw = {"ecg": 1.2e-3, "eda": 4e-6}[kind] / 10.0 ** int(code)  # what the player sends (SI / 10^code)
    assert d.to_canonical([raw])[0] == pytest.approx({"ecg": 1.2, "eda": 4.0}[kind])


def test_mne_unit_code_of_a_channel_whose_type_has_no_unit_is_guessed_from_the_values():
    """MNE's misc has no unit: the code says nothing; EDA in siemens is then told from its magnitude."""
    d = describe(_mne_lsl_header("P2-EDA", "misc", "0", 502))
    assert d.kind == "eda" and d.scale is None and d.unit == "0"
    assert d.guess_scale([4.1e-6, 4.2e-6, 4.0e-6]) == 1e6 and d.unit == "S" and d.unit_guessed
    # the FIFF kind names the unit when the type does not (an unknown type with kind 1300: galvanic)
    d = describe(_mne_lsl_header("P2-EDA", "skin", "0", 1300, stype="EDA"))
    assert d.scale == 1e6 and d.unit == "S"


def test_ecg_in_volts_is_guessed_when_undeclared():
    d = describe(_xml("ECG", "ECG"))
    assert d.guess_scale(1e-3 * np.array([0.05, -0.1, 1.2, 0.08, -0.02])) == 1e3 and d.unit == "V"
    d = describe(_xml("ECG", "ECG"))
    assert d.guess_scale([0.05, -0.1, 1.2, 0.08, -0.02]) == 1.0 and d.unit == "mV"


def test_mne_lsl_annotation_streams_are_markers_not_ecg():
    """A player's '<name>-annotations' stream (type annotations, one float channel per description) is an event
    stream even when its name says ECG; its samples read as the descriptions (duration when it has one)."""
    from attune_monitor.acquisition.convention import is_marker_stream, marker_texts

    chans = "".join(f"<channel><label>{lbl}</label><type>annotations</type><unit>none</unit></channel>"
                    for lbl in ("rest", "task start"))
    d = describe("<info><name>P1-ECG-annotations</name><type>annotations</type><channel_count>2</channel_count>"
                 "<channel_format>double64</channel_format><source_id>MNE-LSL</source_id><nominal_srate>0"
                 f"</nominal_srate><desc><channels>{chans}</channels></desc></info>")
    assert d.kind is None and is_marker_stream(d)
    assert marker_texts(d, np.array([[0.0, -1.0], [2.5, 0.0], [0.0, 0.0], [-1.0, -1.0]])) == [
        "task start", "rest (2.5 s)", "", "rest | task start"]
    numeric = describe(_xml("trigger box", "Markers"))
    assert marker_texts(numeric, [[3.0], [12.0]]) == ["3", "12"]
    strings = describe(_xml("PsychoPy", "Markers").replace("<channel_count>1", "<channel_count>2"))
    assert marker_texts(strings, [["block", "1"]]) == ["block | 1"]


@pytest.mark.parametrize("stype,labels,types,kind", [
    ("", ["EXG1", "EXG2"], ["ecg", "gsr"], "ecg"),   # a Raw with several channel types: stream type empty
    ("", ["A", "B"], ["misc", "gsr"], "eda"),
    ("", ["A"], ["stim"], None),
])
def test_kind_from_mne_channel_types_when_the_stream_type_is_empty(stype, labels, types, kind):
    assert kind_from_type(stype, "Player", labels, types) == kind


def test_identity_is_name_type_source_id_and_host():
    from attune_monitor.acquisition.convention import identity_key

    a = describe(_mne_lsl_header("P1-ECG", "ecg", "0", 402))
    b = describe(_mne_lsl_header("P2-ECG", "ecg", "0", 402))
    assert a.source_id == b.source_id == "MNE-LSL" and a.key != b.key
    assert a.identity == ("P1-ECG", "ecg", "MNE-LSL", "")
    # fields are escaped: different identities never share a key
    assert identity_key("a|b", "t", "s", "h") != identity_key("a", "b|t", "s", "h")
    assert identity_key("a", "t", "s@h", "") != identity_key("a", "t", "s", "h")


def _hdr(name, typ, srate, fmt="float32"):
    return describe(f"<info><name>{name}</name><type>{typ}</type><channel_count>1</channel_count>"
                    f"<nominal_srate>{srate}</nominal_srate><channel_format>{fmt}</channel_format>"
                    f"<source_id>s</source_id><hostname>pc</hostname><desc/></info>")


@pytest.mark.parametrize("name, typ, srate, fmt, refused", [
    ("P1 ECG", "ECG", 130, "float32", None),
    ("P1 ECG", "ECG", 10_000, "float32", None),            # the top of what an ECG amplifier sends
    ("P1 ECG", "ECG", 1e6, "float32", "implausible rate"),
    ("P1 EDA", "EDA", 1e8, "float32", "implausible rate"),   # 300 s of it were 279 GiB of ring buffer
    ("P1 EDA", "EDA", float("inf"), "float32", "implausible rate"),
    ("P1 EDA", "EDA", -4, "float32", "implausible rate"),
    ("P1 RR", "RR", 0, "string", "carries text"),            # not a marker stream either
    ("Task", "Markers", 0, "string", None),
    ("Task", "Markers", 1e6, "string", "implausible rate"),
    ("EEG", "EEG", 1e6, "float32", None),                    # not used by Attune: nothing to refuse
])
def test_streams_attune_cannot_believe_are_refused_with_a_reason(name, typ, srate, fmt, refused):
    from attune_monitor.acquisition.convention import is_marker_stream, rate_is_implausible, unusable_reason

    d = _hdr(name, typ, srate, fmt)
    why = unusable_reason(d)
    assert (why is None) == (refused is None) and (refused is None or refused in why), why
    if why is not None:
        assert name in why and ("Fix the nominal_srate" in why or "float32 or double64" in why)
    assert is_marker_stream(d) == (typ == "Markers")
    assert rate_is_implausible(d) == (refused == "implausible rate" or srate > 1e5)
