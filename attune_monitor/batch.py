"""Batch analysis of many recordings: local processes or a Dask cluster, resumable (no Qt).

The library behind ``attune analyze`` / ``attune evaluate`` with several files:

* :func:`run_batch` runs one task per recording, in this process, in ``--jobs N``
  local processes, on a local Dask cluster (``--dask N``) or on a running Dask
  scheduler (``--scheduler ADDRESS``); results stream back as they finish and
  are handed on in input order; a task that fails (its worker died, the file
  vanished) gives that file's failure, the others go on.
* :func:`content_key` and :class:`ResultStore`: a result is kept under a
  content hash (blake2b of the recording's bytes, the Attune version and the
  analysis options), so re-running skips files whose results are up to date and
  an interrupted batch resumes where it stopped; a changed file has another key.
* :func:`parse_path_map`: workers on other machines see the recordings under
  another path (``--path-map /data=/mnt/lab/data``); only the paths sent to
  the workers are rewritten.

Dask (``pip install 'attune-monitor[cluster]'``) is imported only when a Dask
option is used. See ``docs/cluster.md`` for the command lines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from attune_monitor.errors import AttuneError

logger = logging.getLogger(__name__)

__all__ = [
    "INSTALL_HINT", "RECORD_SCHEMA", "BatchError", "BatchReport", "ResultStore", "content_key", "file_digest",
    "parse_path_map", "to_remote", "to_local", "dask_client", "run_batch",
]

#: What to install for ``--dask`` / ``--scheduler`` (printed when Dask is missing).
INSTALL_HINT = "pip install 'attune-monitor[cluster]'"
#: Schema id of a stored result record.
RECORD_SCHEMA = "attune.batch-record/1"
_CHUNK = 1 << 20
#: Dask's loggers, kept quiet in the command's output (worker start/stop chatter).
_DASK_LOGGERS = ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker",
                 "distributed.core", "distributed.client", "distributed.comm", "tornado", "bokeh")


class BatchError(AttuneError, ValueError):
    """A batch cannot run as asked: Dask missing, the scheduler unreachable, a bad ``--path-map``.

    The message is one line that says how to fix it.
    """


# -- content hash ------------------------------------------------------------------------------------------------
def file_digest(path, digest_size: int = 20) -> str:
    """blake2b of a recording's bytes: a file, or every file in a folder (E4 exports) with its relative name.

    Parameters
    ----------
    path : str | Path
    digest_size : int
        Bytes of the digest (hex string twice as long).

    Returns
    -------
    digest : str

    Raises
    ------
    OSError
        When the file or folder cannot be read.
    """
    p = Path(path)
    h = hashlib.blake2b(digest_size=digest_size)
    files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
    for f in files:
        if p.is_dir():
            h.update(b"\0name\0" + str(f.relative_to(p).as_posix()).encode("utf-8", "surrogateescape") + b"\0")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


def content_key(path, options: dict, version: str | None = None) -> str | None:
    """The key a recording's result is kept under: blake2b of its bytes + the Attune version + the options.

    Parameters
    ----------
    path : str | Path
        Recording file or folder.
    options : dict
        The analysis options that change the result (JSON-serialisable; e.g. the preset and the roster's digest).
    version : str | None
        Default: ``attune_monitor.__version__``.

    Returns
    -------
    key : str | None
        40 hex digits; None when the recording cannot be read (it is then analysed, and its error reported).
    """
    if version is None:
        from attune_monitor import __version__ as version
    try:
        data = file_digest(path)
    except OSError:
        return None
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({"attune": version, "options": options, "data": data}, sort_keys=True).encode())
    return h.hexdigest()


class ResultStore:
    """Results kept by content key: ``<folder>/<key>.json`` (``attune.batch-record/1``), written atomically.

    Parameters
    ----------
    folder : str | Path
        Created (mode 0700) when missing.
    """

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path(self, key: str) -> Path:
        """Where the record of ``key`` lives."""
        return self.folder / f"{key}.json"

    def load(self, key: str | None) -> dict | None:
        """The stored result of ``key``; None when there is none, or it is unreadable or of another key."""
        if not key:
            return None
        try:
            rec = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("schema") != RECORD_SCHEMA or rec.get("key") != key:
            return None
        return rec

    def save(self, key: str, result: dict, **meta) -> Path:
        """Keep ``result`` (JSON-serialisable; NaN allowed) under ``key``; ``meta`` goes beside it."""
        from attune_monitor import __version__

        rec = {"schema": RECORD_SCHEMA, "key": key, "attune_version": __version__, **meta, "result": result}
        dest = self.path(key)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(rec, fh)
        os.replace(tmp, dest)
        return dest


# -- path map ----------------------------------------------------------------------------------------------------
def parse_path_map(items) -> list[tuple[str, str]]:
    """``LOCAL=REMOTE`` prefixes from ``--path-map`` (repeatable), longest local prefix first.

    Raises
    ------
    BatchError
        When an item has no ``=`` or an empty side.
    """
    out = []
    for item in items or ():
        local, sep, remote = str(item).partition("=")
        if not sep or not local or not remote:
            raise BatchError(f"Invalid value for '--path-map': expected LOCAL=REMOTE (e.g. /data=/mnt/lab/data), "
                             f"but got {item!r}.")
        out.append((os.path.abspath(local), remote.rstrip("/") or "/"))
    return sorted(out, key=lambda lr: -len(lr[0]))


def _swap(path: str, pairs) -> str:
    for src, dst in pairs:
        if path == src or path.startswith(src.rstrip("/") + "/"):
            return dst + path[len(src):] if src != "/" else dst.rstrip("/") + path
    return path


def to_remote(path, path_map) -> str:
    """The path a worker reads for ``path``.

    Absolute (a worker's working folder is not ours), with the first matching local prefix of ``path_map``
    rewritten.
    """
    return _swap(os.path.abspath(str(path)), path_map or ())


def to_local(text: str, path_map) -> str:
    """``text`` (a message from a worker) with remote prefixes turned back into the local ones."""
    for local, remote in path_map or ():
        text = text.replace(remote, local)
    return text


# -- Dask --------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_dask():
    """Dask's INFO/WARNING chatter (workers starting, closing, heartbeats) stays out of the command's output."""
    saved = {name: logging.getLogger(name).level for name in _DASK_LOGGERS}
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


#: Dask's setting of the environment its nanny gives a worker process before starting it
PRE_SPAWN_ENVIRON = "distributed.nanny.pre-spawn-environ"


def worker_environ() -> dict:
    """Dask's pre-spawn environment for a worker, without ``MALLOC_TRIM_THRESHOLD_``.

    Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker it starts, so that glibc returns freed memory
    sooner. Setting it switches off glibc's dynamic mmap threshold: every array over 128 kB is then mapped
    and unmapped on each allocation, and an analysis, which allocates and frees such arrays all the time, spends
    a third of its time in page faults (measured in docs/validation.md, "Scale"). Without it a worker's
    allocator behaves as that of a ``--jobs`` process. The thread limits (``OMP_NUM_THREADS`` ...) stay.

    Returns
    -------
    dict
        Variable name -> value.
    """
    import dask

    env = dict(dask.config.get(PRE_SPAWN_ENVIRON, default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, n_workers: int | None = None, timeout_s: float = 10.0):
    """A Dask client: on a running scheduler (``scheduler``) or on a local cluster of ``n_workers`` processes.

    The local cluster listens on 127.0.0.1 only, without a dashboard, one thread per worker process.

    Parameters
    ----------
    scheduler : str | None
        ``tcp://host:port`` of a running ``dask scheduler``.
    n_workers : int | None
        Worker processes of a local cluster (when ``scheduler`` is None).
    timeout_s : float
        How long to wait for the scheduler.

    Yields
    ------
    client : distributed.Client

    Raises
    ------
    BatchError
        Dask is not installed, or the scheduler cannot be reached.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise BatchError(f"--dask and --scheduler need Dask, which is not installed: {INSTALL_HINT}") from None
    with _quiet_dask():
        cluster = None
        try:
            if scheduler:
                try:
                    client = Client(scheduler, timeout=timeout_s, set_as_default=False)
                except (OSError, TimeoutError, ValueError) as exc:
                    raise BatchError(
                        f"could not reach the Dask scheduler at {scheduler!r} ({' '.join(str(exc).split())[:160]}); "
                        "start one with 'dask scheduler --host 127.0.0.1' and workers with 'dask worker ADDRESS', "
                        "and give the address it prints (tcp://HOST:PORT).") from None
            else:
                # dashboard_address=None alone still starts the scheduler's HTTP server (metrics, health) on port
                # 8787, warning when it is taken: a random loopback port, no dashboard
                with dask.config.set({PRE_SPAWN_ENVIRON: worker_environ()}):
                    cluster = LocalCluster(n_workers=int(n_workers or 1), threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                                           scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"})
                client = Client(cluster, set_as_default=False)
            try:
                yield client
            finally:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()


# -- running -----------------------------------------------------------------------------------------------------
@dataclass
class BatchReport:
    """What :func:`run_batch` did.

    Attributes
    ----------
    results : list
        One result per file, in input order.
    skipped : int
        Files whose stored result was up to date (not analysed again).
    analysed : int
        Files analysed in this run.
    keys : list of (str | None)
        Each file's content key (None: unreadable, or no store).
    """

    results: list = field(default_factory=list)
    skipped: int = 0
    analysed: int = 0
    keys: list = field(default_factory=list)


def run_batch(analyse, files, kwargs_per_file, *, jobs: int = 1, dask_workers: int | None = None,
              scheduler: str | None = None, path_map=(), store: ResultStore | None = None, key_options=None,
              force: bool = False, restore=None, keep=None, failed=None, on_result=None, progress=None,
              file_progress=None, remote_kwargs=None, from_remote=None) -> BatchReport:
    """Analyse recordings, one task per file; hand results on in input order as soon as each is known.

    Parameters
    ----------
    analyse : callable
        ``analyse(path, **kwargs) -> result`` (module-level, so a Dask worker can import it); a result has
        ``code`` (0 ok) and ``path``, and must not raise for bad input.
    files : list of str
    kwargs_per_file : list of dict
        Keyword arguments of ``analyse`` per file.
    jobs : int
        Local processes (when neither ``dask_workers`` nor ``scheduler`` is given); 1: in this process.
    dask_workers : int | None
        Worker processes of a local Dask cluster.
    scheduler : str | None
        Address of a running Dask scheduler.
    path_map : list of (str, str)
        :func:`parse_path_map`'s prefixes, applied to the paths sent to Dask workers.
    store : ResultStore | None
        Where results are kept by content key; None: nothing is kept or skipped.
    key_options : dict | list of dict | None
        The options that change a result (part of the key), for all files or per file.
    force : bool
        Analyse even when a stored result is up to date.
    restore : callable | None
        ``restore(index, record) -> result | None``: a stored record as a result (None: not usable, e.g. an
        output it needs is missing, so the file is analysed again).
    keep : callable | None
        ``keep(result) -> dict | None``: what to store of a fresh result (None: nothing, e.g. a failure).
    failed : callable | None
        ``failed(index, path, exc) -> result`` for a task that raised (its worker died); default re-raises.
    on_result : callable | None
        ``on_result(index, result)``, in input order.
    progress : callable | None
        ``progress(done, total)`` as files finish (several files in parallel).
    file_progress : callable | None
        ``file_progress(path) -> callable | None``: a per-file progress callback (files run in this process).
    remote_kwargs : callable | None
        ``remote_kwargs(kwargs) -> kwargs`` for a task sent to a Dask worker (e.g. outputs the client writes
        itself removed).
    from_remote : callable | None
        ``from_remote(index, result) -> result`` for a result from a Dask worker, before it is kept (e.g. its
        paths turned back into the local ones); default: ``path`` and ``message`` through :func:`to_local`.

    Returns
    -------
    report : BatchReport
    """
    opts = key_options if isinstance(key_options, list) else [key_options or {}] * len(files)
    cluster = bool(dask_workers or scheduler)
    stack = contextlib.ExitStack()
    client = None
    if cluster:
        client = stack.enter_context(dask_client(scheduler, dask_workers))
        stack.enter_context(_quiet_dask())
    with stack:
        return _run(analyse, files, kwargs_per_file, opts, client, jobs=jobs, path_map=path_map, store=store,
                    force=force, restore=restore, keep=keep, failed=failed, on_result=on_result, progress=progress,
                    file_progress=file_progress, remote_kwargs=remote_kwargs, from_remote=from_remote)


def _keys(files, opts, client, path_map) -> list:
    """Content keys here; on a Dask worker for a file that cannot be read here (its path exists only there)."""
    from attune_monitor import __version__

    keys = [content_key(f, o) for f, o in zip(files, opts)]
    missing = [i for i, k in enumerate(keys) if k is None]
    if client is not None and missing:
        futures = [client.submit(content_key, to_remote(files[i], path_map), opts[i], __version__, pure=False)
                   for i in missing]
        for i, fut in zip(missing, futures):
            try:
                keys[i] = fut.result()
            except Exception:  # noqa: BLE001 - the worker died: the file is analysed (and fails) as it would
                keys[i] = None
    return keys


def _run(analyse, files, kwargs_per_file, opts, client, *, jobs, path_map, store, force, restore, keep, failed,
         on_result, progress, file_progress, remote_kwargs, from_remote) -> BatchReport:
    """:func:`run_batch` once the Dask client (``client``, or None) is open."""
    n = len(files)
    keys = _keys(files, opts, client, path_map) if store is not None else [None] * n
    results: list = [None] * n
    report = BatchReport(results=results, keys=keys)
    todo = []
    for i in range(n):
        rec = store.load(keys[i]) if store is not None and not force else None
        res = restore(i, rec) if rec is not None and restore else None
        if res is not None:
            results[i] = res
            report.skipped += 1
        else:
            todo.append(i)
    report.analysed = len(todo)
    next_out = 0
    done = 0

    def finish(i, res):
        nonlocal next_out, done
        results[i] = res
        if store is not None and keys[i] and keep is not None and getattr(res, "code", 1) == 0:
            record = keep(res)
            if record is not None:
                try:
                    store.save(keys[i], record, path=str(files[i]), options=opts[i])
                except OSError as exc:  # the results are still printed and written; only the resume is lost
                    logger.warning("could not keep the result of %s in %s (%s)", files[i], store.folder, exc)
        done += 1
        if progress and len(todo) > 1:
            progress(done, len(todo))
        flush()

    def flush():
        nonlocal next_out
        while next_out < n and results[next_out] is not None:
            if on_result:
                on_result(next_out, results[next_out])
            next_out += 1

    def fail(i, exc):
        if failed is None:
            raise exc
        return failed(i, files[i], exc)

    flush()  # stored results before the first new one
    if client is not None:
        from distributed import as_completed

        fix = remote_kwargs or (lambda kw: kw)
        futures = {}
        for i in todo:
            fut = client.submit(analyse, to_remote(files[i], path_map), pure=False,
                                key=f"attune-{i}-{keys[i] or os.urandom(6).hex()}", **fix(kwargs_per_file[i]))
            futures[fut] = i
        for fut in as_completed(list(futures), loop=client.loop):
            i = futures[fut]
            try:
                res = fut.result()
                if from_remote is not None:
                    res = from_remote(i, res)
                elif path_map:
                    res.path = str(files[i])
                    res.message = to_local(res.message, path_map)
            except Exception as exc:  # the worker died (killed for memory ...) or the task was lost
                res = fail(i, exc)
            finish(i, res)
    elif jobs <= 1 or len(todo) <= 1:
        for i in todo:
            bar = file_progress(files[i]) if file_progress else None
            try:
                res = analyse(files[i], progress=bar, **kwargs_per_file[i])
            finally:
                if bar is not None and hasattr(bar, "close"):
                    bar.close()
            finish(i, res)
    else:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(analyse, files[i], **kwargs_per_file[i]): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    res = fut.result()
                except Exception as exc:  # the worker process died (e.g. killed for memory)
                    res = fail(i, exc)
                finish(i, res)
    flush()
    return report
