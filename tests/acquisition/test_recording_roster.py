"""A recording keeps the session's roster and unit overrides: offline, the people are the live ones.

Four LSL wearables whose headers name nobody (two heart straps, two skin sensors sending skin *resistance* in kΩ
without saying so, as a Shimmer can) are monitored with a roster that says who wears what and that the EDA is in
kOhm. The recording is then analysed and exported WITHOUT ``--roster``: two people named as live, skin conductance
at its true level (read as the unit guess would have it, kΩ are taken for nS: 20 times too low), and each person's
heart rate in the EDF under their own name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

from attune_monitor.acquisition.files import load_recording
from attune_monitor.acquisition.physiology import SimStream, simulate_session
from attune_monitor.acquisition.roster import Roster, assign, recorded_roster
from attune_monitor.acquisition.scenario import parse_scenario
from attune_monitor.dsp.quality import Quality

HR_BPM = {"P1": 58.0, "P2": 92.0}   # far apart, so that whose heart rate is whose is plain to see


@dataclasses.dataclass
class _Anonymous(SimStream):
    """A simulated device stream whose header names no participant (and, for EDA, no unit)."""

    def __post_init__(self):
        self.kind_unit = None if self.kind == "eda" else self.unit

    @property
    def desc(self) -> dict:
        chan = {"label": self.type, "type": self.type, **({"unit": self.kind_unit} if self.kind_unit else {})}
        return {"type": self.type, "manufacturer": self.manufacturer, "device": self.device, "channels": [chan]}


def _devices(prefix: str, duration_s: float):
    """The session's streams as anonymous devices: heart straps and EDA sensors with serial numbers in their
    names, EDA as skin resistance in kΩ (1000 / µS) with no unit declared."""
    people = [{"id": pid, "heart": "rr", "eda": "e4", "hr_bpm": bpm, "eda_us": 4.0 + k}
              for k, (pid, bpm) in enumerate(HR_BPM.items())]
    scenario = parse_scenario({"name": "anonymous", "duration_s": duration_s, "coupling": 0.6,
                               "participants": people})
    sim = simulate_session(scenario, seed=11, duration_s=duration_s, source_prefix=prefix)
    out = []
    for s in sim.streams:
        serial = {"P1": "8A11F0C1", "P2": "8A11F0C2"}[s.participant]
        if s.kind == "eda":
            name, values = f"{prefix} Shimmer3 GSR {serial}", (1e3 / s.values.astype(np.float64)).astype(np.float32)
        else:
            name, values = f"{prefix} Polar H10 {serial}", s.values
        fields = {f.name: getattr(s, f.name) for f in dataclasses.fields(SimStream)}
        fields.update(name=name, values=values, source_id=f"{prefix}-{serial}-{s.kind}")
        out.append(_Anonymous(**fields))
    return dataclasses.replace(sim, streams=out), sim


def _roster_toml(prefix: str) -> str:
    return "\n".join([
        "version = 1",
        '[[participant]]', 'id = "P1"', 'label = "Client"',
        f'streams = [{{ name = "{prefix} Polar H10 8A11F0C1" }}, '
        f'{{ name = "{prefix} Shimmer3 GSR 8A11F0C1", unit = "kOhm" }}]',
        '[[participant]]', 'id = "P2"',
        f'streams = [{{ name = "{prefix} Polar H10 8A11F0C2" }}, '
        f'{{ name = "{prefix} Shimmer3 GSR 8A11F0C2", unit = "kOhm" }}]',
        "",
    ])


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """`attune monitor --headless --record --roster` on the four anonymous devices (4x speed, 18 s of wall clock).

    Returns (recording path, roster path, the monitor's stdout, the simulated session, the prefix)."""
    from attune_monitor.acquisition.simulator import Simulator

    tmp = tmp_path_factory.mktemp("roster-rec")
    prefix = f"rrec-{uuid.uuid4().hex[:10]}"
    session, truth = _devices(prefix, 240.0)
    roster = tmp / "couple.toml"
    roster.write_text(_roster_toml(prefix))
    path = tmp / "session.xdf"
    sim = Simulator(session, speed=4.0)
    sim.open()
    sim.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--duration", "18", "--wait", "10",
             "--match", f"{prefix}*", "--roster", str(roster), "--record", str(path)],
            capture_output=True, text=True, timeout=60, env=os.environ.copy(), cwd=tmp)
    finally:
        sim.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "people: P1, P2" in proc.stdout, proc.stdout[-2000:]
    return path, roster, proc.stdout, truth, prefix


def test_the_recording_holds_the_roster_and_pyxdf_reads_it(recorded):
    import pyxdf

    path, _, _, _, prefix = recorded
    streams, header = pyxdf.load_xdf(str(path))
    (st,) = [s for s in streams if s["info"]["type"][0] == "AttuneRoster"]
    assert st["info"]["desc"][0]["roster_file"] == ["couple.toml"]
    roster = Roster.from_toml(st["time_series"][-1][0], source="the recorded roster")
    assert [(p.id, p.label) for p in roster.participants] == [("P1", "Client"), ("P2", None)]
    eda = [r for p in roster.participants for r in p.streams if r.kind == "eda"]
    assert len(eda) == 2 and all(r.unit == "kOhm" for r in eda)
    assert header["info"]["datetime"][0][:4].isdigit()   # the wall-clock start, as LabRecorder writes it


