"""``attune analyze``: run the live pipeline over recordings at full speed and report.

Examples::

    attune analyze session.xdf
    attune analyze session.xdf --json session.analysis.json --report session-report/
    attune analyze ../shared/realdata/emopaircompete/D1_5            # an E4 session folder
    attune analyze day1/*.xdf --jobs 2 --json out/ --report reports/  # many files in parallel

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
    p.set_defaults(func=run)


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


def analyze_file(path, *, roster: str | None = None, preset: str = DEFAULT_PRESET, json_path: str | None = None,
                 report_dir: str | None = None, progress=None) -> FileResult:
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
    """
    import dataclasses

    from attune_monitor.acquisition.files import RecordingError, load_recording
    from attune_monitor.dsp.pipeline import PipelineConfig

    from ..analysis_io import analysis_to_json, sorted_episodes, summary_text, write_json
    from attune_monitor.analysis import analyze_recording

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
        res.code, res.message = 1, f"{path}: internal error {type(exc).__name__}: {_one_line(str(exc))} (please report; -vv shows the traceback)"
        return res
    offset = float(analysis.origin) - res.origin
    doc = analysis_to_json(analysis, time_offset=offset)
    res.doc = doc
    res.flagged_s = [round(ep.flagged_s + offset, 3) for ep in sorted_episodes(analysis.episodes)]
    res.warnings = [f"in the file: {p}" for p in analysis.problems] + [f"note: {n}" for n in [*notes, *analysis.notes]] + [
        f"on reading: {n}" for n in getattr(recording, "notes", [])]
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
        elif Path(json_out).is_dir() or json_out.endswith(("/", os.sep)) or (several and not json_out.endswith(".json")):
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
    """A one-line progress bar on stderr (``\\r`` redraws), at most 10 redraws a second."""

    def __init__(self, label: str, stream=None, width: int = 30, clock: bool = False):
        self.label = label
        self.clock = clock
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._shown = False

    def __call__(self, done: float, total: float) -> None:
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
        if self._shown:
            self.stream.write("\r" + " " * (len(self.label) + self.width + 30) + "\r")
            self.stream.flush()


# -- command -----------------------------------------------------------------------------------------------------
def _worker(path, kwargs) -> FileResult:
    return analyze_file(path, **kwargs)


def run_many(files, kwargs_per_file, jobs: int, show_progress: bool, on_result=None) -> list[FileResult]:
    """Analyse files, in parallel processes when ``jobs > 1``; results in input order.

    Parameters
    ----------
    files : list of str
    kwargs_per_file : list of dict
        Keyword arguments of :func:`analyze_file` per file.
    jobs : int
    show_progress : bool
    on_result : callable | None
        ``on_result(index, FileResult)``, called in input order as soon as possible.
    """
    results: list = [None] * len(files)
    if jobs <= 1 or len(files) == 1:
        for i, (f, kw) in enumerate(zip(files, kwargs_per_file)):
            bar = ProgressBar(f"analysing {stem_of(f)}", clock=True) if show_progress else None
            try:
                results[i] = analyze_file(f, progress=bar, **kw)
            finally:
                if bar:
                    bar.close()
            if on_result:
                on_result(i, results[i])
        return results
    from concurrent.futures import ProcessPoolExecutor, as_completed

    bar = ProgressBar(f"analysing {len(files)} files") if show_progress else None
    next_out = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(_worker, f, kw): i for i, (f, kw) in enumerate(zip(files, kwargs_per_file))}
        done = 0
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
            except Exception as exc:  # the worker process died (e.g. killed for memory)
                results[i] = FileResult(files[i], code=1, message=f"{files[i]}: analysis process failed ({exc}).")
            done += 1
            if bar:
                bar(done, len(files))
            while next_out < len(files) and results[next_out] is not None:
                if on_result:
                    if bar:
                        bar.close()
                    on_result(next_out, results[next_out])
                next_out += 1
    if bar:
        bar.close()
    return results


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


def run(args) -> int:
    """Run ``attune analyze``; return the exit code (the worst over the files)."""
    import json

    check_at_least("--jobs", args.jobs, 1, what="a number of processes")
    if args.roster:
        from attune_monitor.acquisition.roster import Roster

        Roster.load(args.roster)  # check once, up front (a RosterError is said by attune_monitor.ui.cli)
    jsons, reports = output_paths(args.files, args.json, args.report)
    kwargs = [dict(roster=args.roster, preset=args.preset, json_path=j, report_dir=r) for j, r in zip(jsons, reports)]
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

    results = run_many(args.files, kwargs, args.jobs, show, on_result=emit)
    return max(r.code for r in results)
