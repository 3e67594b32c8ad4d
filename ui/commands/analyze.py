"""``attune analyze``: run the live pipeline over recordings at full speed and report.

Examples::

    attune analyze session.xdf
    attune analyze session.xdf --json session.analysis.json --report session-report/
    attune analyze ../shared/realdata/emopaircompete/D1_5            # an E4 session folder
    attune analyze day1/*.xdf --jobs 2 --json out/ --report reports/  # many files in parallel
    attune analyze study/*.xdf --dask 4 --dataset study-tables/      # a local Dask cluster, tidy tables out
    attune analyze study/*.xdf --scheduler tcp://10.0.0.5:8786 --cache results/   # a running Dask cluster

Batch runs (``--jobs``, ``--dask``, ``--scheduler``) go through
:func:`attune_monitor.batch.run_batch`; with ``--cache DIR`` (or ``--dataset
OUT``, which keeps its results in ``OUT/.attune-cache``) a file whose result
is up to date (same bytes, Attune version and options) is not analysed again,
so an interrupted batch resumes. ``docs/cluster.md`` has the cluster command
lines, ``docs/dataset.md`` the tables.

The analysis is the same causal streaming pipeline the live monitor runs
(:func:`attune_monitor.ui.runner.analyze_recording`), so the episodes are the ones a
facilitator would have been shown live. A flagged drop in synchrony is a
*possible* rupture, a prompt to check in, never a diagnosis.

Exit codes: 0 every file analysed (a partly damaged file is analysed as far
as it is readable, and what was not readable is listed), 2 a file or an
argument is unusable (one line says why; other files are still analysed),
1 an internal error (a bug: please report it with ``-v``). With several files
the exit code is the worst one.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError, check_output_file, check_writable_folder, os_error_text
from .options import DEFAULT_PRESET, PRESET_NAMES, check_at_least, check_usable, make_assign

__all__ = [
    "STEM_FIELD", "SHOWN_WARNINGS", "register", "add_batch_options", "FileResult", "analyze_file", "stem_of",
    "output_paths", "ProgressBar", "result_record", "result_from_record", "key_options", "failed_result",
    "check_batch_options", "run_files", "run_many", "print_result", "open_store", "write_dataset_tables", "run"
]

logger = logging.getLogger(__name__)

STEM_FIELD = "{stem}"
#: Warnings of a FileResult that go to stderr (the notes are in the summary and the report).
SHOWN_WARNINGS = ("in the file", "too short", "on reading")


def _warning_line(path, text: str) -> str:
    """One stderr line for a file's warning (problems reading it, too short) or what was done to it on reading."""
    if text.startswith("on reading: "):
        return f"attune analyze: note: {path}: {text[len('on reading: '):]}"
    return f"attune analyze: warning: {path}: {text}"


