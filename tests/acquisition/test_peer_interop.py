"""Attune against an LSL peer nobody here wrote: mne-lsl's ``PlayerLSL`` and ``StreamLSL``.

* Two people replayed by mne-lsl players (the code and the roster of hardware.md section 10, run as written):
  ECG in volts and EDA in siemens (``<unit>0</unit>``: MNE's unit-multiplier code), every player at the default
  source_id "MNE-LSL", one person's ``Raw`` annotated (so a ``<name>-annotations`` stream with "ECG" in its
  name exists) -> ``attune monitor --headless --record``. The recording, read back with pyxdf (with and
  without dejitter), holds both people's signals in the units they were sent, heart rates that Attune's own
  beat detector puts at the planted rates, skin conductance at the planted levels (never "electrode off"),
  and the annotations as markers at the planted onsets.
* mne-lsl's ``StreamLSL`` connects to ``attune simulate`` and receives exactly the simulated samples, with
  the unit Attune declares.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

mne = pytest.importorskip("mne")
pytest.importorskip("mne_lsl")
pyxdf = pytest.importorskip("pyxdf")

from attune_monitor.acquisition.convention import describe, marker_texts  # noqa: E402
from attune_monitor.acquisition.files import load_recording  # noqa: E402
from attune_monitor.dsp.eda import eda_to_grid  # noqa: E402
from attune_monitor.dsp.heart import signal_to_hr_grid  # noqa: E402
from attune_monitor.dsp.quality import Quality  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "hardware.md"
SFREQ = 250.0
DURATION_S = 90.0  # longer than the test: the players never loop
PLANTED_HR = {"P1": 66.0, "P2": 84.0}  # bpm: different, so a mix-up of people shows
PLANTED_EDA = {"P1": 4.0, "P2": 9.0}  # uS
#: (onset s, duration s, description) of P1's annotations
ANNOTATIONS = [(t, 0.0, "task start") if k % 2 == 0 else (t, 2.0, "rest") for k, t in
               enumerate(np.arange(6.0, DURATION_S - 5, 3.0))]


def _doc_block(lang: str) -> str:
    """The ``lang`` code block of hardware.md section 10."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"## 10\. Using mne-lsl / other LSL apps.*?```" + lang + r"\n(.*?)```", text, re.S)
    assert m, f"hardware.md section 10 lost its {lang} example"
    return m.group(1)


def _ecg_volts(rate_bpm: float, rng) -> np.ndarray:
    """A clean ECG (V), shape (n,): an R peak of 1.2 mV per beat, P and T waves, beat-to-beat variability."""
    t = np.arange(int(DURATION_S * SFREQ)) / SFREQ
    rr = 60.0 / rate_bpm
    beats = np.cumsum(rr + 0.02 * np.sin(2 * np.pi * 0.25 * np.arange(int(DURATION_S / rr) + 2)))
    ecg = np.zeros_like(t)
    for b in beats:
        for offset, width, amp in ((-0.16, 0.025, 0.15), (0.0, 0.010, 1.2), (0.025, 0.010, -0.2), (0.28, 0.05, 0.3)):
            ecg += amp * np.exp(-0.5 * ((t - b - offset) / width) ** 2)
    return 1e-3 * (ecg + 0.01 * rng.standard_normal(t.size))


def _eda_siemens(level_us: float, rng) -> np.ndarray:
    """Skin conductance (S), shape (n,): a drifting tonic level with a response every 7 s."""
    t = np.arange(int(DURATION_S * SFREQ)) / SFREQ
    us = level_us + 0.2 * np.sin(2 * np.pi * t / 40.0)
    for onset in np.arange(3.0, DURATION_S, 7.0):
        dt = np.clip(t - onset, 0, None)
        us += 0.3 * (1 - np.exp(-dt / 0.7)) * np.exp(-dt / 4.0)
    return 1e-6 * (us + 0.002 * rng.standard_normal(t.size))


