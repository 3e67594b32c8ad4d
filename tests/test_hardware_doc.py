"""hardware.md's stream table says what Attune's own code does with each device's streams.

Each row of the machine-checked table (between ``<!-- streams-table -->`` markers) is turned into an LSL
stream header and run through :func:`attune_monitor.acquisition.convention.describe`; the "Kind" column must be what
Attune recognises, a declared unit must be one Attune converts. The bridge rows are compared with the
headers ``attune bridge ble-hr`` really publishes, and the PolarBand2lsl / spectHR rows with the real
XDF recordings they come from.
"""

from __future__ import annotations

import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from attune_monitor.acquisition.convention import describe

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "hardware.md"
COLUMNS = ["Device", "Route to LSL", "LSL name", "LSL type", "Channel labels", "Declared unit", "Kind",
           "Participant"]


def _rows() -> list[dict]:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- streams-table -->\n(.*?)\n<!-- /streams-table -->", text, re.S)
    assert m, "hardware.md lost its machine-checked stream table"
    lines = [ln.strip() for ln in m.group(1).splitlines() if ln.strip()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == COLUMNS
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == len(COLUMNS), ln
        rows.append(dict(zip(COLUMNS, cells)))
    return rows


ROWS = _rows()


def _none(cell: str) -> str | None:
    return None if cell in ("—", "-", "") else cell


def _header(row: dict, participant: str | None = None) -> str:
    info = ET.Element("info")
    ET.SubElement(info, "name").text = row["LSL name"]
    ET.SubElement(info, "type").text = row["LSL type"]
    desc = ET.SubElement(info, "desc")
    if participant:
        ET.SubElement(desc, "participant").text = participant
    labels = _none(row["Channel labels"])
    if labels:
        chans = ET.SubElement(desc, "channels")
        for label in labels.split(", "):
            ch = ET.SubElement(chans, "channel")
            ET.SubElement(ch, "label").text = label
            if _none(row["Declared unit"]):
                ET.SubElement(ch, "unit").text = row["Declared unit"]
    return ET.tostring(info, encoding="unicode")


def test_table_covers_every_route_in_the_issue():
    routes = " ".join(r["Route to LSL"] for r in ROWS)
    for route in ("attune bridge ble-hr", "PolarBand2lsl", "spectHR", "EmotiBit Oscilloscope", "E4 streaming server",
                  "OpenSignals"):
        assert route in routes
    text = DOC.read_text(encoding="utf-8")
    for topic in ("Consensys", "Movesense", "Recommended kits", "warm-up", "Bluetooth range", "4 Hz",
                  "Clock sync", "--lsl-scope link", "privacy", "roster", "canonical units".title()):
        assert topic.lower() in text.lower(), topic


@pytest.mark.parametrize("row", ROWS, ids=[f"{r['Route to LSL']}:{r['LSL name']}" for r in ROWS])
def test_kind_column_is_what_attune_recognises(row):
    d = describe(_header(row))
    assert d.kind == _none(row["Kind"]), row
    if d.kind in ("rr", "hr", "eda", "ecg") and _none(row["Declared unit"]):
        assert d.scale is not None, f"Attune does not understand the declared unit {row['Declared unit']!r}"


def test_participant_column_desc_only_for_streams_that_carry_one():
    for row in ROWS:
        assert row["Participant"] in ("desc", "device"), row
        # Only our own bridge writes a participant element; vendor apps do not.
        assert (row["Participant"] == "desc") == (row["Route to LSL"] == "attune bridge ble-hr"), row


def test_bridge_rows_match_the_headers_the_bridge_publishes():
    from attune_monitor.acquisition.ble_hr import HeartRateBridge

    bridge = HeartRateBridge("C8:2E:1A:00:11:22", "P1", client_factory=lambda a, c: None,
                             source_id=f"test-hwdoc-{uuid.uuid4()}")
    bridge._make_outlets("Polar H10 8554112A")
    try:
        published = {}
        for outlet in (bridge.rr_outlet, bridge.hr_outlet):
            d = describe(outlet.get_info().as_xml())
            published[d.name] = d
    finally:
        bridge.close()
    rows = [r for r in ROWS if r["Route to LSL"] == "attune bridge ble-hr"]
    assert {r["LSL name"] for r in rows} == set(published)
    for r in rows:
        d = published[r["LSL name"]]
        assert (d.type, d.kind, d.participant, d.unit) == (r["LSL type"], r["Kind"], "P1", r["Declared unit"])
        assert [c.label for c in d.channels] == r["Channel labels"].split(", ")
        assert (d.manufacturer, d.device) == ("Polar", "H10")


@pytest.mark.realdata
def test_polar_ecg_rows_match_real_recordings(realdata):
    pyxdf = pytest.importorskip("pyxdf")
    seen = {}
    for path in (realdata / "PolarBand2lsl" / "data.xdf", realdata / "spectHR" / "sub001.xdf"):
        streams, _ = pyxdf.load_xdf(str(path))
        for s in streams:
            d = describe(s["info"])
            seen[d.name] = d
    for r in ROWS:
        if r["Route to LSL"] not in ("PolarBand2lsl", "spectHR"):
            continue
        d = seen[r["LSL name"]]
        assert d.type == r["LSL type"] and d.kind == _none(r["Kind"]) and d.participant is None
        assert d.unit == _none(r["Declared unit"])
        if d.kind == "ecg":
            assert d.srate == 130.0 and d.scale == pytest.approx(1e-3)  # 130 Hz microvolts, as the doc says


def test_roster_example_loads_and_assigns_as_described(tmp_path):
    from attune_monitor.acquisition.convention import StreamDescriptor
    from attune_monitor.acquisition.roster import Roster

    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"## 8\. Writing a roster.*?```toml\n(.*?)```", text, re.S)
    assert m, "the roster example in section 8 is missing"
    path = tmp_path / "roster.toml"
    path.write_text(m.group(1), encoding="utf-8")
    roster = Roster.load(path)

    def who(**fields):
        hit = roster.match(StreamDescriptor(**fields))
        return (hit[0].id, hit[1].kind) if hit else None

    assert who(name="P1 Polar H10 RR", type="RR") == ("P1", None)
    assert who(name="EDA", type="EDA", source_id="MD-V5-0000123-A") == ("P1", None)
    assert who(name="P2 Polar H10 HR", type="HR") == ("P2", None)
    assert who(name="Shimmer_5E2A", type="GSR", hostname="lab-pc-2") == ("P2", "eda")
    assert who(name="EDA", type="EDA", source_id="MD-V5-0000999") is None  # someone else's EmotiBit
    assert roster.ignored(StreamDescriptor(name="ACC_X", type="AccelerometerX"))


def test_the_heart_kinds_preference_is_stated_as_the_roster_applies_it():
    """hardware.md said "RR is preferred, then ECG, PPG, HR" while the code prefers the device's HR over PPG."""
    from attune_monitor.acquisition.roster import KIND_PREFERENCE

    text = " ".join(DOC.read_text(encoding="utf-8").split())
    m = re.search(r"\(RR is preferred, then ([^)]*)\)", text)
    assert m, "hardware.md no longer says which heart kind is preferred"
    stated = [w for w in re.findall(r"\b(ECG|HR|PPG)\b", m.group(1))]
    code = sorted((k for k in KIND_PREFERENCE if k not in ("rr", "eda")), key=KIND_PREFERENCE.get)
    assert [w.lower() for w in stated] == code, (stated, code)
