"""Property-based fuzzing of the CLI entry points (``ui.cli.main``, in this process) on careless inputs.

``attune analyze``, ``export``, ``replay`` (headless, fastest speed, bounded) and ``evaluate`` get short, empty,
truncated, bit-flipped and garbage XDF files, XDF files of odd but well-formed streams (any type, rate, unit,
NaN/inf values, empty streams, Unix or LSL clocks), tidy CSV files with odd rows, E4 export folders with odd
lines, and odd truth files. The property, for every input: exit code 0 or 2; with 2, exactly one line on
stderr (``attune CMD: error: ...``), with 0 no error line; never a traceback; never longer than the deadline.

Examples are drawn deterministically (``derandomize``), so CI runs the same cases every time; set
``ATTUNE_FUZZ_EXAMPLES=500`` to explore more.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from attune_monitor.acquisition.xdf_writer import XdfWriter  # noqa: E402
from attune_monitor.ui.cli import main  # noqa: E402

N_EXAMPLES = int(os.environ.get("ATTUNE_FUZZ_EXAMPLES", "30"))
#: Longest an input may take (s): a hang is a failure, not a slow pass.
DEADLINE_S = 20.0
FUZZ = settings(max_examples=N_EXAMPLES, deadline=timedelta(seconds=DEADLINE_S), derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], database=None)


def _valid_xdf() -> bytes:
    """A real 40-s simulated couple (Attune's writer): the seed that truncations and bit flips start from."""
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import write_session_xdf

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.xdf"
        write_session_xdf(simulate_session(load_scenario("couple-calm"), 5, 40.0, source_prefix="fuzz"), p)
        return p.read_bytes()


VALID = _valid_xdf()


def run_cli(args: list[str], cwd: Path) -> tuple[int, str, str, float]:
    """``attune ARGS`` in this process; returns (exit code, stdout, stderr, seconds)."""
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue(), time.monotonic() - t0


def check(args: list[str], cwd: Path) -> int:
    code, out, err, seconds = run_cli(args, cwd)
    assert "Traceback" not in err and "Traceback" not in out, (args, err)
    assert code in (0, 2), (args, code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith(f"attune {args[0]}: error: "), (args, err)
    else:  # warnings and notes may come along, errors may not
        assert not [ln for ln in lines if ": error:" in ln or "internal error" in ln], (args, err)
    assert seconds < DEADLINE_S, (args, seconds)
    return code


def _command(data, path: Path, folder: Path) -> list[str]:
    """One of analyze / export (any format) / replay (headless, fastest, at most 2 s) on ``path``."""
    what = data.draw(st.sampled_from(["analyze", "export-csv", "export-edf", "export-fif", "replay"]), label="cmd")
    if what == "analyze":
        return ["analyze", str(path), "--json", str(folder / "out.json")]
    if what == "replay":
        return ["replay", str(path), "--headless", "--speed", "1000", "--quit-after", "2"]
    fmt = what.split("-")[1]
    out = folder / {"csv": "o-csv", "edf": "o.edf", "fif": "o_raw.fif"}[fmt]
    return ["export", str(path), "--format", fmt, "--out", str(out), "--force"]


# -- damaged XDF files -------------------------------------------------------------------------------------------
@st.composite
def damaged_xdf(draw) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "insert", "empty", "magic-only", "garbage"]))
    if how == "truncate":
        return VALID[: draw(st.integers(0, len(VALID) - 1))]
    if how == "flip":
        b = bytearray(VALID)
        for pos, val in draw(st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)), min_size=1,
                                      max_size=30)):
            b[pos] = val
        return bytes(b)
    if how == "insert":
        pos = draw(st.integers(0, len(VALID)))
        return VALID[:pos] + draw(st.binary(min_size=1, max_size=64)) + VALID[pos:]
    if how == "empty":
        return b""
    if how == "magic-only":
        return b"XDF:" + draw(st.binary(max_size=64))
    return draw(st.binary(min_size=1, max_size=512))


@pytest.mark.timeout(120)
@FUZZ
@given(blob=damaged_xdf(), data=st.data())
def test_damaged_xdf(blob, data):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "r.xdf").write_bytes(blob)
        check(_command(data, d / "r.xdf", d), d)


# -- well-formed XDF files of odd streams ------------------------------------------------------------------------
ODD_VALUES = st.sampled_from([0.0, 1.0, -1.0, 800.0, 70.0, 5.0, 1e30, -1e30, math.nan, math.inf, -math.inf])


