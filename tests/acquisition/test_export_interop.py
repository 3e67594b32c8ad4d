"""Exports read back by readers nobody here wrote: edfio, pyedflib and MNE (EDF), MNE (FIF), csv (CSV).

Each test plants known values in an analysis (heart rate 67.8 bpm, skin conductance in µS, synchrony r, gaps)
and a known wall-clock start in the recording, exports it, and checks what each independent reader gets:
the start date/time, the units, the values (a missing sample reads as missing, never as 0), and that the
files are private (mode 0600) like recordings.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import stat
import struct

import numpy as np
import pytest

mne = pytest.importorskip("mne")
edfio = pytest.importorskip("edfio")
pyedflib = pytest.importorskip("pyedflib")

from attune_monitor.acquisition.export import export_session, session_start, xdf_header_datetime  # noqa: E402
from attune_monitor.acquisition.files import load_recording  # noqa: E402
from attune_monitor.acquisition.xdf_writer import XdfWriter, varlen_int  # noqa: E402

UTC = dt.UTC
#: What LabRecorder writes in the header (local time with its offset): 2024-02-14 11:51:17 UTC.
HEADER_DATETIME = "2024-02-14T12:51:17+0100"
FS = 4.0
N = 160  # 40 s on the grid
HR_VALUE = 67.8


def _with_file_header(path, header_xml: str) -> None:
    """Replace an XDF file's FileHeader chunk (the first one) by ``header_xml``."""
    data = path.read_bytes()
    assert data[:4] == b"XDF:"
    nb = data[4]
    length = int.from_bytes(data[5:5 + nb], "little")
    rest = data[5 + nb + length:]
    content = header_xml.encode("utf-8")
    path.write_bytes(b"XDF:" + varlen_int(len(content) + 2) + struct.pack("<H", 1) + content + rest)


def _recording(tmp_path, header_datetime: str | None = HEADER_DATETIME):
    """A two-person XDF whose first sample is at LSL time 1000.0 and whose header has ``header_datetime``."""
    path = tmp_path / "rec.xdf"
    with XdfWriter(path, fsync=False) as w:
        for who in ("P1", "P2"):
            sid = w.add_stream(dict(name=f"{who} RR", type="RR", channel_count=1, nominal_srate=0,
                                    channel_format="double64",
                                    desc={"participant": who, "channels": [{"label": "RR", "unit": "ms"}]}))
            w.write_samples(sid, 1000.0 + np.arange(50) * 0.8, np.full((50, 1), 800.0))
    if header_datetime is not None:
        _with_file_header(path, f'<?xml version="1.0"?><info><version>1.0</version>'
                                f'<datetime>{header_datetime}</datetime></info>')
    else:
        _with_file_header(path, '<?xml version="1.0"?><info><version>1.0</version></info>')
    return load_recording(path)


def _analysis(origin: float):
    """Planted grid: P1 HR 67.8 bpm with a gap at 10-15 s, P2 HR a ramp; EDA in µS; synchrony from 20 s."""
    from attune_monitor.ui.runner import Analysis

    hr = np.vstack([np.full(N, HR_VALUE), np.linspace(55.0, 95.0, N)])
    hr[0, 40:60] = np.nan
    eda = np.vstack([np.linspace(0.5, 12.0, N), np.full(N, 3.25)])
    eda[1, 100:104] = np.nan  # electrode off for a second
    t_win = np.arange(20.0, N / FS)
    sync = {"hr": {"t": t_win, "sync": np.linspace(-0.9, 0.9, t_win.size)[None, :]},
            "eda": {"t": t_win, "sync": np.full((1, t_win.size), 0.0)}}  # r = 0 exactly: a real value
    return Analysis(recording="rec.xdf", duration_s=(N - 1) / FS, participants=["P1", "P2"], streams={},
                    pairs=[("P1", "P2")], modalities=("hr", "eda"), fs=FS, step_s=1.0,
                    grid={"hr": hr, "eda": eda}, sync=sync, episodes=[], signal_loss=[], origin=origin)


