"""Roster: automatic assignment (desc, per-device fallback), roster files (name / source_id / hostname), validation."""

from __future__ import annotations

import logging

import pytest

from attune_monitor.acquisition.convention import describe, is_marker_stream
from attune_monitor.acquisition.roster import Roster, RosterError, assign, device_id, device_participant

_CH = "<channels><channel><label>{lbl}</label>{unit}<type>{lbl}</type></channel></channels>"


def header(name, typ, source_id, *, host="labpc", participant=None, unit=None, srate=0):
    """A stream header as liblsl writes it (the XML ``describe`` reads)."""
    desc = (f"<participant>{participant}</participant>" if participant else "") + _CH.format(
        lbl=typ, unit=f"<unit>{unit}</unit>" if unit else "")
    return (f"<?xml version='1.0'?><info><name>{name}</name><type>{typ}</type><channel_count>1</channel_count>"
            f"<nominal_srate>{srate}</nominal_srate><channel_format>float32</channel_format>"
            f"<source_id>{source_id}</source_id><uid>uid-{source_id}</uid><hostname>{host}</hostname>"
            f"<desc>{desc}</desc></info>")


def d(*a, **k):
    return describe(header(*a, **k))


def test_participant_from_desc():
    streams = [d("A RR", "RR", "a-rr", participant="P1", unit="ms"), d("A EDA", "EDA", "a-eda", participant="P1"),
               d("B RR", "RR", "b-rr", participant="P2", unit="ms"), d("Markers", "Markers", "m")]
    a = assign(streams)
    assert a.participants == ["P1", "P2"]
    assert a.primary("P1", "hr").descriptor.source_id == "a-rr"
    assert a.primary("P1", "eda").descriptor.source_id == "a-eda"
    assert a.primary("P2", "eda") is None
    assert {s.source for s in a.streams} == {"desc"}
    assert [(x.source_id, "event / marker stream" in r) for x, r in a.unassigned] == [("m", True)]
    assert a.warnings == []


@pytest.mark.parametrize("typ,fmt,marker", [
    ("Markers", "string", True), ("Events", "float32", True), ("StringMarker", "string", True),
    ("Triggers", "string", True),          # any string stream: text events
    ("EEG", "float32", False), ("Accelerometer", "float32", False),
    ("AttuneEvents", "string", False), ("Synchrony", "float32", False),   # another Attune's derived streams
])
def test_marker_streams_are_told_apart(typ, fmt, marker):
    """Event / marker streams (kept by a recording) vs other non-physiology streams (left out)."""
    desc = describe(header("X", typ, "x").replace("<channel_format>float32", f"<channel_format>{fmt}"))
    assert is_marker_stream(desc) is marker
    (_, reason), = assign([desc]).unassigned
    assert ("event / marker stream" in reason) is marker


def test_fallback_one_participant_per_device_with_warning(caplog):
    streams = [d("Polar H10 85530429", "RR", "85530429-rr", host="pc1"),
               d("Polar H10 85530429", "ECG", "85530429-ecg", host="pc1", srate=130),
               d("Polar H10 9A1B2C3D", "HR", "9a1b2c3d-hr", host="pc1"),
               d("E4_Bvp_A02F5C", "BVP", "e4-bvp", host="pc2"), d("E4_Gsr_A02F5C", "GSR", "e4-gsr", host="pc2")]
    with caplog.at_level(logging.WARNING, logger="attune_monitor.acquisition.roster"):
        a = assign(streams)
    assert device_id(streams[0]) == "Polar H10 85530429" and device_id(streams[3]) == "E4 A02F5C"
    # natural order: the serial "9A1B.." sorts before "85530429" (9 < 85530429)
    assert a.participants == ["E4 A02F5C@pc2", "Polar H10 9A1B2C3D@pc1", "Polar H10 85530429@pc1"]
    # the H10's RR and ECG are one person's heart: RR is preferred, ECG kept as an alternate, no ambiguity
    p = "Polar H10 85530429@pc1"
    assert a.primary(p, "hr").kind == "rr"
    assert [s.kind for s in a.streams if s.participant == p and not s.primary] == ["ecg"]
    assert a.primary("E4 A02F5C@pc2", "eda").kind == "eda" and a.primary("E4 A02F5C@pc2", "hr").kind == "ppg"
    assert a.ambiguities == []
    assert len(a.warnings) == 3 and all("names no participant" in w for w in a.warnings)
    assert sum("names no participant" in r.message for r in caplog.records) == 3


