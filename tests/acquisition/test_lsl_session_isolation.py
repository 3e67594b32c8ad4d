"""LSL sessions keep parallel test workers apart.

``tests/conftest.py`` gives every pytest process (each xdist worker, or the one
serial process) its own copy of ``acquisition/lsl_api.cfg`` with
``[lab] SessionID = attune-test-<worker>-<pid>``. liblsl answers a resolver only
for outlets of the same SessionID, so a worker's resolvers never see another
worker's streams (nor another engineer's test run on the same computer). These
tests show it as a known truth: an outlet in a child process under one
SessionID is found under that SessionID and not under another, by pylsl and by
mne-lsl (its own bundled liblsl), and not by this test process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from attune_monitor.acquisition.lslconfig import DEFAULT_CONFIG

from ..conftest import LSL_SESSION_ID, session_config_text

ROOT = Path(__file__).resolve().parents[2]

#: A child process with one outlet under its LSLAPICFG; says "ready" and lives until its stdin closes.
_OUTLET = textwrap.dedent(
    """
    import sys
    from attune_monitor.acquisition.lsl import pylsl
    o = pylsl.StreamOutlet(pylsl.StreamInfo("isolation probe", "Markers", 1, 0, "string", sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.read()
    """
)

#: A child process that resolves by source_id under its LSLAPICFG (pylsl or mne-lsl) and prints how many it found.
_RESOLVE = textwrap.dedent(
    """
    import sys
    sid, timeout, how = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    if how == "pylsl":
        from attune_monitor.acquisition.lsl import pylsl
        print(len(pylsl.resolve_byprop("source_id", sid, 1, timeout)))
    else:
        from mne_lsl.lsl import resolve_streams
        print(len(resolve_streams(timeout=timeout, source_id=sid)))
    """
)


def _config(tmp_path: Path, session: str) -> Path:
    path = tmp_path / session / "lsl_api.cfg"
    path.parent.mkdir()
    path.write_text(session_config_text(session))
    return path


def _env(cfg: Path) -> dict:
    return dict(os.environ, LSLAPICFG=str(cfg), PYTHONPATH=str(ROOT))


def _found_by_child(cfg: Path, sid: str, how: str, timeout: float) -> int:
    out = subprocess.run([sys.executable, "-c", _RESOLVE, sid, str(timeout), how], env=_env(cfg), cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


def test_this_process_runs_in_its_own_lsl_session():
    """The config in force is the shipped one plus this worker's SessionID (and is named lsl_api.cfg)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    assert LSL_SESSION_ID == f"attune-test-{worker}-{os.getpid()}"
    cfg = Path(os.environ["LSLAPICFG"])
    assert cfg.name == "lsl_api.cfg" and cfg != DEFAULT_CONFIG
    text = cfg.read_text()
    assert text == session_config_text(LSL_SESSION_ID)
    assert text.replace(f"SessionID = {LSL_SESSION_ID}\n", "") == DEFAULT_CONFIG.read_text()


@pytest.mark.parametrize("how", ["pylsl", "mne_lsl"])
def test_a_resolver_sees_only_outlets_of_its_own_session(tmp_path, how):
    if how == "mne_lsl":
        pytest.importorskip("mne_lsl")
    token = uuid.uuid4().hex[:10]
    mine, other = _config(tmp_path, f"iso-a-{token}"), _config(tmp_path, f"iso-b-{token}")
    sid = f"iso-{token}"
    outlet = subprocess.Popen([sys.executable, "-c", _OUTLET, sid], env=_env(mine), cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert outlet.stdout.readline().strip() == "ready"
        # the same session finds it (resolve returns as soon as it is there; generous on a loaded machine); for
        # mne-lsl test_lsl_config.test_mne_lsl_finds_every_stream_on_this_machine shows it (under this worker's
        # session), and its import is slow
        if how == "pylsl":
            assert _found_by_child(mine, sid, how, 10.0) == 1
        # another session does not, though the outlet is on this computer, on loopback, all along
        assert _found_by_child(other, sid, how, 2.0) == 0
        # nor does this test process (another worker's session, as far as the outlet is concerned)
        from attune_monitor.acquisition.lsl import pylsl

        assert pylsl.resolve_byprop("source_id", sid, 1, 1.0) == []
    finally:
        outlet.stdin.close()
        outlet.wait(timeout=10)
        outlet.stdout.close()
