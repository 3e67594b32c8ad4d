"""``attune evaluate DIR``: score the detector on recordings with ground truth.

Every recording ``X.xdf`` (or ``X.csv`` / folder ``X``) in DIR that has a
``X.truth.json`` beside it (as ``attune simulate --out X.xdf --truth
X.truth.json`` writes) is analysed exactly as ``attune analyze`` does, and
its possible-rupture episodes are matched with the scripted ruptures. The
matching and the metrics are defined and computed in
:mod:`attune_monitor.evaluation`; this module parses the arguments and
prints. The scoring names stay importable from here.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from attune_monitor.evaluation import (  # noqa: F401 - the old names stay importable from here
    DURATION_BINS_S,
    DURATION_LABELS,
    EARLY_S,
    LATE_S,
    SIGNAL_LOSS_KINDS,
    TARGETS,
    Detection,
    FileScore,
    aggregate,
    armed_spans_from_result,
    breakdown,
    detections_from_result,
    duration_label,
    find_cases,
    format_breakdown,
    format_metrics,
    score_file,
    truth_problem,
)

from ..errors import UsageError, check_output_file, os_error_text
from .options import DEFAULT_PRESET, PRESET_NAMES

__all__ = ["register", "run"]


def register(subparsers) -> None:
    """Add the ``evaluate`` parser."""
    p = subparsers.add_parser(
        "evaluate",
        help="score possible-rupture detection on recordings with ground truth (X.xdf + X.truth.json)",
        description=(
            "Analyse every recording in DIR that has a truth file beside it (X.xdf + X.truth.json, as "
            "'attune simulate --out X.xdf --truth X.truth.json' writes) and report precision, recall, F1, "
            "median latency, false alarms per hour and signal-loss periods mistaken for ruptures. An episode "
            f"matches a truth rupture when it involves the rupture's person and starts within "
            f"[onset - {EARLY_S:g} s, offset + {LATE_S:g} s]."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder with X.xdf + X.truth.json pairs")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESET_NAMES),
                   help="detector sensitivity (default %(default)s)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="analyse N files in parallel processes, 1 or more (default %(default)s)")
    p.add_argument("--json", metavar="OUT", help="write the scores (per file and overall) as JSON here")
    p.add_argument("--verbose-files", action="store_true", help="list every episode and truth rupture per file")
    p.add_argument("--progress", action="store_true", help="show progress on stderr even when not a terminal")
    from .analyze import add_batch_options

    add_batch_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    """Run ``attune evaluate``; return the exit code (0 ok, 2 unusable DIR or files)."""
    from .analyze import check_batch_options, key_options, open_store, run_files

    batch = check_batch_options(args)
    folder = Path(args.dir)
    if not folder.is_dir():
        raise UsageError(f"Invalid value for 'DIR': {str(folder)!r} is not a folder; give the folder that holds "
                         "X.xdf + X.truth.json pairs (attune simulate --out X.xdf --truth X.truth.json).")
    if args.json:
        check_output_file(args.json, "--json")  # before the work: folders created, writable
    cases = find_cases(folder)
    if not cases:
        raise UsageError(f"{folder}: no recording with a truth file beside it (X.xdf + X.truth.json); make some "
                         "with 'attune simulate --out X.xdf --truth X.truth.json' or bench/make_eval_set.py.")
    truths = []
    for _, tpath in cases:
        try:
            truth = json.loads(tpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{tpath}: not a readable truth JSON ({exc}).") from None
        problem = truth_problem(truth)
        if problem:
            raise UsageError(f"{tpath}: not an attune.truth/1 file: {problem}; write it with 'attune simulate --out "
                             "X.xdf --truth X.truth.json'.")
        truths.append(truth)
    show = bool(args.progress or sys.stderr.isatty())
    report = run_files([str(r) for r, _ in cases], [dict(preset=args.preset) for _ in cases], show_progress=show,
                       jobs=batch["jobs"], dask_workers=batch["dask_workers"], scheduler=batch["scheduler"],
                       path_map=batch["path_map"], store=open_store(batch["cache"]),
                       key_options=key_options(args.preset), force=bool(args.force))
    results = report.results
    if report.skipped:
        print(f"attune evaluate: skipped {report.skipped} up to date (kept in {batch['cache']}; --force analyses "
              "them again)", file=sys.stderr)
    scores, code = [], 0
    for (rpath, _), truth, res in zip(cases, truths, results):
        if res.code:
            print(f"attune evaluate: error: {res.message}", file=sys.stderr)
            code = max(code, res.code)
            continue
        s = score_file(detections_from_result(res, truth), truth, rpath.name,
                       duration_s=float(truth.get("duration_s", res.doc["duration_s"])),
                       armed_spans=armed_spans_from_result(res, truth))
        scores.append(s)
        lat = ", ".join(f"{x:.0f}" for x in s.detection_latency_s) or "-"
        print(f"{rpath.name:<32} truth {s.n_truth}  detected {sum(s.detected)}  episodes {s.n_episodes}  "
              f"false alarms {len(s.false_alarms)}  signal loss flagged {s.signal_loss_flagged}/"
              f"{s.signal_loss_periods}  latency {lat} s")
        if args.verbose_files:
            for r in truth.get("ruptures", []):
                print(f"    truth  {r.get('who') or '-'} {r['onset_s']:.0f}-{r['offset_s']:.0f} s "
                      f"({r.get('style', '')})")
            for d in detections_from_result(res, truth):
                print(f"    flag   {'-'.join(d.pair)} onset {d.onset_s:.0f} s flagged {d.flagged_s:.0f} s")
    if not scores:
        return max(code, 2)
    m = aggregate(scores)
    print()
    print(format_metrics(m))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps({"overall": m, "files": [s.to_dict() for s in scores]}, indent=1,
                                                  default=lambda o: None if isinstance(o, float) and math.isnan(o)
                                                  else o))
        except OSError as exc:
            raise UsageError(f"cannot write '{args.json}' ({os_error_text(exc)}); the metrics are printed above, "
                             "choose another path for --json.") from None
    return code