def test_ambiguity_is_reported_with_candidates_and_resolved_deterministically():
    streams = [d("Strap B", "RR", "sb", participant="P1"), d("Strap A", "RR", "sa", participant="P1")]
    for order in (streams, streams[::-1]):
        a = assign(order)
        assert a.primary("P1", "hr").descriptor.source_id == "sa"  # by name, whatever the order
        (amb,) = a.ambiguities
        assert [c.source_id for c in amb.candidates] == ["sa", "sb"]
        assert "'Strap A'" in a.warnings[0] and "'Strap B'" in a.warnings[0] and "primary = true" in a.warnings[0]
    # the roster settles it
    r = Roster.from_dict({"participant": [{"id": "P1", "streams": [{"source_id": "sb", "primary": True},
                                                                   {"source_id": "sa"}]}]})
    a = r.assign(streams)
    assert a.primary("P1", "hr").descriptor.source_id == "sb" and a.ambiguities == []


ROSTER = """
version = 1

[[participant]]
id = "Client"
label = "the client"

  [[participant.streams]]
  name = "polar h10 8553*"      # globs, case-insensitive

  [[participant.streams]]
  source_id = "shimmer-*"
  unit = "nS"

[[participant]]
id = "Therapist"
streams = [ { hostname = "pc-2" }, { name = "Data", type = "Data", kind = "eda" } ]

[[ignore]]
name = "*ACC*"
"""


def test_roster_file_by_name_source_id_hostname_overrides_auto(tmp_path, caplog):
    path = tmp_path / "roster.toml"
    path.write_text(ROSTER)
    roster = Roster.load(path)
    streams = [
        d("Polar H10 85530429", "RR", "x1", host="pc-1", participant="P7"),  # roster beats desc, with a warning
        d("Shimmer EDA", "GSR", "shimmer-77", host="pc-1", unit="uS"),  # unit overridden by the roster
        d("Some HR", "HR", "hr-9", host="pc-2"),  # by hostname
        d("Data", "Data", "raw-1", host="pc-3"),  # kind given by the roster
        d("Polar H10 85530429 ACC", "ACC", "acc", host="pc-1"),  # ignored
        d("Other RR", "RR", "o-rr", host="pc-9", participant="P3"),  # not in the roster: desc decides
    ]
    a = roster.assign(streams)
    who = {s.descriptor.source_id: (s.participant, s.kind, s.source) for s in a.streams}
    assert who == {"x1": ("Client", "rr", "roster"), "shimmer-77": ("Client", "eda", "roster"),
                   "hr-9": ("Therapist", "hr", "roster"), "raw-1": ("Therapist", "eda", "roster"),
                   "o-rr": ("P3", "rr", "desc")}
    shimmer = a.primary("Client", "eda").descriptor
    assert shimmer.unit == "nS" and shimmer.scale == pytest.approx(1e-3)
    assert [(x.source_id, r) for x, r in a.unassigned] == [("acc", "ignored by the roster")]
    assert any("says participant 'P7'" in w and "using the roster" in w for w in a.warnings)
    assert a.participants == ["Client", "P3", "Therapist"]