def _planted(ana):
    """(names, natural units, values with NaN) in the export's channel order."""
    t_win = ana.sync["hr"]["t"]
    held = np.full((2, N), np.nan)
    idx = np.searchsorted(t_win, np.arange(N) / FS + 1e-9, side="right") - 1
    held[0, idx >= 0] = ana.sync["hr"]["sync"][0, idx[idx >= 0]]
    held[1, idx >= 0] = 0.0
    values = np.vstack([ana.grid["hr"], ana.grid["eda"], held])
    return (["P1 HR", "P2 HR", "P1 EDA", "P2 EDA", "P1-P2 hr", "P1-P2 eda"], ["bpm", "bpm", "uS", "uS", "", ""],
            values)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def exported(tmp_path):
    rec = _recording(tmp_path)
    ana = _analysis(origin=1002.0)  # session time 0 is 2 s after the file's first sample
    out = {}
    for fmt, name in (("edf", "s.edf"), ("fif", "s_raw.fif"), ("csv", "s-csv")):
        paths, notes = export_session(ana, rec, fmt, tmp_path / name)
        out[fmt] = (paths, notes)
    return ana, out, tmp_path


START = dt.datetime(2024, 2, 14, 11, 51, 19, tzinfo=UTC)  # header 11:51:17 UTC + 2 s


def test_start_time_from_the_xdf_header(exported):
    ana, out, tmp = exported
    for fmt in ("edf", "fif", "csv"):
        assert out[fmt][1][0] == f"start time {START.isoformat()}, from the XDF header's datetime (when the " \
                                 "recorder opened the file; the first sample follows within seconds)"
    e = edfio.read_edf(tmp / "s.edf")
    assert (e.startdate, e.starttime) == (START.date(), START.time().replace(tzinfo=None))
    with pyedflib.EdfReader(str(tmp / "s.edf")) as f:
        assert f.getStartdatetime() == START.replace(tzinfo=None)
    assert mne.io.read_raw_edf(tmp / "s.edf", verbose="error").info["meas_date"] == START
    assert mne.io.read_raw_fif(tmp / "s_raw.fif", verbose="error").info["meas_date"] == START
    assert (tmp / "s-csv" / "start.txt").read_text().splitlines()[0] == START.isoformat()


def test_edf_units_and_values_three_readers(exported):
    ana, _, tmp = exported
    names, units, want = _planted(ana)
    ok = np.isfinite(want)
    labels = ["MISC P1 HR", "MISC P2 HR", "GSR P1 EDA", "GSR P2 EDA", "MISC P1-P2 hr", "MISC P1-P2 eda"]
    missing_code = [-1.0, -1.0, -1.0, -1.0, -2.0, -2.0]
    # edfio
    e = edfio.read_edf(tmp / "s.edf")
    assert [s.label for s in e.signals] == labels
    assert [s.physical_dimension for s in e.signals] == units
    assert [s.physical_min for s in e.signals] == missing_code
    got_edfio = np.vstack([s.data[:N] for s in e.signals])
    # pyedflib (EDFlib, C)
    with pyedflib.EdfReader(str(tmp / "s.edf")) as f:
        assert f.getSignalLabels() == labels
        assert [f.getPhysicalDimension(i) for i in range(6)] == units
        assert [f.getPhysicalMinimum(i) for i in range(6)] == missing_code
        got_pyedflib = np.vstack([f.readSignal(i)[:N] for i in range(6)])
    # MNE (no unit conversion for bpm / uS: it reads the numbers as written)
    raw = mne.io.read_raw_edf(tmp / "s.edf", preload=True, verbose="error")
    got_mne = raw.get_data()[:, :N]
    for got in (got_edfio, got_pyedflib, got_mne):
        step = (np.nanmax(want, axis=1) - np.array(missing_code)) / 65535
        is_missing = got <= (np.array(missing_code) + step / 2)[:, None]
        np.testing.assert_array_equal(is_missing, ~ok)  # every gap is the missing code, nothing else is
        np.testing.assert_allclose(got[ok], want[ok], atol=float(step.max()))
        assert not np.any(got[~ok] == 0.0)  # a gap is never 0 bpm / 0 µS / r = 0
    assert got_edfio[0, 0] == pytest.approx(HR_VALUE, abs=0.002)  # 67.8 bpm, not a voltage
    assert got_edfio[5, 90] == pytest.approx(0.0, abs=5e-5)  # r = 0 is a value, and stays one
    # the gaps are also annotated
    gaps = {(a.onset, a.duration, a.text) for a in e.annotations if a.text.startswith("BAD_no_data")}
    assert (10.0, 5.0, "BAD_no_data P1 HR") in gaps and (25.0, 1.0, "BAD_no_data P2 EDA") in gaps


