"""Property-based fuzzing of the recording readers: short, empty, truncated and garbage inputs.

Whatever the bytes, :func:`attune_monitor.acquisition.files.load_recording` either returns a Recording that can be used
as far as it goes (its streams' signals, markers, start, problems in one line each) or raises
:class:`attune_monitor.acquisition.files.RecordingError` with a one-line message — never another exception, never a
Python warning on the user's screen, never a hang (hypothesis' deadline per example and pytest-timeout per test).
Inputs: XDF (the real sample recording under recordings/ cut short or with bytes overwritten, garbage after the
magic, plain garbage), Empatica E4 export folders (each file absent, cut short, garbled or garbage) and Attune's
tidy CSV (the same, plus binary and rows of the wrong width).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from attune_monitor.acquisition.files import Recording, RecordingError, load_recording

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_XDF = (ROOT / "recordings" / "sample-group.xdf").read_bytes()

FUZZ = settings(max_examples=60, deadline=timedelta(seconds=5), database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _loads_or_says_why(path: Path) -> Recording | None:
    """The property: a usable Recording, or RecordingError with one line; nothing else, no warning printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            rec = load_recording(path)
        except RecordingError as exc:
            msg = str(exc)
            assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
            assert str(path) in msg, msg
            rec = None
        if rec is not None:
            assert isinstance(rec, Recording) and rec.streams
            assert all(isinstance(p, str) and p and "\n" not in p for p in rec.problems), rec.problems
            for s in rec.physio_streams():
                x = s.signal
                assert x.shape == (len(s.timestamps),)
                assert np.all(np.isfinite(s.timestamps)) and np.all(np.diff(s.timestamps) >= 0)
                assert math.isfinite(s.descriptor.srate) and s.descriptor.srate >= 0
            rec.event_markers()
            _ = rec.start_datetime  # a property: must not raise
            try:
                assert rec.origin <= rec.end
            except RecordingError as exc:
                assert "\n" not in str(exc)
    assert not caught, [str(w.message) for w in caught]
    return rec


# -- XDF ---------------------------------------------------------------------------------------------------------------
def _overwrite(data: bytes, at: int, junk: bytes, cut: int) -> bytes:
    b = bytearray(data[:cut])
    at = min(at, max(len(b) - 1, 0))
    b[at:at + len(junk)] = junk
    return bytes(b)


xdf_bytes = st.one_of(
    st.just(b""),
    st.binary(max_size=64),                                                   # garbage
    st.binary(max_size=256).map(lambda b: b"XDF:" + b),                       # garbage after the magic
    st.integers(0, len(SAMPLE_XDF)).map(lambda n: SAMPLE_XDF[:n]),            # the real file cut short
    st.builds(_overwrite, st.just(SAMPLE_XDF), st.integers(0, 80_000), st.binary(min_size=1, max_size=12),
              st.integers(4, 120_000)),                                       # bytes overwritten, then cut
)


