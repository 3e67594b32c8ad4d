"""Batch analysis (attune_monitor.batch): a Dask LocalCluster and a scheduler in another process give the same
results as ``--jobs 1``; a corrupt file is reported while the others go on; kept results make a re-run skip the
files that are up to date and re-run a changed one; ``--path-map``; one line without Dask."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from attune_monitor.batch import INSTALL_HINT, BatchError, ResultStore, parse_path_map, to_local, to_remote  # noqa: E402
from attune_monitor.ui.cli import main  # noqa: E402
from attune_monitor.ui.commands.analyze import run_files  # noqa: E402

CLI = [sys.executable, "-m", "attune_monitor.ui.cli"]
DASK = str(Path(sys.executable).with_name("dask"))
#: (name, scenario, seed, seconds): short simulated sessions, each with scripted ruptures flagged.
SESSIONS = (("grp3", "group-rupture", 3, 400.0), ("couple4", "couple-rupture-repair", 4, 420.0),
            ("grp5", "group-rupture", 5, 400.0))


def _simulate(path: Path, scenario: str, seed: int, seconds: float) -> None:
    from attune_monitor.acquisition.physiology import simulate_session
    from attune_monitor.acquisition.scenario import load_scenario
    from attune_monitor.acquisition.simulator import XDF_TIME_ORIGIN, write_session_xdf

    session = simulate_session(load_scenario(scenario), seed, seconds)
    write_session_xdf(session, path, time_origin=XDF_TIME_ORIGIN)
    truth = dict(session.truth, time_origin=XDF_TIME_ORIGIN)
    path.with_name(path.stem + ".truth.json").write_text(json.dumps(truth))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three simulated recordings (with truth files) and a corrupt one; their ``--jobs 1`` results."""
    d = tmp_path_factory.mktemp("batch")
    for name, scenario, seed, seconds in SESSIONS:
        _simulate(d / f"{name}.xdf", scenario, seed, seconds)
    (d / "broken.xdf").write_bytes(b"XDF:" + b"\x00garbage" * 10)
    (d / "broken.truth.json").write_text(json.dumps({"ruptures": [], "duration_s": 60.0}))
    files = [str(d / f"{n}.xdf") for n, *_ in SESSIONS] + [str(d / "broken.xdf")]
    ref = run_files(files, [dict(preset="balanced")] * len(files)).results
    assert [r.code for r in ref] == [0, 0, 0, 2], [r.message for r in ref]
    assert all(r.doc["episodes"] for r in ref[:3])  # every session has episodes to compare
    return {"dir": d, "files": files, "ref": ref}


def _same(a, b) -> None:
    """``a`` is ``b``'s result (``b`` may be the same recording under another path)."""
    assert a.code == b.code and a.message.replace(a.path, b.path) == b.message
    if a.code == 0:
        assert a.doc["recording"] == a.path and b.doc["recording"] == b.path
        # episodes, pairs, attunement, losses: the whole attune.analysis/1 document
        assert dict(a.doc, recording=b.path) == b.doc
        assert a.flagged_s == b.flagged_s and a.origin == b.origin and a.summary.replace(a.path, b.path) == b.summary