def test_analysis_without_roster_has_the_live_people_and_their_eda(recorded):
    from attune_monitor.ui.runner import analyze_recording

    path, _, _, truth, prefix = recorded
    rec = load_recording(path)
    assert rec.roster_source == "recorded"
    analysis = analyze_recording(rec)
    assert analysis.participants == ["P1", "P2"]
    assert analysis.streams == {"P1": [f"{prefix} Polar H10 8A11F0C1", f"{prefix} Shimmer3 GSR 8A11F0C1"],
                                "P2": [f"{prefix} Polar H10 8A11F0C2", f"{prefix} Shimmer3 GSR 8A11F0C2"]}
    q = analysis.quality["eda"]
    t = np.arange(q.shape[1]) / analysis.fs
    settled = t > 15.0
    assert np.mean(q[:, settled] == Quality.ELECTRODE_OFF) < 0.05
    level = np.nanmedian(analysis.grid["eda"][:, settled], axis=1)
    true_level = [np.median(truth.stream(who, "eda").values) for who in ("P1", "P2")]
    np.testing.assert_allclose(level, true_level, rtol=0.15)
    # the streams as their headers describe them: 4 "people" (one per device), kΩ taken for nS
    bare = load_recording(path, recorded_roster=False)
    assert bare.roster is None
    people = assign([s.descriptor for s in bare.physio_streams()]).participants
    assert len(people) == 4, people
    wrong = analyze_recording(bare).grid["eda"]   # (4 "people", n): the sensors' rows 20x too low or all missing
    levels = [np.nanmedian(row) if np.isfinite(row).any() else 0.0 for row in wrong]
    assert max(levels) < 0.2 * min(true_level), levels


def test_cli_analyze_without_roster_and_an_explicit_roster_wins(recorded, tmp_path):
    path, _, _, _, prefix = recorded
    out = tmp_path / "a.json"
    p = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "analyze", str(path), "--json", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [x["id"] for x in json.loads(out.read_text())["participants"]] == ["P1", "P2"]
    # a roster given explicitly wins where it matches: the heart straps are someone else's now
    other = tmp_path / "other.toml"
    other.write_text("\n".join([
        "version = 1",
        '[[participant]]', 'id = "Ann"', f'streams = [{{ name = "{prefix} * 8A11F0C1" }}]',
        '[[participant]]', 'id = "Bob"', f'streams = [{{ name = "{prefix} * 8A11F0C2" }}]', ""]))
    out2 = tmp_path / "b.json"
    p = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "analyze", str(path), "--roster", str(other),
                        "--json", str(out2)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert [x["id"] for x in json.loads(out2.read_text())["participants"]] == ["Ann", "Bob"]


def test_edf_export_without_roster_labels_each_heart_rate_with_its_owner(recorded, tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    path, _, _, truth, _ = recorded
    out = tmp_path / "s.edf"
    p = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "export", str(path), "--format", "edf", "--out",
                        str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    with pyedflib.EdfReader(str(out)) as f:
        labels = f.getSignalLabels()
        hr = {who: f.readSignal(next(i for i, lbl in enumerate(labels) if who in lbl and "HR" in lbl))
              for who in ("P1", "P2")}
    for who, _bpm in HR_BPM.items():
        x = hr[who][np.isfinite(hr[who]) & (hr[who] > 20)]
        assert x.size > 100, labels
        truth_hr = np.median(60.0 / np.diff(truth.latent[who]["beats"]))
        assert abs(np.median(x) - truth_hr) < 6.0, (who, np.median(x), truth_hr)
    assert np.median(hr["P1"][hr["P1"] > 20]) < np.median(hr["P2"][hr["P2"] > 20]) - 15


def test_recorded_roster_freezes_live_names_and_user_overrides():
    """Unit tests of the freezing itself: exact (escaped) rules, the session's kinds, the user's units and labels."""
    from attune_monitor.acquisition.convention import describe

    def hdr(name, typ, sid, unit=None, participant=None):
        desc = (f"<participant>{participant}</participant>" if participant else "") + (
            f"<channels><channel><label>{typ}</label>{f'<unit>{unit}</unit>' if unit else ''}</channel></channels>")
        return describe(f"<info><name>{name}</name><type>{typ}</type><channel_count>1</channel_count>"
                        f"<nominal_srate>4</nominal_srate><channel_format>float32</channel_format>"
                        f"<source_id>{sid}</source_id><hostname>lab-pc</hostname><desc>{desc}</desc></info>")

    streams = [hdr("Strap [1] *A*", "RR", "s1", "ms"), hdr("GSR 1", "EDA", "g1"), hdr("Polar H10 9A1B2C3D", "HR", "h2"),
               hdr("Band", "EDA", "b3", participant="Carol"), hdr("Noise", "EDA", "n9")]
    user = Roster.from_toml('\n'.join([
        'version = 1', '[[participant]]', 'id = "P1"', 'label = "Client"',
        'streams = [{ name = "Strap*" }, { source_id = "g1", unit = "nS" }]', '[[ignore]]', 'name = "Noise"', '']))
    live = assign(streams, user)
    frozen = recorded_roster(live, user)
    again = Roster.from_toml(frozen.to_toml())
    assert [(p.id, p.label) for p in again.participants] == [
        ("Carol", None), ("P1", "Client"), ("Polar H10 9A1B2C3D@lab-pc", None)]
    # the same assignment from the frozen roster alone, units included, and the ignore rule kept
    offline = assign(streams, again)
    assert sorted((a.participant, a.descriptor.name, a.descriptor.unit) for a in offline.streams) == sorted(
        (a.participant, a.descriptor.name, a.descriptor.unit) for a in live.streams)
    assert offline.unassigned[0][0].name == "Noise"
    # exact rules: a glob character in a name matches only itself
    assert again.match(hdr("Strap [1] *A*", "RR", "s1")) is not None
    assert again.match(hdr("Strap 1 xAx", "RR", "s1")) is None