def _raws(rng):
    """P1 (ECG ``ecg`` + EDA ``gsr``, annotated) and P2 (ECG ``ecg`` + EDA ``misc``), SI units, as MNE stores them."""
    raws = {}
    for who, eda_type in (("P1", "gsr"), ("P2", "misc")):
        info = mne.create_info(["ECG", "EDA"], SFREQ, ["ecg", eda_type])
        raw = mne.io.RawArray(np.vstack([_ecg_volts(PLANTED_HR[who], rng), _eda_siemens(PLANTED_EDA[who], rng)]),
                              info, verbose="error")
        raws[who] = raw
    onset, duration, description = zip(*ANNOTATIONS)
    raws["P1"].set_annotations(mne.Annotations(onset, duration, description))
    return raws


def _tagged(code: str, tag: str) -> str:
    """The doc's stream names with a per-run tag (``P1-ECG`` -> ``<tag>-P1-ECG``): other tests on this machine
    may publish streams too; participant ids stay P1 / P2."""
    return code.replace('"P1-', f'"{tag}-P1-').replace('"P2-', f'"{tag}-P2-').replace(
        '("P1", raw_p1), ("P2", raw_p2)', f'("{tag}-P1", raw_p1), ("{tag}-P2", raw_p2)')


def test_doc_roster_assigns_mne_lsl_headers(tmp_path):
    """hardware.md section 10's roster on the headers mne-lsl players publish (no LSL needed): two people with
    heart and skin each, P2's misc EDA in siemens by the roster's word, the annotations left to the markers."""
    from attune_monitor.acquisition.roster import Roster

    def header(name, stype, ch_type, unit, fiff_kind, labels=("X",)):
        chans = "".join(f"<channel><label>{lbl}</label><type>{ch_type}</type><unit>{unit}</unit>"
                        f"<kind>{fiff_kind}</kind></channel>" for lbl in labels)
        return describe(f"<info><name>{name}</name><type>{stype}</type><channel_count>{len(labels)}"
                        "</channel_count><channel_format>double64</channel_format><source_id>MNE-LSL</source_id>"
                        f"<hostname>lab</hostname><nominal_srate>250</nominal_srate><uid>{name}</uid><desc>"
                        f"<channels>{chans}</channels></desc></info>")

    path = tmp_path / "r.toml"
    path.write_text(_doc_block("toml"), encoding="utf-8")
    streams = [header("P1-ECG", "ecg", "ecg", "0", 402), header("P1-EDA", "gsr", "gsr", "0", 1300),
               header("P2-ECG", "ecg", "ecg", "0", 402), header("P2-EDA", "misc", "misc", "0", 502),
               header("P1-ECG-annotations", "annotations", "annotations", "none", "", ("rest", "task start"))]
    a = Roster.load(path).assign(streams)
    got = {(s.participant, s.modality): (s.descriptor.name, s.kind, s.descriptor.unit, s.descriptor.scale)
           for s in a.streams if s.primary}
    assert got == {("P1", "hr"): ("P1-ECG", "ecg", "V", 1e3), ("P1", "eda"): ("P1-EDA", "eda", "S", 1e6),
                   ("P2", "hr"): ("P2-ECG", "ecg", "V", 1e3), ("P2", "eda"): ("P2-EDA", "eda", "S", 1e6)}
    (ann, why), = a.unassigned
    assert ann.name == "P1-ECG-annotations" and "marker stream" in why


