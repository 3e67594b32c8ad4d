"""The loopback-only LSL configuration is really the one liblsl uses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from attune_monitor.acquisition.lsl import pylsl
from attune_monitor.acquisition.lslconfig import _SCOPE_TEMPLATE, DEFAULT_CONFIG

from ..conftest import LSL_SESSION_ID

ROOT = Path(__file__).resolve().parents[2]
#: The config in force in this test process: the shipped one plus this worker's [lab] SessionID (tests/conftest.py).
IN_FORCE = Path(os.environ["LSLAPICFG"])


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
    assert IN_FORCE.read_text().replace(f"SessionID = {LSL_SESSION_ID}\n", "") == text


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
    from attune_monitor.acquisition.lsl import pylsl
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
        child.communicate(timeout=10)  # waits and closes the pipe


def test_child_processes_read_lslapicfg(tmp_path):
    """Our config is what a child process uses: change only its SessionID and its stream disappears."""
    assert _resolve_from_child(IN_FORCE, f"cfg-{uuid.uuid4()}") == 1
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
        env = dict(os.environ, LSLAPICFG=str(IN_FORCE))
        child = subprocess.run([sys.executable, "-c", _MNE_RESOLVE, tag, "2.0"], env=env, capture_output=True,
                               text=True, timeout=60)
        assert child.returncode == 0, child.stderr[-2000:]
        assert int(child.stdout.strip().splitlines()[-1]) == n
        ours = pylsl.resolve_bypred(f"starts-with(source_id,'{tag}')", n, 5.0)
        assert len(ours) == n
    finally:
        del outlets


def _cfg_int(key: str) -> int:
    m = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*$", DEFAULT_CONFIG.read_text(), re.M)
    return int(m.group(1)) if m else {"BasePort": 16572, "PortRange": 32, "MulticastPort": 16571}[key]


def test_more_than_32_streams_on_this_machine_are_all_found():
    """liblsl finds a stream on this machine only on the ports BasePort .. BasePort + PortRange - 1 (unicast to
    KnownPeers); its default range of 32 left the 33rd stream undiscoverable. The shipped range is 256 and no
    outlet leaves it (AllowRandomPorts = false: the firewall rule of hardware.md covers them all)."""
    text = DEFAULT_CONFIG.read_text()
    assert re.search(r"^\s*PortRange\s*=\s*256\s*$", text, re.M)
    assert re.search(r"^\s*AllowRandomPorts\s*=\s*false\s*$", text, re.M)
    assert "AllowRandomPorts = false" in _SCOPE_TEMPLATE and "PortRange = 256" in _SCOPE_TEMPLATE
    tag = f"cfg-many-{uuid.uuid4().hex[:10]}"
    n = 40
    outlets = [pylsl.StreamOutlet(pylsl.StreamInfo(f"probe {i}", "EEG", 1, 10.0, "float32", f"{tag}-{i}"))
               for i in range(n)]
    try:
        lo, hi = _cfg_int("BasePort"), _cfg_int("BasePort") + _cfg_int("PortRange")
        for o in outlets:
            xml = o.get_info().as_xml()
            ports = [int(p) for p in re.findall(r"<v4(?:data|service)_port>(\d+)<", xml)]
            assert len(ports) == 2 and all(lo <= p < hi for p in ports), ports
        found = pylsl.resolve_bypred(f"starts-with(source_id,'{tag}')", n, 10.0)
        assert len(found) == n
    finally:
        del outlets


_LISTENING = textwrap.dedent(
    """
    import json, os, re, socket, sys
    import psutil
    from attune_monitor.acquisition.lsl import pylsl
    o = pylsl.StreamOutlet(pylsl.StreamInfo("cfgprobe", "EEG", 1, 10.0, "float32", sys.argv[1]))
    data = int(re.search(r"<v4data_port>(\\d+)<", o.get_info().as_xml()).group(1))
    conns = [(c.type == socket.SOCK_STREAM, c.laddr.ip, c.laddr.port, c.status)
             for c in psutil.Process(os.getpid()).net_connections(kind="inet")]
    print(json.dumps({"data_port": data, "conns": conns}), flush=True)
    sys.stdin.readline()   # keep the outlet until the parent has looked
    """
)


def _listening(cfg: Path, sid: str):
    """A child process under ``cfg`` makes one outlet: (its data port, its sockets, the child)."""
    import json

    env = dict(os.environ, LSLAPICFG=str(cfg), PYTHONPATH=str(ROOT))
    child = subprocess.Popen([sys.executable, "-c", _LISTENING, sid], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    got = json.loads(child.stdout.readline())
    return got["data_port"], got["conns"], child


def test_outlets_listen_on_every_interface_as_hardware_md_says(tmp_path):
    """What hardware.md says holds: under the shipped config (and with ListenAddress = 127.0.0.1) liblsl's data
    server listens on 0.0.0.0, so anyone who reaches this computer's network address reads the stream; the
    firewall rules it gives cover exactly the ports the shipped config lets outlets use."""
    psutil = pytest.importorskip("psutil")
    listen_cfg = tmp_path / "listen.cfg"
    listen_cfg.write_text(DEFAULT_CONFIG.read_text().replace("[multicast]\n",
                                                             "[multicast]\nListenAddress = 127.0.0.1\n"))
    for cfg in (DEFAULT_CONFIG, listen_cfg):
        sid = f"cfg-listen-{uuid.uuid4().hex[:10]}"
        port, conns, child = _listening(cfg, sid)
        try:
            tcp = [c for c in conns if c[0] and c[3] == "LISTEN"]
            assert tcp and {c[1] for c in tcp} == {"0.0.0.0"}, conns  # not 127.0.0.1: liblsl offers no such setting
            assert port in {c[2] for c in tcp}
            # this computer's non-loopback addresses reach it (skipped where there is none, e.g. a bare netns)
            addrs = [a.address for al in psutil.net_if_addrs().values() for a in al
                     if a.family == socket.AF_INET and not a.address.startswith("127.")]
            for addr in addrs[:1]:
                with socket.create_connection((addr, port), timeout=5) as s:
                    s.sendall(b"LSL:fullinfo\r\n")
                    s.settimeout(5)
                    header = b""
                    while sid.encode() not in header and len(header) < 100_000:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        header += chunk
                assert sid.encode() in header  # the stream's full header, read through a LAN address
        finally:
            child.communicate(timeout=10)  # closes stdin (the child's cue to stop), waits, closes stdout
    hw = (ROOT / "hardware.md").read_text()
    first, last = _cfg_int("MulticastPort"), _cfg_int("BasePort") + _cfg_int("PortRange") - 1
    assert "**all interfaces (0.0.0.0)**" in hw and "ListenAddress = 127.0.0.1" in hw
    assert f'iifname != "lo" tcp dport {first}-{last} drop' in hw and f"--dport {first}:{last}" in hw
    assert f"-LocalPort {first}-{last}" in hw and f"port {first}:{last}" in hw


def test_a_chosen_scope_leaves_no_config_file_behind():
    """``--lsl-scope link`` writes a temporary config for its run; the run's exit deletes it (it piled up in /tmp).

    Nothing here touches liblsl (a link-scope outlet would leave loopback): the child only chooses the scope.
    """
    code = textwrap.dedent(
        """
        import os
        from attune_monitor.acquisition.lslconfig import configure
        path = configure("link")
        print(path, os.path.exists(path), "ResolveScope = link" in path.read_text())
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path, existed, linked = out.stdout.split()
    assert (existed, linked) == ("True", "True")
    assert Path(path).name.startswith("attune-lsl-link-")
    assert not Path(path).exists()