@st.composite
def odd_streams(draw) -> list[dict]:
    streams = []
    for k in range(draw(st.integers(1, 4))):
        typ = draw(st.sampled_from(["RR", "ECG", "EDA", "PPG", "HR", "GSR", "Markers", "Accelerometer"]))
        fmt = "string" if typ == "Markers" else draw(st.sampled_from(["float32", "double64", "int16"]))
        srate = draw(st.sampled_from([0.0, 4.0, 130.0, 64.0, 32.0, 0.001, 1e5]))
        nch = 1 if fmt == "string" else draw(st.integers(1, 3))
        n = draw(st.sampled_from([0, 1, 2, 10, 300, 3000]))
        clock = draw(st.sampled_from([0.0, 1000.0, 1.7e9]))
        regular = srate > 0 and draw(st.booleans())
        span = draw(st.sampled_from([1.0, 60.0, 600.0, 1e6]))
        seed = draw(st.integers(0, 2**16))
        g = np.random.default_rng(seed)
        ts = clock + (np.arange(n) / srate if regular else np.sort(g.uniform(0, span, n)))
        if fmt == "string":
            vals = [[draw(st.sampled_from(["x", "", '{"kind": "note", "text": "\u00e9"}', "{", "\x00\x14"]))]
                    for _ in range(n)]
        else:
            base = draw(ODD_VALUES)
            vals = base + g.normal(0, 1, (n, nch))
            vals[g.random((n, nch)) < draw(st.sampled_from([0.0, 0.1, 1.0]))] = np.nan
            if fmt == "int16":
                vals = np.nan_to_num(vals, posinf=100, neginf=-100).clip(-30000, 30000).astype(np.int16)
        unit = draw(st.sampled_from(["ms", "s", "uS", "S", "kOhm", "mV", "V", "bpm", "", "0", "weird", "µS"]))
        who = draw(st.sampled_from([f"P{k % 2 + 1}"] * 3 + ["", "P1", "a b/c"]))
        streams.append(dict(header=dict(name=f"P{k % 2 + 1} {typ}", type=typ, channel_count=nch, nominal_srate=srate,
                                        channel_format=fmt,
                                        desc={"participant": who, "channels": [{"label": typ, "unit": unit}] * nch}),
                            ts=ts, vals=vals))
    return streams


@pytest.mark.timeout(120)
@FUZZ
@given(streams=odd_streams(), data=st.data())
def test_odd_but_well_formed_xdf(streams, data):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        with XdfWriter(d / "r.xdf", fsync=False) as w:
            for s in streams:
                sid = w.add_stream(s["header"])
                if len(s["ts"]):
                    w.write_samples(sid, s["ts"], s["vals"])
        check(_command(data, d / "r.xdf", d), d)


# -- CSV and E4 folders -----------------------------------------------------------------------------------------
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 120), st.floats(0.3, 1.5),
                    st.sampled_from(["", "x", "1,5", "1e999", "-0"]))


@st.composite
def tidy_csv(draw) -> str:
    header = draw(st.sampled_from(["participant,kind,timestamp,value", "participant,kind,timestamp,value",
                                   "", "a,b", "kind,participant,value,timestamp",
                                   "\ufeffparticipant,kind,timestamp,value"]))
    rows = draw(st.lists(st.tuples(st.sampled_from(["P1", "P2", "P3", "", "P 1", "é"]),
                                   st.sampled_from(["rr", "hr", "eda", "ecg", "ppg", "RR", "xx", ""]),
                                   NUMBERS, NUMBERS), max_size=300))
    lines = [header] + [",".join(str(x) for x in r) for r in rows]
    if draw(st.booleans()):  # a regular, plausible part too, so that some files get far into the pipeline
        t0 = draw(st.sampled_from([0.0, 1000.0, 1.7e9]))
        for who in ("P1", "P2"):
            lines += [f"{who},hr,{t0 + i},{70 + (i % 7)}" for i in range(draw(st.sampled_from([5, 60, 200])))]
    return "\n".join(lines)


@st.composite
def e4_folder(draw) -> dict:
    files = {}
    for name in draw(st.lists(st.sampled_from(["EDA.csv", "HR.csv", "BVP.csv", "IBI.csv"]), min_size=1, max_size=4,
                              unique=True)):
        first = draw(st.sampled_from(["1700000000.000000", "abc", "", "1e30", "-5", "nan", ",EDA,time"]))
        second = draw(st.sampled_from(["4.000000", "1.000000", "0", "-1", "nan", "x", "1e-9", "1e9"]))
        body = draw(st.lists(NUMBERS.map(str), max_size=200))
        files[name] = "\n".join([first, second, *body])
    return files


@pytest.mark.timeout(120)
@FUZZ
@given(csv_text=tidy_csv(), e4=e4_folder(), use_csv=st.booleans(), data=st.data())
def test_csv_and_e4_inputs(csv_text, e4, use_csv, data):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if use_csv:
            path = d / "r.csv"
            path.write_text(csv_text, encoding="utf-8")
        else:
            path = d / "E4"
            path.mkdir()
            for name, text in e4.items():
                (path / name).write_text(text)
        check(_command(data, path, d), d)


# -- evaluate: recordings with odd truth files -------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(
                        st.sampled_from(["ruptures", "confounds", "onset_s", "offset_s", "who", "pairs", "kind",
                                         "participants", "duration_s", "time_origin", "repair_s", "style"]),
                        kids, max_size=5), max_leaves=12)


@st.composite
def truth_text(draw) -> str:
    how = draw(st.sampled_from(["json", "rupture", "garbage"]))
    if how == "garbage":
        return draw(st.text(max_size=40))
    if how == "json":
        return json.dumps(draw(JSON))
    r = {"onset_s": draw(st.one_of(st.floats(0, 60), st.text(max_size=2))), "offset_s": draw(st.floats(0, 90)),
         "who": draw(st.sampled_from(["P1", "P2", None, 3])), "pairs": draw(st.sampled_from([[["P1", "P2"]], [], "x"]))}
    return json.dumps({"ruptures": [r], "duration_s": draw(st.sampled_from([40.0, "a", -1.0])),
                       "time_origin": draw(st.sampled_from([1000.0, 0.0, "x"]))})


@pytest.mark.timeout(120)
@FUZZ
@given(truth=truth_text(), damaged=st.booleans(), cut=st.integers(0, len(VALID)))
def test_evaluate_with_odd_truth(truth, damaged, cut):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        (d / "a.xdf").write_bytes(VALID[:cut] if damaged else VALID)
        (d / "a.truth.json").write_text(truth, encoding="utf-8")
        check(["evaluate", str(d), "--json", str(d / "out" / "e.json")], d)