def _listening(pids) -> set:
    """``(ip, port)`` of the TCP sockets these processes listen on."""
    import psutil

    out = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        out |= {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return out


def _tree(pid) -> list:
    import psutil

    try:
        return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


@pytest.mark.timeout(120)
def test_local_cluster_same_as_jobs_1_and_corrupt_file_reported(folder, monkeypatch):
    seen = []
    before = _listening(_tree(os.getpid()))
    during = set()

    def on_result(i, res):
        seen.append(i)
        during.update(_listening(_tree(os.getpid())) - before)  # the cluster's scheduler, nannies, workers

    t0 = time.monotonic()
    monkeypatch.chdir(folder["dir"])  # relative names: the workers get absolute ones, the results say the given ones
    names = [Path(f).name for f in folder["files"]]
    report = run_files(names, [dict(preset="balanced")] * 4, dask_workers=2, on_result=on_result)
    assert time.monotonic() - t0 < 60
    assert len(during) >= 3 and {ip for ip, _ in during} == {"127.0.0.1"}, during  # nothing beyond loopback
    assert 8787 not in {port for _, port in during}  # no dashboard on its usual port
    assert seen == [0, 1, 2, 3]  # handed on in input order
    for got, ref in zip(report.results, folder["ref"]):
        _same(got, ref)
    bad = report.results[3]
    assert bad.code == 2 and bad.message.startswith("broken.xdf: ")
    assert [r.path for r in report.results] == names
    assert report.analysed == 4 and report.skipped == 0


def _worker_env():
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


@pytest.mark.timeout(120)
def test_local_cluster_workers_keep_glibcs_own_trim_threshold(monkeypatch):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which switches off glibc's dynamic mmap
    threshold: an analysis then spent a third of its time in page faults (1.6x the time of --jobs). Our local
    cluster's workers run without it, and keep Dask's one-thread limits; Dask's own setting is untouched after."""
    import dask

    from attune_monitor.batch import PRE_SPAWN_ENVIRON, dask_client

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(dask.config.get(PRE_SPAWN_ENVIRON))
    assert "MALLOC_TRIM_THRESHOLD_" in before  # Dask's default, the premise
    with dask_client(n_workers=1) as client:
        (env,) = client.run(_worker_env).values()
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert dask.config.get(PRE_SPAWN_ENVIRON) == before


@pytest.mark.timeout(120)
def test_rerun_skips_up_to_date_and_reruns_a_changed_file(folder, tmp_path):
    d = tmp_path / "rec"
    shutil.copytree(folder["dir"], d)
    files = [str(d / Path(f).name) for f in folder["files"]]
    store = ResultStore(tmp_path / "cache")
    kw = [dict(preset="balanced")] * 4
    calls = []
    first = run_files(files, kw, store=store, key_options={"preset": "balanced"})
    assert first.analysed == 4 and first.skipped == 0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3  # the corrupt file is not kept: it is tried again
    second = run_files(files, kw, store=store, key_options={"preset": "balanced"},
                       on_result=lambda i, r: calls.append(i))
    assert second.skipped == 3 and second.analysed == 1 and calls == [0, 1, 2, 3]
    for got, ref in zip(second.results, folder["ref"]):
        _same(got, ref)
    # another preset is another result
    other = run_files(files[2:3], [dict(preset="sensitive")], store=store, key_options={"preset": "sensitive"})
    assert other.analysed == 1 and other.skipped == 0
    # a changed recording is analysed again, the others are not
    _simulate(Path(files[0]), "group-rupture", 11, 400.0)
    third = run_files(files, kw, store=store, key_options={"preset": "balanced"})
    assert third.analysed == 2 and third.skipped == 2
    fresh = run_files(files[:1], kw[:1]).results[0]
    _same(third.results[0], fresh)
    assert third.results[0].doc != folder["ref"][0].doc
    forced = run_files(files[1:2], kw[1:2], store=store, key_options={"preset": "balanced"}, force=True)
    assert forced.analysed == 1 and forced.skipped == 0
    _same(forced.results[0], folder["ref"][1])


def test_path_map():
    pm = parse_path_map(["/data/study=/mnt/lab/study", "/data=/srv/data"])
    assert to_remote("/data/study/a.xdf", pm) == "/mnt/lab/study/a.xdf"  # the longest local prefix wins
    assert to_remote("/data/other/b.xdf", pm) == "/srv/data/other/b.xdf"
    assert to_remote("/datax/c.xdf", pm) == "/datax/c.xdf"  # a prefix is a whole folder name
    assert to_local("/mnt/lab/study/a.xdf: unreadable XDF", pm) == "/data/study/a.xdf: unreadable XDF"
    for bad in ("nodelimiter", "=/x", "/x="):
        with pytest.raises(BatchError, match="expected LOCAL=REMOTE"):
            parse_path_map([bad])


@pytest.mark.parametrize("argv,expect", [
    (["--dask", "0"], "'--dask'"),
    (["--dask", "2", "--scheduler", "tcp://127.0.0.1:9"], "give one of them"),
    (["--dask", "2", "--jobs", "2"], "drop --jobs"),
    (["--path-map", "/a=/b"], "with --dask or --scheduler"),
    (["--dask", "1", "--path-map", "nope"], "expected LOCAL=REMOTE"),
])
def test_batch_options_refused_in_one_line(folder, capsys, argv, expect):
    code = main(["analyze", folder["files"][0], *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expect in err[0], err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["analyze", "evaluate"])
def test_without_dask_one_line_says_how_to_install(folder, command):
    target = folder["files"][0] if command == "analyze" else str(folder["dir"])
    code = ("import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None; "
            "from attune_monitor.ui.cli import main; "
            f"sys.exit(main([{command!r}, {target!r}, '--dask', '2']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and INSTALL_HINT in lines[0], p.stderr


def _start(cmd, log):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(180)
def test_scheduler_in_another_process_end_to_end(folder, tmp_path):
    """``dask scheduler`` + ``dask worker`` started as the docs say (loopback only, no dashboard), then
    ``attune analyze --scheduler`` and ``attune evaluate --scheduler`` as subprocesses."""
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "dask.log", "w")
    # --no-dashboard alone leaves an HTTP server (metrics, health) on 0.0.0.0: its address is given too
    procs = [_start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(sched_file)], log)]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(_start([DASK, "worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1",
                             "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--dashboard-address",
                             "127.0.0.1:0", "--memory-limit", "0"], log))
        # the workers read the recordings under another path: the local names do not exist on this side
        remote = tmp_path / "remote"
        shutil.copytree(folder["dir"], remote)
        local = tmp_path / "local"
        files = [str(local / Path(f).name) for f in folder["files"]]
        cache = tmp_path / "cache"
        cmd = [*CLI, "analyze", *files, "--scheduler", address, "--path-map", f"{local}={remote}",
               "--json", str(tmp_path / "out") + "/", "--cache", str(cache)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
        listening = _listening([pid for proc in procs for pid in _tree(proc.pid)])
        assert len(listening) >= 4 and {ip for ip, _ in listening} == {"127.0.0.1"}, listening
        assert p.returncode == 2, p.stderr  # the corrupt file
        errs = [x for x in p.stderr.splitlines() if x.strip()]
        assert len(errs) == 1 and "error" in errs[0] and str(local / "broken.xdf") in errs[0], p.stderr
        assert str(remote) not in p.stdout + p.stderr  # messages name the local paths
        for f, ref in zip(files[:3], folder["ref"]):
            doc = json.loads((tmp_path / "out" / f"{Path(f).stem}.analysis.json").read_text())
            assert doc["episodes"] == ref.doc["episodes"] and doc["pairs"] == ref.doc["pairs"]
            assert f in p.stdout
        # again: every good file is up to date (kept on this side), the corrupt one is tried again
        p2 = subprocess.run(cmd, capture_output=True, text=True, timeout=150)
        assert p2.returncode == 2 and "skipped 3 up to date" in p2.stderr, p2.stderr
        # evaluate with the same cache, now that the files are here too: the same bytes and preset are the same
        # keys, so it scores the kept results; the scores are those of the --jobs 1 results
        from attune_monitor.evaluation import aggregate, armed_spans_from_result, detections_from_result, score_file

        shutil.copytree(folder["dir"], local)
        os.remove(local / "broken.xdf")
        os.remove(local / "broken.truth.json")
        p_d = subprocess.run([*CLI, "evaluate", str(local), "--scheduler", address, "--json", str(tmp_path / "d.json"),
                              "--cache", str(cache)], capture_output=True, text=True, timeout=150)
        assert p_d.returncode == 0, p_d.stderr
        assert "skipped 3 up to date" in p_d.stderr
        scores = []
        for f, ref in zip(folder["files"][:3], folder["ref"]):
            truth = json.loads(Path(f).with_name(Path(f).stem + ".truth.json").read_text())
            scores.append(score_file(detections_from_result(ref, truth), truth, Path(f).name,
                                     duration_s=float(truth["duration_s"]),
                                     armed_spans=armed_spans_from_result(ref, truth)))
        got = json.loads((tmp_path / "d.json").read_text())
        assert got["overall"] == json.loads(json.dumps(aggregate(scores)))
        assert got["overall"]["truth_ruptures"] == 4 and got["overall"]["detected"] >= 1
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "not-an-address"])
def test_unreachable_scheduler_one_line(address):
    from attune_monitor.batch import dask_client
    from attune_monitor.errors import AttuneError

    with pytest.raises(AttuneError, match=r"could not reach the Dask scheduler at .*start one with 'dask scheduler"):
        with dask_client(address, timeout_s=1.0):
            pass