@pytest.mark.timeout(120)
def test_mne_lsl_players_into_a_recorded_monitor_session(tmp_path, rng):
    import mne_lsl

    mne.set_log_level("WARNING")
    mne_lsl.set_log_level("WARNING")
    tag = f"mne{uuid.uuid4().hex[:8]}"
    raws = _raws(rng)
    roster = tmp_path / "mne-players.toml"
    roster.write_text(_tagged(_doc_block("toml"), tag), encoding="utf-8")
    scope = {"raw_p1": raws["P1"], "raw_p2": raws["P2"]}
    exec(_tagged(_doc_block("python"), tag), scope)  # the doc's players, as written: default source_id
    players = scope["players"]
    out_path = tmp_path / "session.xdf"
    try:
        assert {p._source_id for p in players} == {"MNE-LSL"}
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        streams = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "streams", "--timeout", "2", "--json", "--match",
             f"{tag}-*", "--roster", str(roster)], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        proc = subprocess.run(
            [sys.executable, "-m", "attune_monitor.ui.cli", "monitor", "--headless", "--duration", "16", "--wait", "15",
             "--match", f"{tag}-*", "--roster", str(roster), "--record", str(out_path)],
            capture_output=True, text=True, timeout=90, env=env, cwd=tmp_path)
    finally:
        for p in players:
            p.stop()
    # `attune streams`: four signals of two people, each in its SI unit; the annotations are markers, not ECG
    import json

    assert streams.returncode == 0, streams.stderr[-2000:]
    listed = {s["name"].removeprefix(f"{tag}-"): s for s in json.loads(streams.stdout)["streams"]}
    assert set(listed) == {"P1-ECG", "P1-EDA", "P2-ECG", "P2-EDA", "P1-ECG-annotations", "P1-EDA-annotations"}
    for who in ("P1", "P2"):
        ecg, eda = listed[f"{who}-ECG"], listed[f"{who}-EDA"]
        assert (ecg["participant"], ecg["kind"], ecg["unit"], ecg["source_id"]) == (who, "ecg", "V", "MNE-LSL")
        assert (eda["participant"], eda["kind"], eda["unit"]) == (who, "eda", "S")
        assert not ecg["duplicate"] and not eda["unit_guessed"]
    assert listed["P1-ECG"]["declared_unit"] == "0"
    ann = listed["P1-ECG-annotations"]
    assert ann["kind"] is None and ann["participant"] is None and "marker stream" in ann["note"]

    # the monitor: two people, both signals ok, never "electrode off"; the annotations shown as markers
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "people: P1, P2; pairs: P1-P2" in out, out[-3000:]
    assert "status: P1 hr=ok eda=ok; P2 hr=ok eda=ok" in out, out[-3000:]
    assert "electrode" not in out.lower() and "duplicate" not in (out + proc.stderr).lower()
    shown = re.findall(rf"\] marker \d\d:\d\d {tag}-P1-E[CD][GA]-annotations: (.*)", out)
    assert {"task start", "rest (2 s)"} <= set(shown), out[-3000:]

    for dejitter in (True, False):
        recorded, _ = pyxdf.load_xdf(str(out_path), dejitter_timestamps=dejitter)
        by_name = {s["info"]["name"][0].removeprefix(f"{tag}-"): s for s in recorded}
        # two participants: one pair in the synchrony streams
        for m in ("hr", "eda"):
            chans = by_name[f"Attune synchrony {m}"]["info"]["desc"][0]["channels"][0]["channel"]
            assert [c["label"][0] for c in chans] == ["P1-P2"]
        for who in ("P1", "P2"):
            ecg, eda = by_name[f"{who}-ECG"], by_name[f"{who}-EDA"]
            d_ecg, d_eda = describe(ecg["info"]), describe(eda["info"])
            assert (d_ecg.kind, d_ecg.unit, d_ecg.scale) == ("ecg", "V", 1e3)
            assert ecg["info"]["source_id"][0] == "MNE-LSL" and len(ecg["time_stamps"]) > 10 * SFREQ
            # heart rate from Attune's own beat detector on the recorded ECG, read in the unit it declares
            mv = d_ecg.to_canonical(ecg["time_series"][:, d_ecg.channel_index])
            assert 0.5 < np.percentile(mv, 99.9) < 2.0  # R peaks of 1.2 mV: volts were read as volts
            hr = signal_to_hr_grid("ecg", ecg["time_stamps"], mv, SFREQ)
            ok = hr.values[hr.quality == Quality.OK]
            assert ok.size > 20 and abs(np.median(ok) - PLANTED_HR[who]) < 2.0, (who, dejitter, np.median(ok))
            # skin conductance at the planted level in uS (P2's misc channel: the roster's unit), never off
            if who == "P1":
                assert (d_eda.kind, d_eda.unit, d_eda.scale) == ("eda", "S", 1e6)
            else:  # MNE's misc has no unit: the code "0" says nothing; the roster's unit = "S" did
                assert (d_eda.kind, d_eda.scale, d_eda.declared_unit) == ("eda", None, "0")
                d_eda.set_unit("S")
            us = d_eda.to_canonical(eda["time_series"][:, d_eda.channel_index])
            assert abs(np.median(us) - PLANTED_EDA[who]) < 0.5, (who, np.median(us))
            grid = eda_to_grid(eda["time_stamps"], us, SFREQ)
            assert not np.any(grid.quality == Quality.ELECTRODE_OFF)
            assert np.mean(grid.quality == Quality.OK) > 0.8
        # the annotations, recorded as markers: descriptions and planted spacing (onset differences)
        decoded = {}
        for name in ("P1-ECG-annotations", "P1-EDA-annotations"):
            a = by_name[name]
            d = describe(a["info"])
            assert d.kind is None and d.type == "annotations"
            texts = decoded[name] = marker_texts(d, a["time_series"])
            planted = ["task start" if k % 2 == 0 else "rest (2 s)" for k in range(len(ANNOTATIONS))]
            k = planted.index(texts[0])  # the first one the recording caught
            assert len(texts) >= 3 and texts == planted[k:k + len(texts)]  # every one after it, in order
            # stamped 3 s apart, as planted (to the player's chunk timing, 10 samples = 40 ms)
            np.testing.assert_allclose(np.diff(a["time_stamps"]), 3.0, atol=0.05)
        # offline, Attune's own reader gives the same markers (analyze / replay / export show them)
        offline = [text for _, name, text in load_recording(out_path).event_markers()
                   if name.endswith("P1-ECG-annotations")]
        assert offline and offline == decoded["P1-ECG-annotations"], offline