def register(subparsers) -> None:
    """Add the ``analyze`` parser."""
    p = subparsers.add_parser(
        "analyze",
        help="analyse recorded sessions (XDF, E4 export folders, CSV): synchrony, possible ruptures, reports",
        description=(
            "Run the live monitoring pipeline over recordings as fast as possible and print, per pair, the mean "
            "synchrony, the single session index (SSI) and the possible ruptures (mm:ss). FILE is an XDF file "
            "(Attune's or LabRecorder's), an Empatica E4 export folder, a folder with one E4 sub-folder per "
            "participant, or a CSV (participant,kind,timestamp,value). A flagged drop in synchrony is a prompt "
            "to check in, never a diagnosis. Exit code: 0 ok, 2 unusable input, 1 internal error; the worst over "
            "all FILEs."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="recording(s) to analyse")
    p.add_argument("--roster", metavar="R.toml", help="who wears which stream (see acquisition/roster.py)")
    p.add_argument("--json", metavar="OUT",
                   help="write the attune.analysis/1 JSON here; with several FILEs a folder or a name with "
                        "{stem} (e.g. out/{stem}.json); '-' prints it to stdout (one FILE)")
    p.add_argument("--report", metavar="DIR",
                   help="write an HTML report with plots and episodes.csv into DIR (one sub-folder per FILE "
                        "when there are several)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESET_NAMES),
                   help="detector sensitivity (default %(default)s)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="analyse N files in parallel processes, 1 or more (default %(default)s)")
    p.add_argument("--progress", action="store_true",
                   help="show a progress bar on stderr even when it is not a terminal")
    add_batch_options(p)
    p.add_argument("--dataset", metavar="OUT",
                   help="also write long-format tables into the folder OUT: windows, episodes, person_phases, "
                        "sessions (docs/dataset.md); results are kept in OUT/.attune-cache, so a re-run resumes")
    p.add_argument("--dataset-format", default="auto", choices=["auto", "parquet", "csv"],
                   help="table format of --dataset: parquet (needs pyarrow), csv, or auto: parquet when pyarrow is "
                        "installed (default %(default)s)")
    p.set_defaults(func=run)


def add_batch_options(p) -> None:
    """The batch options ``analyze`` and ``evaluate`` share: Dask, path map, result cache."""
    p.add_argument("--dask", type=int, metavar="N",
                   help="analyse on a local Dask cluster of N worker processes, 1 or more (needs "
                        "pip install 'attune-monitor[cluster]')")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="analyse on a running Dask scheduler, e.g. tcp://10.0.0.5:8786; its workers need Attune "
                        "installed and read access to the files (docs/cluster.md)")
    p.add_argument("--path-map", action="append", default=[], metavar="LOCAL=REMOTE",
                   help="with --dask/--scheduler: workers read LOCAL/... as REMOTE/... (repeatable)")
    p.add_argument("--cache", metavar="DIR",
                   help="keep each file's result in DIR under a content hash (file bytes + Attune version + "
                        "options); a re-run skips files whose result is up to date")
    p.add_argument("--force", action="store_true", help="analyse every file again, even when its result is up to date")


# -- one file ----------------------------------------------------------------------------------------------------
@dataclass
class FileResult:
    """What analysing one file gave (picklable: crosses process boundaries).

    Attributes
    ----------
    path : str
    code : int
        0 ok, 2 unusable input, 1 internal error.
    message : str
        The one-line reason when ``code != 0``.
    summary : str
        The readable summary (empty when ``code != 0``).
    doc : dict | None
        The ``attune.analysis/1`` document.
    flagged_s : list of float
        When each episode of ``doc["episodes"]`` was flagged (file time, s): the
        moment the live monitor would have shown it.
    origin : float
        The file's earliest timestamp (its time base): file time 0.
    warnings : list of str
        What could not be read, and notes.
    outputs : list of str
        Files written.
    seconds : float
        Wall-clock time the analysis took.
    tables : dict | None
        The rows this file adds to the ``--dataset`` tables (:func:`attune_monitor.dataset.tables_from_analysis`
        plus its ``sessions`` row), when asked for.
    """

    path: str
    code: int = 0
    message: str = ""
    summary: str = ""
    doc: dict | None = None
    flagged_s: list = field(default_factory=list)
    origin: float = 0.0
    warnings: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    seconds: float = 0.0
    tables: dict | None = None


def analyze_file(path, *, roster: str | None = None, preset: str = DEFAULT_PRESET, json_path: str | None = None,
                 report_dir: str | None = None, progress=None, tables: bool = False) -> FileResult:
    """Analyse one recording; never raises for bad input (see :class:`FileResult`).

    Parameters
    ----------
    path : str
        XDF file, E4 folder, E4 session folder or tidy CSV.
    roster : str | None
        Roster TOML path.
    preset : str
        Detector preset.
    json_path : str | None
        Where to write the JSON document ("-": not written, the caller prints ``doc``).
    report_dir : str | None
        Where to write the HTML report.
    progress : callable | None
        ``progress(done_s, total_s)``.
    tables : bool
        Also compute the rows of the ``--dataset`` tables (``FileResult.tables``).
    """
    import dataclasses

    from attune_monitor.acquisition.files import RecordingError, load_recording
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.dsp.pipeline import PipelineConfig

    from ..analysis_io import analysis_to_json, sorted_episodes, summary_text, write_json

    t0 = time.perf_counter()
    res = FileResult(str(path))
    try:
        recording = load_recording(path)
        assign, notes = make_assign(recording, roster)
        check_usable(recording, assign)
        config = dataclasses.replace(PipelineConfig(), preset=preset)
        analysis = analyze_recording(recording, config=config, assign=assign, progress=progress)
        res.origin = float(recording.origin)
    except (RecordingError, ValueError, OSError) as exc:
        # ValueError: what the pipeline says about unusable stream layouts (two EDA streams for one person ...)
        res.code, res.message = 2, _one_line(str(exc) if str(path) in str(exc) else f"{path}: {exc}")
        res.seconds = time.perf_counter() - t0
        return res
    except MemoryError:
        res.code, res.message = 2, f"{path}: too large to analyse in the available memory."
        return res
    except Exception as exc:  # a bug: say so in one line, the traceback goes to the log (-v)
        logger.debug("analysis of %s failed:\n%s", path, traceback.format_exc())
        res.code = 1
        res.message = (f"{path}: internal error {type(exc).__name__}: {_one_line(str(exc))} (please report; -vv shows "
                       "the traceback)")
        return res
    offset = float(analysis.origin) - res.origin
    doc = analysis_to_json(analysis, time_offset=offset)
    res.doc = doc
    res.flagged_s = [round(ep.flagged_s + offset, 3) for ep in sorted_episodes(analysis.episodes)]
    res.warnings = ([f"in the file: {p}" for p in analysis.problems]
                    + [f"note: {n}" for n in [*notes, *analysis.notes]]
                    + [f"on reading: {n}" for n in getattr(recording, "notes", [])])
    if not any(analysis.sync.values()):
        res.warnings.append(
            f"too short: {analysis.duration_s:.0f} s of data gave no synchrony window (a window is "
            f"{analysis.window_s:g} s of signal after the preprocessing's warm-up of about 10 s), so nothing could "
            "be flagged; analyse a longer recording (a few minutes at least).")
    # who was moving away in their arousal at each flag: readable summary and report only (the JSON schema is fixed)
    res.summary = summary_text(doc, away=analysis.episode_arousal())
    if analysis.markers:
        names = sorted({name for _, name, _ in analysis.markers})
        res.summary += (f"\n  recorded markers: {len(analysis.markers)} ({', '.join(names)}; listed with times in the "
                        "report, --report DIR)")
    if tables:
        from attune_monitor.dataset import session_row, tables_from_analysis

        res.tables = tables_from_analysis(analysis, doc, offset, res.flagged_s)
        res.tables["sessions"] = {k: [v] for k, v in session_row(doc, len(analysis.markers)).items()}
    try:
        if json_path and json_path != "-":
            res.outputs.append(str(write_json(doc, json_path)))
        if report_dir:
            from ..report import write_report

            res.outputs.append(str(write_report(analysis, report_dir, doc=doc, time_offset=offset,
                                                problems=analysis.problems, notes=[*notes, *analysis.notes],
                                                preset=preset)))
    except OSError as exc:
        res.code, res.message = 2, f"{path}: results could not be written ({os_error_text(exc)}); choose another path."
    res.seconds = time.perf_counter() - t0
    return res


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# -- output names ------------------------------------------------------------------------------------------------
def stem_of(path) -> str:
    """A file-name stem for a recording: the file name without suffix, or the folder name."""
    p = Path(path)
    name = p.name if p.is_dir() else p.stem
    return name or "recording"


def _unique_stems(paths) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for p in paths:
        s = stem_of(p)
        seen[s] = seen.get(s, 0) + 1
        out.append(s if seen[s] == 1 else f"{s}-{seen[s]}")
    return out


def output_paths(files, json_out: str | None, report_dir: str | None) -> tuple[list, list]:
    """Per-file JSON paths and report folders from ``--json`` / ``--report``.

    Parent folders are created and checked for writing here, before any file is analysed.

    Raises
    ------
    UsageError
        When the destination cannot hold several results, or cannot be written.
    """
    stems = _unique_stems(files)
    several = len(files) > 1
    jsons: list = [None] * len(files)
    if json_out:
        if json_out == "-":
            if several:
                raise UsageError("Invalid value for '--json': '-' (stdout) works with one FILE only; give a folder "
                                 "or a name with {stem} for several.")
            jsons = ["-"]
        elif STEM_FIELD in json_out:
            jsons = [json_out.replace(STEM_FIELD, s) for s in stems]
        elif (Path(json_out).is_dir() or json_out.endswith(("/", os.sep))
              or (several and not json_out.endswith(".json"))):
            jsons = [str(Path(json_out) / f"{s}.analysis.json") for s in stems]
        elif several:
            raise UsageError(f"Invalid value for '--json': {json_out!r} is one file but there are {len(files)} FILEs; "
                             "give a folder (out/) or a name with {stem} (out/{stem}.json).")
        else:
            jsons = [json_out]
        for j in jsons:
            if j != "-":
                check_output_file(j, "--json")  # before the work: folders created, writable
    reports: list = [None] * len(files)
    if report_dir:
        check_writable_folder(report_dir, "--report", create=True)
        reports = [str(Path(report_dir) / s) for s in stems] if several else [report_dir]
    return jsons, reports


# -- progress ----------------------------------------------------------------------------------------------------
class ProgressBar:
    r"""A one-line progress bar on stderr (``\r`` redraws), at most 10 redraws a second."""

    def __init__(self, label: str, stream=None, width: int = 30, clock: bool = False):
        self.label = label
        self.clock = clock
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._shown = False

    def __call__(self, done: float, total: float) -> None:
        """Redraw for ``done`` of ``total`` (at most 10 times a second, always at the end)."""
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        frac = 0.0 if not total or not math.isfinite(total) else min(max(done / total, 0.0), 1.0)
        fill = int(round(frac * self.width))
        text = f"\r{self.label} [{'#' * fill}{'.' * (self.width - fill)}] {frac:4.0%}"
        if self.clock:
            from ..analysis_io import clock

            text += f" {clock(done)}/{clock(total)}"
        self.stream.write(text)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """Erase the bar (when it was drawn)."""
        if self._shown:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 30) + "\r")
            self.stream.flush()


