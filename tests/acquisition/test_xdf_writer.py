"""XdfWriter: files pyxdf (the reference reader) loads back exactly, also after a crash or an error."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC

import numpy as np
import pytest
import pyxdf

from attune_monitor.acquisition.xdf_writer import BOUNDARY_UUID, XdfWriteError, XdfWriter, info_to_xml, varlen_int

LOAD = dict(dejitter_timestamps=False, synchronize_clocks=False)


def _load(path):
    streams, header = pyxdf.load_xdf(str(path), **LOAD)
    return {s["info"]["name"][0]: s for s in streams}, header


def test_varlen_int_follows_the_spec():
    assert varlen_int(5) == b"\x01\x05"
    assert varlen_int(300) == b"\x04" + (300).to_bytes(4, "little")
    assert varlen_int(2**33) == b"\x08" + (2**33).to_bytes(8, "little")


def test_round_trip_every_format_interleaved(tmp_path, rng):
    path = tmp_path / "rt.xdf"
    specs = {"f32": ("float32", 3, 130.0), "f64": ("double64", 2, 0.0), "i16": ("int16", 4, 10.0),
             "i8": ("int8", 1, 5.0), "i32": ("int32", 1, 1.0), "i64": ("int64", 2, 2.0), "str": ("string", 2, 0.0)}
    sent = {k: ([], []) for k in specs}
    with XdfWriter(path) as w:
        ids = {k: w.add_stream(dict(name=k, type="Test", channel_count=n, nominal_srate=sr, channel_format=fmt,
                                    source_id=f"src-{k}", desc="<desc><participant>P1</participant></desc>"))
               for k, (fmt, n, sr) in specs.items()}
        t = 100.0
        for chunk in range(12):  # interleave streams chunk by chunk, irregular timestamps
            for k, (fmt, n, _) in specs.items():
                m = int(rng.integers(1, 40))
                ts = t + np.sort(rng.uniform(0, 1, m))
                if fmt == "string":
                    vals = [[f"ev{chunk}-{i}-é", ""] for i in range(m)]
                elif fmt.startswith("int"):
                    info = np.iinfo({"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64}[fmt])
                    vals = rng.integers(info.min, info.max, (m, n), endpoint=True).astype(info.dtype)
                else:
                    vals = rng.standard_normal((m, n)) * 1e3
                w.write_samples(ids[k], ts, vals)
                sent[k][0].append(ts)
                sent[k][1].append(vals)
            w.write_clock_offset(ids["f32"], t, -0.001 * chunk)
            t += 1.0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    got, header = _load(path)
    assert header["info"]["version"] == ["1.0"]
    for k, (fmt, _n, _sr) in specs.items():
        s = got[k]
        ts = np.concatenate(sent[k][0])
        np.testing.assert_array_equal(s["time_stamps"], ts)
        if fmt == "string":
            assert s["time_series"] == [row for chunk in sent[k][1] for row in chunk]
        else:
            want = np.concatenate(sent[k][1]).astype({"float32": np.float32}.get(fmt, s["time_series"].dtype))
            np.testing.assert_array_equal(s["time_series"], want)
        assert s["info"]["source_id"] == [f"src-{k}"]
        assert s["info"]["desc"][0]["participant"] == ["P1"]
        footer = s["footer"]["info"]
        assert int(footer["sample_count"][0]) == ts.size
        assert float(footer["first_timestamp"][0]) == ts[0] and float(footer["last_timestamp"][0]) == ts[-1]
    assert got["f32"]["clock_values"] == [-0.001 * c for c in range(12)]
    assert len(got["f32"]["footer"]["info"]["clock_offsets"][0]["offset"]) == 12
    # about one boundary chunk per 10 s of data
    assert path.read_bytes().count(BOUNDARY_UUID) >= 1


def test_full_xml_header_is_written_verbatim(tmp_path):
    xml = ('<?xml version="1.0"?><info><name>ECG</name><type>ECG</type><channel_count>1</channel_count>'
           '<nominal_srate>130</nominal_srate><channel_format>float32</channel_format><source_id>h10-1</source_id>'
           '<desc><manufacturer>Polar</manufacturer><acquisition><serial>C0FFEE</serial></acquisition></desc></info>')
    path = tmp_path / "h.xdf"
    with XdfWriter(path) as w:
        w.add_stream(xml, stream_id=7)
    assert xml.encode() in path.read_bytes()
    got, _ = _load(path)
    assert got["ECG"]["info"]["stream_id"] == 7
    assert got["ECG"]["info"]["desc"][0]["acquisition"][0]["serial"] == ["C0FFEE"]


def test_bad_input_is_refused_clearly(tmp_path):
    with XdfWriter(tmp_path / "b.xdf") as w:
        sid = w.add_stream(dict(name="x", type="EDA", channel_count=2, nominal_srate=4))
        with pytest.raises(ValueError, match=r"expected \(3, 2\)"):
            w.write_samples(sid, [1.0, 2.0, 3.0], np.zeros((3, 1)))
        with pytest.raises(ValueError, match="call add_stream"):
            w.write_samples(99, [1.0], [[1.0, 2.0]])
        with pytest.raises(ValueError, match="channel_format"):
            w.add_stream(dict(name="y", channel_format="float16"))
    w.close()  # idempotent


def test_unwritable_paths_raise_xdf_write_error(tmp_path):
    missing = tmp_path / "no-such-folder" / "x.xdf"
    with pytest.raises(XdfWriteError, match="create the folder") as info:
        XdfWriter(missing)
    assert str(missing) in str(info.value) and isinstance(info.value, OSError)
    with pytest.raises(XdfWriteError, match="not a folder"):
        XdfWriter(tmp_path)


def test_disk_full_keeps_what_was_written_readable(tmp_path, monkeypatch):
    path = tmp_path / "full.xdf"
    w = XdfWriter(path, fsync=False)
    sid = w.add_stream(dict(name="RR", type="RR", channel_count=1, nominal_srate=0))
    w.write_samples(sid, np.arange(10.0), np.arange(10.0)[:, None] * 100)
    real_write = os.write

    def full_disk(fd, data):  # half a chunk reaches the disk, then ENOSPC
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(XdfWriteError, match="free some disk space") as info:
        w.write_samples(sid, np.arange(10.0, 20.0), np.ones((10, 1)))
    assert str(path) in str(info.value)
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(XdfWriteError):
        w.write_samples(sid, [30.0], [[1.0]])
    w.close()
    got, _ = _load(path)
    np.testing.assert_array_equal(got["RR"]["time_stamps"], np.arange(10.0))
    np.testing.assert_array_equal(got["RR"]["time_series"][:, 0], np.arange(10.0) * 100)


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from attune_monitor.acquisition.xdf_writer import XdfWriter
    w = XdfWriter(sys.argv[1], flush_interval=0.2)
    a = w.add_stream(dict(name="ECG", type="ECG", channel_count=1, nominal_srate=130))
    b = w.add_stream(dict(name="RR", type="RR", channel_count=1, nominal_srate=0, channel_format="double64"))
    n = 0
    while True:
        k = np.arange(n, n + 13)
        w.write_samples(a, k / 130.0, k[:, None].astype(float))
        w.write_samples(b, [n / 130.0], [[float(n)]])
        n += 13
        print(n, flush=True)
        time.sleep(0.01)
""")


