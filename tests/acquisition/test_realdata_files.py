"""Every real XDF in ../shared/realdata gets a result or a clear one-line exit-2 reason; the real E4 dyad analyses.

None of the XDF files there holds two people (single Polar H10 recordings, the XDF reference files, malformed
files), so each must give exit 2 with the reason a user can act on; the EmoPairCompete E4 dyad (two people,
4 rounds x rest / competition / recovery) must analyse end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attune_monitor.ui.analysis_io import validate
from attune_monitor.ui.commands.analyze import analyze_file

pytestmark = pytest.mark.realdata

#: file -> what the one-line reason must say
XDF_EXPECT = {
    "PolarBand2lsl/data.xdf": "needs at least 2 participants",
    "spectHR/SUB_013.xdf": "needs at least 2 participants",
    "spectHR/sub001.xdf": "needs at least 2 participants",
    "xdf-example-files/clock_resets.xdf": "no heart (RR/HR/ECG/PPG) or EDA streams",
    "xdf-example-files/empty_streams.xdf": "no heart (RR/HR/ECG/PPG) or EDA streams",
    "xdf-example-files/minimal.xdf": "no heart (RR/HR/ECG/PPG) or EDA streams",
    "xdf_rs-tests/chunk_length_lie.xdf": "no streams could be read (bytes 71 .. 75 are not XDF chunks",
    "xdf_rs-tests/out_of_order_clock_offsets.xdf": "no heart (RR/HR/ECG/PPG) or EDA streams",
    "xdf_rs-tests/out_of_order_sample_chunk.xdf": "no heart (RR/HR/ECG/PPG) or EDA streams",
}


def test_every_xdf_is_listed(realdata):
    found = sorted(str(p.relative_to(realdata)) for p in realdata.rglob("*.xdf"))
    assert found == sorted(XDF_EXPECT), "a new real XDF: add it to XDF_EXPECT with the reason it must give"


@pytest.mark.parametrize("name", sorted(XDF_EXPECT))
def test_real_xdf_gets_clear_reason(realdata, name):
    res = analyze_file(str(realdata / name))
    assert res.code == 2, (res.code, res.message)
    assert "\n" not in res.message and str(realdata / name) in res.message
    assert XDF_EXPECT[name] in res.message
    assert "internal error" not in res.message


def test_cli_on_all_real_xdf_one_line_each(realdata):
    files = [str(realdata / n) for n in sorted(XDF_EXPECT)]
    p = subprocess.run([sys.executable, "-m", "attune_monitor.ui.cli", "analyze", *files, "--jobs", "2"],
                       capture_output=True, text=True, timeout=110)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    errors = [x for x in p.stderr.splitlines() if x.startswith("attune analyze: error:")]
    assert len(errors) == len(files)
    for f, line in zip(files, errors):  # in input order
        assert f in line


def test_single_e4_folder_needs_two_people(realdata):
    res = analyze_file(str(realdata / "flirt-empatica"))
    assert res.code == 2 and "needs at least 2 participants" in res.message


@pytest.mark.timeout(120)
def test_e4_dyad_end_to_end(realdata, tmp_path):
    out = tmp_path / "d15.json"
    res = analyze_file(str(realdata / "emopaircompete" / "D1_5"), json_path=str(out))
    assert res.code == 0, res.message
    doc = json.loads(out.read_text())
    assert validate(doc) == []
    assert [p["id"] for p in doc["participants"]] == ["ID_1", "ID_2"]
    assert {r["modality"] for r in doc["pairs"]} == {"hr", "eda", "combined"}
    # about an hour of wall-clock time, 12 phases of ~5 min with gaps between them
    assert 2400 < doc["duration_s"] < 6 * 3600
    for r in doc["pairs"]:
        assert 0.2 < r["coverage"] <= 1.0, r
        assert r["mean_sync"] is not None and -1 <= r["mean_sync"] <= 1
    assert "ID_1-ID_2" in res.summary
