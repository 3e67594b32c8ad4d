"""Recognition of stream headers found in the wild (acquisition.convention)."""

from __future__ import annotations

import pytest

from acquisition.convention import describe, desc_fields, kind_from_type, unit_scale


def _xml(name, typ, unit=None, label=None, participant=None, srate=0):
    ch = f"<channels><channel><label>{label or typ}</label>{f'<unit>{unit}</unit>' if unit else ''}</channel></channels>"
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
