"""The loopback-only LSL configuration is really the one liblsl uses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from acquisition.lsl import pylsl
from acquisition.lslconfig import _SCOPE_TEMPLATE, DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_config_is_loopback_only():
    text = DEFAULT_CONFIG.read_text()
    # liblsl rolls back to its defaults (multicast on every interface) on a parse
    # error, silently at log level -3: '#' comments are one such error.
    assert not any(line.lstrip().startswith("#") for line in text.splitlines())
    assert re.search(r"^\s*IPv6\s*=\s*disable\s*$", text, re.M)
    assert re.search(r"^\s*ResolveScope\s*=\s*machine\s*$", text, re.M)
    assert re.search(r"^\s*Interfaces\s*=\s*\{127\.0\.0\.1\}\s*$", text, re.M)
    assert re.search(r"^\s*level\s*=\s*-3\s*$", text, re.M)
    # unicast discovery on loopback too: without it mne-lsl's liblsl finds 1 of N streams (test below)
    assert re.search(r"^\[lab\]\s*^\s*KnownPeers\s*=\s*\{127\.0\.0\.1\}\s*$", text, re.M)
    assert "KnownPeers = {127.0.0.1}" in _SCOPE_TEMPLATE.format(scope="link")
    assert os.environ["LSLAPICFG"] == str(DEFAULT_CONFIG)


def test_liblsl_runs_with_our_config():
    """An outlet made here reports no IPv6 ports: liblsl parsed our file (its default is IPv6 on)."""
    sid = f"cfg-{uuid.uuid4()}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo("cfgprobe", "Markers", 1, 0, "string", sid))
    try:
        found = pylsl.resolve_byprop("source_id", sid, 1, 5.0)
        assert len(found) == 1
        xml = found[0].as_xml()
        assert re.search(r"<v6service_port>0</v6service_port>", xml), xml
        assert not re.search(r"<v4service_port>0</v4service_port>", xml)
    finally:
        del outlet


_OUTLET = textwrap.dedent(
    """
    import sys, time
    from acquisition.lsl import pylsl
    o = pylsl.StreamOutlet(pylsl.StreamInfo("cfgprobe", "Markers", 1, 0, "string", sys.argv[1]))
    print("ready", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def _resolve_from_child(cfg: Path, sid: str) -> int:
    env = dict(os.environ, LSLAPICFG=str(cfg), PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", _OUTLET, sid, "8"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        return len(pylsl.resolve_byprop("source_id", sid, 1, 2.0))
    finally:
        child.kill()
        child.wait(timeout=10)


def test_child_processes_read_lslapicfg(tmp_path):
    """Our config is what a child process uses: change only its SessionID and its stream disappears."""
    assert _resolve_from_child(DEFAULT_CONFIG, f"cfg-{uuid.uuid4()}") == 1
    other = tmp_path / "other_session.cfg"
    other.write_text(DEFAULT_CONFIG.read_text() + "\n[lab]\nSessionID = not-attune\n")
    assert _resolve_from_child(other, f"cfg-{uuid.uuid4()}") == 0


_MNE_RESOLVE = textwrap.dedent(
    """
    import sys
    from mne_lsl.lsl import resolve_streams
    found = resolve_streams(timeout=float(sys.argv[2]))
    print(sum(s.source_id.startswith(sys.argv[1]) for s in found))
    """
)


def test_mne_lsl_finds_every_stream_on_this_machine():
    """mne-lsl (its own liblsl 1.17) resolves all N streams on this machine under the shipped config, not 1 of N
    (it found 1 of 6 before ``[lab] KnownPeers = {127.0.0.1}``); pylsl finds them all as well."""
    pytest.importorskip("mne_lsl")
    tag = f"cfg-mne-{uuid.uuid4().hex[:10]}"
    n = 6
    outlets = [pylsl.StreamOutlet(pylsl.StreamInfo(f"probe {i}", "EEG", 1, 10.0, "float32", f"{tag}-{i}"))
               for i in range(n)]
    try:
        env = dict(os.environ, LSLAPICFG=str(DEFAULT_CONFIG))
        child = subprocess.run([sys.executable, "-c", _MNE_RESOLVE, tag, "2.0"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert child.returncode == 0, child.stderr[-2000:]
        assert int(child.stdout.strip().splitlines()[-1]) == n
        ours = pylsl.resolve_bypred(f"starts-with(source_id,'{tag}')", n, 5.0)
        assert len(ours) == n
    finally:
        del outlets