# -- command -----------------------------------------------------------------------------------------------------
#: What a kept result holds of a FileResult (outputs and timings belong to one run and are not kept).
_KEPT = ("code", "summary", "doc", "flagged_s", "origin", "warnings", "tables")


def result_record(res: FileResult) -> dict | None:
    """What :class:`attune_monitor.batch.ResultStore` keeps of a result (None for a failure: it is tried again)."""
    if res.code:
        return None
    return {k: getattr(res, k) for k in _KEPT}


def result_from_record(path, record: dict) -> FileResult | None:
    """A kept result as a :class:`FileResult` for ``path`` (None when the record is not a usable result)."""
    r = record.get("result") if isinstance(record, dict) else None
    if not isinstance(r, dict) or r.get("code") != 0 or not isinstance(r.get("doc"), dict):
        return None
    doc, summary = r["doc"], str(r.get("summary", ""))
    old = str(record.get("path", ""))
    if old and old != str(path) and doc.get("recording") == old:  # the same bytes, kept under another name
        doc = dict(doc, recording=str(path))
        summary = summary.replace(old, str(path), 1)
    return FileResult(str(path), code=0, summary=summary, doc=doc,
                      flagged_s=list(r.get("flagged_s") or []), origin=float(r.get("origin") or 0.0),
                      warnings=list(r.get("warnings") or []), tables=r.get("tables"))