def test_mne_lsl_stream_reads_attune_simulate(tmp_path):
    """mne-lsl's StreamLSL connects to `attune simulate`'s ECG outlet and gets the simulated samples exactly, as
    an MNE ``ecg`` channel in microvolts (Attune declares ``uV``)."""
    import mne_lsl
    from mne_lsl.stream import StreamLSL

    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario

    mne_lsl.set_log_level("WARNING")
    tag = f"mnesim-{uuid.uuid4().hex[:8]}"
    session = simulate_session(load_scenario("couple-confounds"), 5, 20.0, source_prefix=tag)
    want = session.stream("P1", "ecg")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    sim = subprocess.Popen([sys.executable, "-m", "attune_monitor.ui.cli", "simulate", "--scenario", "couple-confounds",
                            "--seed", "5", "--duration", "20", "--source-prefix", tag], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stream = None
    try:
        deadline = time.monotonic() + 30
        while "publishing at" not in (line := sim.stdout.readline()):
            assert line and time.monotonic() < deadline, sim.stderr.read()[-2000:]
        stream = StreamLSL(bufsize=4, name=want.name, source_id=want.source_id).connect(acquisition_delay=0.05,
                                                                                        timeout=10)
        assert stream.get_channel_types() == ["ecg"] and stream.info["chs"][0]["unit_mul"] == -6
        assert stream.info["sfreq"] == want.srate
        deadline = time.monotonic() + 20
        while stream.n_new_samples < 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)
        data, ts = stream.get_data(winsize=2.0)
        got = data[0]
        assert got.size == int(np.ceil(2.0 * want.srate)) and np.any(got != 0)
        values = want.values[:, 0]
        starts = np.flatnonzero(values == got[0])
        assert any(np.array_equal(values[i:i + got.size], got) for i in starts), "not the simulated samples"
        np.testing.assert_allclose(np.diff(ts), 1 / want.srate, rtol=0.05)
    finally:
        if stream is not None:
            stream.disconnect()
        sim.kill()
        sim.communicate(timeout=10)  # waits and closes the pipes