_OUT_OF_PORTS = textwrap.dedent(
    """
    import json, sys, uuid
    from attune_monitor.acquisition.lsl import OutletError, open_outlet, pylsl
    tag = uuid.uuid4().hex[:8]
    outlets, err = [], None
    for i in range(12):
        try:
            outlets.append(open_outlet(pylsl.StreamInfo(f"probe {i}", "EEG", 1, 10.0, "float32", f"{tag}-{i}")))
        except OutletError as exc:
            err = str(exc)
            break
    print(json.dumps({"opened": len(outlets), "error": err}))
    """
)


def test_an_outlet_beyond_the_port_range_is_a_clear_error(tmp_path):
    """With AllowRandomPorts = false liblsl refuses an outlet once the range is used up ('could not create stream
    outlet.'); Attune says which stream, which ports and what to do (``attune`` turns it into its one-line exit 2).
    A configuration of 3 ports: at most 3 outlets (fewer when other tests' outlets hold some of them)."""
    cfg = tmp_path / "lsl_api.cfg"
    cfg.write_text(DEFAULT_CONFIG.read_text().replace("PortRange = 256", "PortRange = 3"))
    assert "PortRange = 3" in cfg.read_text()
    env = dict(os.environ, LSLAPICFG=str(cfg))
    out = subprocess.run([sys.executable, "-c", _OUT_OF_PORTS], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["opened"] <= 3 and res["error"], res
    err = res["error"]
    assert f"probe {res['opened']}" in err and "16572-16574" in err and "PortRange = 3" in err and str(cfg) in err
    assert "Close other LSL senders" in err