def key_options(preset: str, roster: str | None = None) -> dict:
    """The options that change a file's result: part of its content key (the roster by its bytes)."""
    from attune_monitor.batch import file_digest

    digest = None
    if roster:
        try:
            digest = file_digest(roster)
        except OSError:
            digest = str(roster)
    return {"preset": preset, "roster": digest}


def failed_result(index: int, path, exc: BaseException) -> FileResult:
    """The result of a file whose analysis process (or Dask worker) died: an internal error, the rest go on."""
    return FileResult(str(path), code=1, message=f"{path}: analysis process failed "
                                                  f"({_one_line(f'{type(exc).__name__}: {exc}')[:200]}).")


def check_batch_options(args) -> dict:
    """Check ``--jobs`` / ``--dask`` / ``--scheduler`` / ``--path-map`` / ``--cache`` before any work.

    Returns
    -------
    batch : dict
        ``jobs``, ``dask_workers``, ``scheduler``, ``path_map`` (parsed) and ``cache`` (a folder or None).

    Raises
    ------
    UsageError
        Options that exclude each other, a bad value, Dask missing, or a cache folder that cannot be written.
    """
    from attune_monitor.batch import INSTALL_HINT, BatchError, parse_path_map

    check_at_least("--jobs", args.jobs, 1, what="a number of processes")
    n = getattr(args, "dask", None)
    scheduler = getattr(args, "scheduler", None)
    if n is not None:
        check_at_least("--dask", n, 1, what="a number of worker processes")
    if n is not None and scheduler:
        raise UsageError("--dask N starts a local Dask cluster and --scheduler uses a running one: give one of them.")
    cluster = n is not None or bool(scheduler)
    if cluster and args.jobs > 1:
        raise UsageError("--jobs runs local processes and does not combine with --dask/--scheduler; drop --jobs "
                         "(--dask N sets the number of workers).")
    if getattr(args, "path_map", None) and not cluster:
        raise UsageError("--path-map rewrites the paths sent to Dask workers: give it with --dask or --scheduler.")
    try:
        path_map = parse_path_map(getattr(args, "path_map", None))
    except BatchError as exc:
        raise UsageError(str(exc)) from None
    if cluster:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError(f"--dask and --scheduler need Dask, which is not installed: {INSTALL_HINT}") from None
    cache = getattr(args, "cache", None)
    if cache:
        check_writable_folder(cache, "--cache", create=True)
    return {"jobs": args.jobs, "dask_workers": n, "scheduler": scheduler, "path_map": path_map, "cache": cache}