def test_fif_units_and_values(exported):
    from mne.io.constants import FIFF

    ana, _, tmp = exported
    names, _, want = _planted(ana)
    raw = mne.io.read_raw_fif(tmp / "s_raw.fif", preload=True, verbose="error")
    assert raw.ch_names == names
    assert raw.get_channel_types() == ["misc", "misc", "gsr", "gsr", "misc", "misc"]
    assert [ch["unit"] for ch in raw.info["chs"]] == [FIFF.FIFF_UNIT_NONE] * 2 + [FIFF.FIFF_UNIT_S] * 2 + \
        [FIFF.FIFF_UNIT_NONE] * 2
    assert "HR channels bpm" in raw.info["description"]
    got = raw.get_data()
    assert got[0, 0] == HR_VALUE  # exactly 67.8: bpm, stored as float64, never as volts (6.78e-05)
    scale = np.array([1, 1, 1e-6, 1e-6, 1, 1])[:, None]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got[np.isfinite(got)], (want * scale)[np.isfinite(want)], rtol=1e-12)


def test_csv_empty_cells_where_missing(exported):
    ana, _, tmp = exported
    names, units, want = _planted(ana)
    with open(tmp / "s-csv" / "grid.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["session_s"] + [f"{n} [{u or 'r'}]" for n, u in zip(names, units)]
    cells = np.array([r[1:] for r in rows[1:]])
    np.testing.assert_array_equal(cells == "", np.isnan(want.T))
    got = np.where(cells == "", "nan", cells).astype(float)
    np.testing.assert_array_equal(got[np.isfinite(got)], want.T[np.isfinite(want.T)])  # repr: exact


def test_exports_are_private(exported):
    _, out, tmp = exported
    files = out["edf"][0] + out["fif"][0] + out["csv"][0]
    assert len(files) >= 6
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert not [p for p in tmp.rglob(".*") if p.is_file()]  # no temporary files left behind


def test_overwriting_keeps_mode_0600(tmp_path):
    rec = _recording(tmp_path)
    target = tmp_path / "s.edf"
    target.write_bytes(b"old")
    target.chmod(0o644)
    export_session(_analysis(1000.0), rec, "edf", target)
    assert _mode(target) == 0o600 and edfio.read_edf(target).num_signals == 6


def test_start_time_sources(tmp_path):
    # 1. LabRecorder's header, with its UTC offset
    (tmp_path / "a").mkdir()
    rec = _recording(tmp_path / "a")
    assert xdf_header_datetime(rec.path) == dt.datetime(2024, 2, 14, 11, 51, 17, tzinfo=UTC)
    start, how = session_start(rec, rec.origin + 10.0)
    assert start == dt.datetime(2024, 2, 14, 11, 51, 27, tzinfo=UTC) and "XDF header" in how
    # 2. no datetime in the header: the file's mtime is taken as the time of its last sample
    (tmp_path / "b").mkdir()
    rec = _recording(tmp_path / "b", header_datetime=None)
    assert xdf_header_datetime(rec.path) is None
    mtime = dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=UTC).timestamp()
    os.utime(rec.path, (mtime, mtime))
    start, how = session_start(rec, rec.origin)
    assert start.timestamp() == pytest.approx(mtime - (rec.end - rec.origin)) and how.startswith("estimated")
    # 3. an E4 export: its timestamps are Unix time
    e4 = tmp_path / "e4"
    e4.mkdir()
    (e4 / "EDA.csv").write_text("1700000000.000000\n4.000000\n" + "1.5\n" * 40)
    rec = load_recording(e4)
    start, how = session_start(rec, rec.origin)
    assert start == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC) and "Unix time" in how
    # 4. nothing to take it from
    assert session_start(None, 0.0)[0] is None


def test_unknown_start_is_said_and_left_anonymous(tmp_path):
    paths, notes = export_session(_analysis(1000.0), None, "edf", tmp_path / "x.edf")
    assert notes[0].startswith("warning: start time unknown")
    with pytest.raises(edfio.AnonymizedDateError):
        _ = edfio.read_edf(paths[0]).startdate
    paths, _ = export_session(_analysis(1000.0), None, "fif", tmp_path / "x_raw.fif")
    assert mne.io.read_raw_fif(paths[0], verbose="error").info["meas_date"] is None


@pytest.mark.realdata
def test_labrecorder_header_datetime(realdata):
    path = realdata / "spectHR" / "sub001.xdf"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    # the file says 2025-04-28T10:26:37+0200 (as pyxdf reports it)
    assert xdf_header_datetime(path) == dt.datetime(2025, 4, 28, 8, 26, 37, tzinfo=UTC)
    import pyxdf

    _, header = pyxdf.load_xdf(str(path))  # the header as pyxdf reads it
    assert header["info"]["datetime"][0] == "2025-04-28T10:26:37+0200"