def test_roster_save_load_round_trip(tmp_path):
    r1 = Roster.from_dict(__import__("tomllib").loads(ROSTER))
    r2 = Roster.load(r1.save(tmp_path / "r.toml"))
    assert r2.to_toml() == r1.to_toml()
    assert [(p.id, p.label, p.streams) for p in r2.participants] == [(p.id, p.label, p.streams)
                                                                     for p in r1.participants]
    assert r2.ignore == r1.ignore
    # freezing an automatic assignment gives a roster that reproduces it exactly
    streams = [d("Polar H10 85530429", "RR", "p-rr", host="pc1"), d("E4_Gsr_A02F5C", "GSR", "e4", host="pc2"),
               d("X", "RR", "x", participant="P1"), d("Y", "RR", "y", participant="P1")]
    auto = assign(streams)
    frozen = Roster.load(Roster.from_assignment(auto).save(tmp_path / "frozen.toml")).assign(streams)
    assert [(s.participant, s.kind, s.primary, s.descriptor.source_id) for s in frozen.streams] == \
        [(s.participant, s.kind, s.primary, s.descriptor.source_id) for s in auto.streams]
    assert frozen.ambiguities == [] and {s.source for s in frozen.streams} == {"roster"}


@pytest.mark.parametrize("text, match", [
    ('[[participant]]\nid = "P1"\nstreamz = []', r"Unknown key 'streamz' in participant 1 .*expected one of id"),
    ('[[participant]]\nlabel = "x"', r"Missing 'id' in participant 1.*id = \"P1\""),
    ('[[participant]]\nid = "P1"\n[[participant]]\nid = "P1"', r"Duplicate participant id 'P1'"),
    ('[[participant]]\nid = "P1"\nstreams = [{ kind = "rr" }]', r"give at least one of name, source_id"),
    ('[[participant]]\nid = "P1"\nstreams = [{ name = "x", kind = "emg" }]',
     r"Invalid value for 'kind' .*expected one of rr, hr, eda, ecg, ppg, but got 'emg'"),
    ('[[participant]]\nid = "P1"\nstreams = [{ name = "x", kind = "eda", unit = "furlongs" }]',
     r"'furlongs' is not a known unit for kind 'eda'"),
    ('[[participant]]\nid = "P1"\nstreams = [{ name = "x", primary = "yes" }]', r"expected true or false"),
    ('[participant]\nid = "P1"', r"\[\[participant\]\] table \(double brackets\)"),
    ('[[participant]]\nid = P1', r"is not valid TOML"),
    ('version = 2', r"Invalid value for 'version'.*expected 1, but got 2"),
    ('[[ignore]]\nname = "x"\nkind = "rr"', r"Unknown key 'kind' in ignore rule 1"),
])
def test_invalid_roster_files_are_explained(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RosterError, match=match):
        Roster.load(path)


def test_missing_roster_file_is_explained(tmp_path):
    with pytest.raises(RosterError, match=r"does not exist; check the path"):
        Roster.load(tmp_path / "nope.toml")


def test_device_participant_needs_no_serial():
    x = d("MyBand HR", "HR", "", host="")
    assert device_participant(x) == "MyBand"


def test_frozen_roster_tells_apart_streams_sharing_a_default_source_id(tmp_path):
    # mne-lsl players left at their default source_id "MNE-LSL": a rule on the source_id alone matched both
    streams = [d("ecg-anna", "ECG", "MNE-LSL", participant="Anna"), d("ecg-ben", "ECG", "MNE-LSL", participant="Ben")]
    auto = assign(streams)
    frozen = Roster.load(Roster.from_assignment(auto).save(tmp_path / "frozen.toml")).assign(streams)
    assert {(s.descriptor.name, s.participant) for s in frozen.streams} == {("ecg-anna", "Anna"), ("ecg-ben", "Ben")}
    assert frozen.ambiguities == []
    # an assigned stream is found by its identity key (what the live session keys receivers by) and by its uid
    ben = streams[1]
    assert auto.for_stream(ben.key).descriptor.name == "ecg-ben"
    assert auto.for_stream("MNE-LSL") is None


def test_attune_roster_stream_is_not_a_marker_stream():
    # the roster a recording keeps (acquisition.recorder) is a string stream, but no event of the session
    def text_stream(*a):
        return describe(header(*a).replace("float32", "string"))

    assert not is_marker_stream(text_stream("Attune roster", "AttuneRoster", "attune-roster"))
    assert is_marker_stream(text_stream("Notes", "Notes", "n"))  # an unknown type with text samples: events