def _write_json_output(res: FileResult, json_path) -> None:
    """Write a result's document to ``json_path`` here (results kept or computed on a Dask worker)."""
    from ..analysis_io import write_json

    if not json_path or json_path == "-" or res.code or res.doc is None:
        return
    try:
        res.outputs.insert(0, str(write_json(res.doc, json_path)))
    except OSError as exc:
        res.code = 2
        res.message = f"{res.path}: results could not be written ({os_error_text(exc)}); choose another path."


def run_files(files, kwargs_per_file, *, show_progress: bool = False, on_result=None, jobs: int = 1,
              dask_workers: int | None = None, scheduler: str | None = None, path_map=(), store=None,
              key_options=None, force: bool = False):
    """Analyse files with :func:`analyze_file`, locally or on Dask, skipping those with an up-to-date kept result.

    Parameters
    ----------
    files : list of str
    kwargs_per_file : list of dict
        Keyword arguments of :func:`analyze_file` per file (``json_path`` is written here for results that come
        from Dask or from ``store``).
    show_progress : bool
        A progress bar on stderr (per file in this process; files done of those analysed otherwise).
    on_result : callable | None
        ``on_result(index, FileResult)``, in input order as soon as possible.
    jobs, dask_workers, scheduler, path_map
        Where to run (see :func:`attune_monitor.batch.run_batch`).
    store : attune_monitor.batch.ResultStore | None
        Kept results; None: every file is analysed.
    key_options : dict | None
        :func:`key_options` of the run.
    force : bool
        Analyse files even when their kept result is up to date.

    Returns
    -------
    report : attune_monitor.batch.BatchReport
        ``results`` in input order, ``skipped``, ``analysed``.
    """
    from attune_monitor.batch import run_batch, to_local, to_remote

    cluster = bool(dask_workers or scheduler)
    restored: set = set()
    bar = None
    if show_progress and (cluster or jobs > 1):
        bar = ProgressBar(f"analysing {len(files)} files")

    def restore(i, record):
        res = result_from_record(files[i], record)
        if res is None:
            return None
        kw = kwargs_per_file[i]
        if kw.get("tables") and not res.tables:
            return None  # kept without the dataset rows: analysed again
        if kw.get("report_dir") and not (Path(kw["report_dir"]) / "index.html").is_file():
            return None  # the report needs the full analysis
        _write_json_output(res, kw.get("json_path"))
        restored.add(i)
        return res

    def remote(kw):
        kw = dict(kw, json_path=None)  # written here, on the client
        for key in ("report_dir", "roster"):  # read or written by the worker (shared file system)
            if kw.get(key):
                kw[key] = to_remote(kw[key], path_map)
        return kw

    def from_remote(i, res):
        # the worker named the file by the path it read (absolute, mapped): name it as it was given here
        given, there = str(files[i]), to_remote(files[i], path_map)

        def local(text):
            return to_local(text.replace(there, given), path_map)

        res.path = given
        res.message, res.summary = local(res.message), local(res.summary)
        res.warnings = [local(w) for w in res.warnings]
        res.outputs = [to_local(o, path_map) for o in res.outputs]
        if res.doc is not None:
            res.doc = dict(res.doc, recording=local(res.doc["recording"]))
        return res

    def emit(i, res):
        if bar:
            bar.close()
        if cluster and i not in restored:
            _write_json_output(res, kwargs_per_file[i].get("json_path"))
        if on_result:
            on_result(i, res)

    def on_progress(done, total):
        bar.label = f"analysing {total} files"  # those not skipped as up to date
        bar(done, total)

    def one_bar(path):
        return ProgressBar(f"analysing {stem_of(path)}", clock=True) if show_progress else None

    try:
        return run_batch(analyze_file, list(files), list(kwargs_per_file), jobs=jobs, dask_workers=dask_workers,
                         scheduler=scheduler, path_map=path_map, store=store, key_options=key_options, force=force,
                         restore=restore, keep=result_record, failed=failed_result, on_result=emit,
                         progress=on_progress if bar else None, file_progress=one_bar, remote_kwargs=remote,
                         from_remote=from_remote)
    finally:
        if bar:
            bar.close()