def test_kill_9_loses_nothing_already_written(tmp_path):
    path = tmp_path / "crash.xdf"
    proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True,
                            env=os.environ.copy())
    reported = 0
    try:
        deadline = time.monotonic() + 30
        while reported < 2000 and time.monotonic() < deadline:  # at least ~1.5 s of writing
            line = proc.stdout.readline()
            if not line:
                break
            reported = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
    assert reported >= 2000, "the writer subprocess did not get going"
    got, _ = _load(path)
    ecg = got["ECG"]["time_series"][:, 0]
    assert ecg.size >= reported  # everything reported before the kill is in the file
    np.testing.assert_array_equal(ecg, np.arange(ecg.size))
    np.testing.assert_array_equal(got["ECG"]["time_stamps"], np.arange(ecg.size) / 130.0)
    assert "footer" not in got["ECG"]


@pytest.mark.realdata
def test_round_trip_of_real_xdf_files(realdata, tmp_path):
    files = sorted((realdata / "xdf-example-files").glob("*.xdf"))
    assert files
    for f in files:
        streams, _ = pyxdf.load_xdf(str(f), **LOAD)
        out = tmp_path / f.name
        with XdfWriter(out, fsync=False) as w:
            for s in streams:
                sid = w.add_stream(info_to_xml(s["info"]), stream_id=s["info"]["stream_id"])
                for ct, cv in zip(s["clock_times"], s["clock_values"]):
                    w.write_clock_offset(sid, ct, cv)
                w.write_samples(sid, s["time_stamps"], s["time_series"])
        again, _ = pyxdf.load_xdf(str(out), **LOAD)
        assert [s["info"]["stream_id"] for s in again] == [s["info"]["stream_id"] for s in streams], f.name
        for a, b in zip(streams, again):
            assert a["info"]["name"] == b["info"]["name"] and a["info"]["desc"] == b["info"]["desc"], f.name
            np.testing.assert_array_equal(a["time_stamps"], b["time_stamps"])
            if a["info"]["channel_format"][0] == "string":
                assert a["time_series"] == b["time_series"]
            else:
                assert a["time_series"].dtype == b["time_series"].dtype
                np.testing.assert_array_equal(a["time_series"], b["time_series"])
            assert a["clock_times"] == b["clock_times"] and a["clock_values"] == b["clock_values"]
            assert int(b["footer"]["info"]["sample_count"][0]) == len(a["time_stamps"])


def test_file_header_has_labrecorders_datetime(tmp_path):
    """The FileHeader says when the recording began, in LabRecorder's layout (local time with its UTC offset)."""
    from datetime import datetime

    when = 1_765_000_000.25
    with XdfWriter(tmp_path / "h.xdf", started_at=when) as w:
        w.add_stream(dict(name="x", type="EDA", channel_count=1, nominal_srate=4.0))
    _, header = _load(tmp_path / "h.xdf")
    text = header["info"]["datetime"][0]
    assert len(text) == 24 and text[10] == "T" and text[19] in "+-", text   # 2025-04-28T10:26:37+0200
    assert datetime.fromisoformat(text) == datetime.fromtimestamp(int(when), tz=UTC)
    assert header["info"]["version"] == ["1.0"]
    with XdfWriter(tmp_path / "sim.xdf"):   # no start given (a simulated session): no datetime, same bytes each time
        pass
    assert "datetime" not in _load(tmp_path / "sim.xdf")[1]["info"]
