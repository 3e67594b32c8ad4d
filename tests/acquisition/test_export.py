"""Export through MNE (EDF+, FIF) and as CSV: types, data and annotations survive a round trip."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

mne = pytest.importorskip("mne")

from attune_monitor.acquisition.export import export_session, held_on_grid, read_exported, to_raw  # noqa: E402
from attune_monitor.acquisition.files import load_recording  # noqa: E402
from attune_monitor.acquisition.xdf_writer import XdfWriter  # noqa: E402


def _analysis(rng, n=403, fs=4.0):
    from attune_monitor.dsp.detector import Episode
    from attune_monitor.ui.runner import Analysis

    grid = {"hr": 70 + 5 * rng.standard_normal((3, n)), "eda": 2 + 10 * rng.random((3, n))}
    grid["hr"][1, 100:120] = np.nan  # a gap
    t_win = np.arange(20.0, n / fs)
    sync = {m: {"t": t_win, "sync": rng.uniform(-1, 1, (3, t_win.size))} for m in grid}
    eps = [Episode(1, ("P1", "P2"), ["P1"], 30.0, 33.0, 35.0, 50.5, True, 0.9, ["hr", "eda"], 0.8),
           Episode(2, ("P2", "P3"), ["P2", "P3"], 80.25, 84.0, 90.0, None, False, 0.7, ["eda"], 0.4)]
    loss = [{"participant": "P3", "modality": "eda", "onset_s": 60.0, "offset_s": 70.0, "reason": "flat"}]
    return Analysis(recording="x", duration_s=(n - 1) / fs, participants=["P1", "P2", "P3"], streams={},
                    pairs=[("P1", "P2"), ("P1", "P3"), ("P2", "P3")], modalities=("hr", "eda"), fs=fs, step_s=1.0,
                    grid=grid, sync=sync, episodes=eps, signal_loss=loss, origin=1000.0)


def _recording_with_markers(path):
    with XdfWriter(path, fsync=False) as w:
        a = w.add_stream(dict(name="P1 RR", type="RR", channel_count=1, nominal_srate=0, channel_format="double64",
                              desc={"participant": "P1", "channels": [{"label": "RR", "unit": "ms"}]}))
        b = w.add_stream(dict(name="Attune markers", type="Markers", channel_count=1, nominal_srate=0,
                              channel_format="string"))
        w.write_samples(a, 1000.0 + np.arange(5) * 0.8, np.full((5, 1), 800.0))
        w.write_samples(b, [1012.0], [[json.dumps({"kind": "label", "text": "hit-and-run", "t": 12.0, "episode": 1})]])
    return load_recording(path)


def _expected_annotations(ana):
    return [(30.0, "possible rupture P1-P2 hr+eda"), (50.5, "repair P1-P2"), (60.0, "BAD_signal_loss P3 eda"),
            (80.25, "possible rupture P2-P3 eda")]


def test_held_on_grid_is_causal_sample_and_hold():
    held = held_on_grid(np.array([1.0, 2.0]), np.array([[0.5, -0.5]]), 12, 4.0)
    np.testing.assert_array_equal(held[0, :4], np.nan)
    np.testing.assert_array_equal(held[0, 4:8], 0.5)
    np.testing.assert_array_equal(held[0, 8:], -0.5)


@pytest.mark.parametrize("fmt", ["fif", "edf"])
def test_mne_round_trip_types_data_annotations(tmp_path, rng, fmt):
    if fmt == "edf":
        pytest.importorskip("edfio")
    ana = _analysis(rng)
    rec = _recording_with_markers(tmp_path / "m.xdf")
    want = to_raw(ana, rec)
    out = tmp_path / ("s.edf" if fmt == "edf" else "s_raw.fif")
    paths, notes = export_session(ana, rec, fmt, out)
    assert paths == [out] and len(notes) == 1 and notes[0].startswith("start time ")
    raw = read_exported(out)
    assert raw.ch_names == want.ch_names
    # heart rate is not a voltage: misc with no unit, in bpm; EDA gsr in siemens; synchrony misc
    assert raw.get_channel_types() == ["misc"] * 3 + ["gsr"] * 3 + ["misc"] * 6
    assert raw.info["sfreq"] == 4.0
    got, ref = raw.get_data()[:, : want.n_times], want.get_data()
    ok = np.isfinite(ref)
    assert np.array_equal(np.isnan(got), ~ok)  # missing stays missing (EDF: its code read back as NaN)
    if fmt == "fif":  # float64 on disk
        np.testing.assert_allclose(got[ok], ref[ok], rtol=1e-12)
    else:  # 16-bit over [missing code, channel maximum]
        step = (np.nanmax(ref, axis=1) - np.array([-1.0] * 3 + [-1e-6] * 3 + [-2.0] * 6)) / 65535
        err = np.abs(np.where(ok, got - ref, 0))
        assert np.all(err <= step[:, None] * 1.01)
    np.testing.assert_allclose(got[0][ok[0]], ana.grid["hr"][0][ok[0]], atol=0.01)  # bpm
    np.testing.assert_allclose(got[3] * 1e6, ana.grid["eda"][0], atol=0.01)  # siemens
    anns = [(round(a["onset"], 3), a["description"]) for a in raw.annotations
            if not a["description"].startswith(("BAD_no_data", "BAD_ACQ_SKIP"))]
    assert anns == sorted(_expected_annotations(ana) + [(12.0, "marker label: hit-and-run (episode 1)")])
    durs = {a["description"]: a["duration"] for a in raw.annotations}
    assert durs["possible rupture P1-P2 hr+eda"] == pytest.approx(20.5)
    assert durs["possible rupture P2-P3 eda"] == pytest.approx(ana.duration_s - 80.25)  # open: to the end
    if fmt == "edf":
        gaps = {(round(a["onset"], 3), round(a["duration"], 3)) for a in raw.annotations
                if a["description"] == "BAD_no_data P2 HR"}
        assert gaps == {(25.0, 5.0)}


def test_edf_shortens_long_participant_names(tmp_path, rng):
    pytest.importorskip("edfio")
    ana = _analysis(rng)
    ana.participants = ["couple07-A", "couple07-B", "couple07-C"]
    ana.pairs = [("couple07-A", "couple07-B"), ("couple07-A", "couple07-C"), ("couple07-B", "couple07-C")]
    paths, notes = export_session(ana, None, "edf", tmp_path / "long.edf")
    assert notes[0].startswith("warning: start time unknown") and "couple07-A -> P1" in notes[1]
    raw = read_exported(paths[0])
    assert "P1 HR" in raw.ch_names and "P1-P2 eda" in raw.ch_names


def test_csv_tables(tmp_path, rng):
    ana = _analysis(rng)
    rec = _recording_with_markers(tmp_path / "m.xdf")
    paths, _ = export_session(ana, rec, "csv", tmp_path / "csv")
    names = sorted(p.name for p in paths)
    assert names == ["annotations.csv", "episodes.csv", "grid.csv", "start.txt", "stream-Attune_markers.csv",
                     "stream-P1_RR.csv"]
    with open(tmp_path / "csv" / "grid.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:2] == ["session_s", "P1 HR [bpm]"] and "P1-P2 eda [r]" in rows[0]
    assert len(rows) == 1 + 403
    hr2 = np.array([float(r[2]) if r[2] else np.nan for r in rows[1:]])
    np.testing.assert_array_equal(hr2, ana.grid["hr"][1])  # repr round-trips floats exactly; gaps empty
    with open(tmp_path / "csv" / "episodes.csv", newline="") as fh:
        eps = list(csv.DictReader(fh))
    assert [e["pair"] for e in eps] == ["P1;P2", "P2;P3"] and eps[1]["offset_s"] == ""
    assert float(eps[0]["time_to_repair_s"]) == pytest.approx(20.5)
    with open(tmp_path / "csv" / "stream-P1_RR.csv", newline="") as fh:
        rr = list(csv.reader(fh))
    assert rr[0] == ["timestamp", "session_s", "RR"] and float(rr[2][1]) == pytest.approx(0.8)
    with open(tmp_path / "csv" / "annotations.csv", newline="") as fh:
        anns = [(float(r["onset_s"]), r["description"]) for r in csv.DictReader(fh)]
    assert (12.0, "marker label: hit-and-run (episode 1)") in anns


def test_export_format_is_checked(tmp_path, rng):
    with pytest.raises(ValueError, match="expected one of edf, fif, csv"):
        export_session(_analysis(rng), None, "gdf", tmp_path / "x.gdf")