@pytest.mark.timeout(90)
@FUZZ
@given(data=xdf_bytes)
def test_xdf_reader_on_damaged_files(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.xdf"
        path.write_bytes(data)
        _loads_or_says_why(path)


def test_the_real_sample_whole_loads_and_its_start_cut_says_why(tmp_path):
    """The two ends of the XDF strategy, for sure: the whole file loads; 3 bytes are unreadable in one line."""
    path = tmp_path / "whole.xdf"
    path.write_bytes(SAMPLE_XDF)
    assert len(_loads_or_says_why(path).physio_streams()) == 6
    path.write_bytes(SAMPLE_XDF[:3])
    with pytest.raises(RecordingError, match=r"unreadable XDF"):
        load_recording(path)


# -- Empatica E4 folders -----------------------------------------------------------------------------------------------
E4_GOOD = {
    "EDA.csv": "1560281025.000000\n4.000000\n" + "".join(f"{0.5 + 0.01 * i:.6f}\n" for i in range(24)),
    "HR.csv": "1560281035.000000\n1.000000\n" + "".join(f"{70 + i % 5:.2f}\n" for i in range(12)),
    "IBI.csv": "1560281025.000000, IBI\n" + "".join(f"{1.0 + 0.8 * i:.6f},0.800000\n" for i in range(12)),
    "BVP.csv": "1560281025.000000\n64.000000\n" + "".join(f"{30 * math.sin(i / 5):.2f}\n" for i in range(96)),
}
_CSVISH = st.sampled_from(list("0123456789.,-e+\n \t\r\"';:IBI") + ["nan", "inf", "-inf", "1e309", "\x00", "é",
                                                                       "2019-06-11 19:03:45", ",EDA,time\n"])
csvish_text = st.lists(_CSVISH, max_size=60).map("".join)


def _garble(text: str, edits) -> str:
    t = list(text)
    for pos, piece in edits:
        i = pos % (len(t) + 1)
        t[i:i + 1] = list(piece)
    return "".join(t)


def _e4_file(good: str):
    return st.one_of(
        st.none(),                                                            # absent
        st.just(good),
        st.integers(0, len(good)).map(lambda n: good[:n]),                    # cut short
        st.lists(st.tuples(st.integers(0, 10_000), _CSVISH), min_size=1, max_size=6).map(
            lambda edits: _garble(good, edits)),                              # garbled
        csvish_text,                                                          # garbage
        st.binary(max_size=40),                                               # not text at all
    )


e4_folder = st.fixed_dictionaries({name: _e4_file(text) for name, text in E4_GOOD.items()})


@pytest.mark.timeout(90)
@FUZZ
@given(files=e4_folder)
# found by this test (2026-12-07): an empty HR.csv and a BVP.csv whose rate line became ",EDA,time" gave a Recording
# with no streams (the PPG left out for its impossible rate) instead of a RecordingError
@example(files={"EDA.csv": None, "HR.csv": "", "IBI.csv": None,
                "BVP.csv": _garble(E4_GOOD["BVP.csv"], [(1, ",EDA,time\n")])})
def test_e4_folder_reader_on_damaged_exports(files):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "S01"
        folder.mkdir()
        for name, content in files.items():
            if content is None:
                continue
            f = folder / name
            f.write_bytes(content) if isinstance(content, bytes) else f.write_text(content, encoding="utf-8")
        _loads_or_says_why(folder)


# -- tidy CSV ----------------------------------------------------------------------------------------------------------
CSV_GOOD = "participant,kind,timestamp,value\n" + "".join(
    f"P{1 + i % 2},{('rr', 'eda', 'hr', 'ecg')[i % 4]},{1700000000 + 0.25 * i},{(0.8, 4.2, 71.0, 0.3)[i % 4]}\n"
    for i in range(40))
_FIELD = st.one_of(st.sampled_from(["P1", "P2", "rr", "eda", "hr", "ecg", "ppg", "bvp", "", " ", "nan", "inf", "1e309",
                                    "-1", "0", "1700000000.5", "\x00", "x\ny", '"q"']),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=6))
csv_rows = st.lists(st.lists(_FIELD, max_size=6).map(",".join), max_size=12).map(
    lambda rows: "participant,kind,timestamp,value\n" + "\n".join(rows))

csv_content = st.one_of(
    st.just(""), st.just("\n\n"), st.just("participant,kind,timestamp,value\n"),
    st.integers(0, len(CSV_GOOD)).map(lambda n: CSV_GOOD[:n]),               # cut short
    st.lists(st.tuples(st.integers(0, 10_000), _CSVISH), min_size=1, max_size=8).map(
        lambda edits: _garble(CSV_GOOD, edits)),                              # garbled
    csv_rows,                                                                 # rows of any width and content
    csvish_text,
    st.binary(max_size=64),
)


@pytest.mark.timeout(90)
@FUZZ
@given(content=csv_content)
def test_tidy_csv_reader_on_damaged_files(content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        _loads_or_says_why(path)


@pytest.mark.parametrize("content,says", [
    (b"", "the CSV file is empty; expected a header line participant,kind,timestamp,value"),
    (b"\n\n", "the CSV file is empty"),
    (b"a,b\n1,2\n", "lacks the column(s) participant, kind, timestamp, value (its first line is 'a,b')"),
    (b"participant,kind,timestamp,value\n", "no usable rows; expected a header line"),
    (b"participant,kind,timestamp,value\nP1,eda\n", "no usable rows (1 skipped)"),
    (b"\xff\xfe\x00\x01", "not a text CSV (not UTF-8)"),
])
def test_unusable_csv_says_what_and_how_in_one_line(tmp_path, content, says):
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as info:
        load_recording(path)
    msg = str(info.value)
    assert says in msg and "\n" not in msg and "but got ." not in msg, msg


def test_short_rows_and_non_finite_values_are_skipped_and_counted(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("participant,kind,timestamp,value\nP1,eda,10,4.0\nP1,eda\nP1,eda,11,inf\n,eda,12,4.1\n"
                    "P1,eda,12,4.2\nP2,rr,10,0.8\n")
    rec = load_recording(path)
    (eda,) = [s for s in rec.streams if s.descriptor.kind == "eda"]
    np.testing.assert_array_equal(eda.timestamps, [10.0, 12.0])
    np.testing.assert_array_equal(eda.signal, [4.0, 4.2])
    assert rec.problems == ["3 rows with an unknown kind, no participant, too few fields or a timestamp/value that "
                            "is not a finite number were skipped."]