def run_many(files, kwargs_per_file, jobs: int, show_progress: bool, on_result=None, **batch) -> list[FileResult]:
    """Analyse files, in parallel processes when ``jobs > 1``; results in input order.

    :func:`run_files` without its report; ``batch`` are its Dask and store options.
    """
    return run_files(files, kwargs_per_file, show_progress=show_progress, on_result=on_result, jobs=jobs,
                     **batch).results


def print_result(res: FileResult, out=None, err=None) -> None:
    """Print a file's summary (stdout) or its one-line error and warnings (stderr)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if res.code:
        print(f"attune analyze: error: {res.message}", file=err)
        return
    for w in res.warnings:
        if w.startswith(SHOWN_WARNINGS):
            print(_warning_line(res.path, w), file=err)
    print(res.summary, file=out)
    print("  (a flagged drop in synchrony is a prompt to check in, never a diagnosis)", file=out)
    for o in res.outputs:
        print(f"  wrote {o}", file=out)
    print(file=out)


def open_store(folder):
    """The :class:`attune_monitor.batch.ResultStore` in ``folder`` (None: no folder, nothing kept)."""
    if not folder:
        return None
    from attune_monitor.batch import ResultStore

    try:
        return ResultStore(folder)
    except OSError as exc:
        raise UsageError(f"Invalid value for '--cache': cannot keep results in '{folder}' ({os_error_text(exc)}); "
                         "choose another folder.") from None


def write_dataset_tables(out, files, results, fmt: str) -> list:
    """The ``--dataset`` tables of a run: every file's rows, and a ``sessions`` row for each failure too.

    Raises
    ------
    UsageError
        When the tables cannot be written (the per-file results are kept and printed already).
    """
    from attune_monitor.dataset import failed_session_row, write_dataset

    parts = []
    for f, res in zip(files, results):
        if res.code == 0 and res.tables:
            parts.append((f, res.tables))
        else:
            parts.append((f, {"sessions": {k: [v] for k, v in failed_session_row(res.message).items()}}))
    try:
        return write_dataset(out, parts, fmt)
    except OSError as exc:
        raise UsageError(f"the dataset could not be written to '{out}' ({os_error_text(exc)}); the analyses are "
                         "kept: run the same command with another --dataset folder.") from None


def run(args) -> int:
    """Run ``attune analyze``; return the exit code (the worst over the files)."""
    import json

    batch = check_batch_options(args)
    if args.roster:
        from attune_monitor.acquisition.roster import Roster

        Roster.load(args.roster)  # check once, up front (a RosterError is said by attune_monitor.ui.cli)
    dataset = getattr(args, "dataset", None)
    fmt = None
    if dataset:
        from attune_monitor.dataset import resolve_format

        try:
            fmt = resolve_format(args.dataset_format)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        check_writable_folder(dataset, "--dataset", create=True)
    jsons, reports = output_paths(args.files, args.json, args.report)
    extra = {"tables": True} if dataset else {}
    kwargs = [dict(roster=args.roster, preset=args.preset, json_path=j, report_dir=r, **extra)
              for j, r in zip(jsons, reports)]
    store = open_store(batch["cache"] or (str(Path(dataset) / ".attune-cache") if dataset else None))
    show = bool(args.progress or sys.stderr.isatty())

    def emit(i, res):
        if jsons[i] == "-" and not res.code:
            print(json.dumps(res.doc, indent=1))
            for w in res.warnings:
                if w.startswith(SHOWN_WARNINGS):
                    print(_warning_line(res.path, w), file=sys.stderr)
            return
        print_result(res)
        sys.stdout.flush()

    report = run_files(args.files, kwargs, show_progress=show, on_result=emit, jobs=batch["jobs"],
                       dask_workers=batch["dask_workers"], scheduler=batch["scheduler"], path_map=batch["path_map"],
                       store=store, key_options=key_options(args.preset, args.roster),
                       force=bool(getattr(args, "force", False)))
    if report.skipped:
        print(f"attune analyze: skipped {report.skipped} up to date (kept in {store.folder}; --force analyses them "
              "again)", file=sys.stderr)
    if dataset:
        paths = write_dataset_tables(dataset, args.files, report.results, fmt)
        print(f"dataset ({fmt}): " + ", ".join(str(p) for p in paths))
    return max(r.code for r in report.results)
