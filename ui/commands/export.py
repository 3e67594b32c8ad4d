"""``attune export``: a recording's analysis grid, synchrony and episodes as EDF+, FIF or CSV (through MNE).

Examples::

    attune export recordings/sample-couple.xdf --format edf           # -> recordings/sample-couple.edf
    attune export session.xdf --format fif --out out/session_raw.fif
    attune export session.xdf --format csv --out out/session-csv/     # grid.csv, episodes.csv, stream-*.csv
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from ..errors import UsageError, check_output_file, check_writable_folder, os_error_text
from .options import DEFAULT_PRESET, check_preset, check_usable, make_assign

__all__ = ["FORMATS", "register", "default_out", "run"]

FORMATS = ("edf", "fif", "csv")


def register(subparsers) -> None:
    """Add the ``export`` parser."""
    p = subparsers.add_parser(
        "export",
        help="export a recording's signals, synchrony and episodes as EDF+, FIF (MNE) or CSV tables",
        description=(
            "Analyse a recording (XDF, E4 export folder, CSV) with the live pipeline and write its common grid "
            "(heart rate in bpm, EDA in uS (FIF: siemens, MNE type gsr), synchrony per pair as r) with the "
            "episodes, signal losses and markers as annotations and the session's wall-clock start: EDF+ "
            "(edfio; a missing sample is the channel's physical minimum: -1 bpm, -1 uS, r = -2), FIF (MNE, "
            "NaN kept), or CSV (a folder: grid.csv with empty cells where missing, episodes.csv, annotations.csv, "
            "one table per stream). Files are private to you (mode 0600), like recordings."
        ),
    )
    p.add_argument("file", metavar="FILE", help="recording to export")
    p.add_argument("--format", required=True, choices=FORMATS, help="edf, fif or csv")
    p.add_argument("--out", metavar="PATH",
                   help="output file (edf/fif) or folder (csv); default next to FILE: NAME.edf, NAME_raw.fif, "
                        "NAME-csv/")
    p.add_argument("--roster", metavar="R.toml", help="who wears which stream")
    p.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME",
                   help="detector sensitivity: conservative, balanced, sensitive (default %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(func=run)


def default_out(path: str, fmt: str) -> Path:
    """Where the export goes when ``--out`` is not given."""
    p = Path(path)
    stem = p.name if p.is_dir() else p.stem
    folder = p.parent
    return folder / {"edf": f"{stem}.edf", "fif": f"{stem}_raw.fif", "csv": f"{stem}-csv"}[fmt]


def run(args) -> int:
    """Run ``attune export``; return the exit code."""
    check_preset(args.preset)
    out = Path(args.out) if args.out else default_out(args.file, args.format)
    if args.format == "fif" and not out.name.endswith(("raw.fif", "raw.fif.gz")):
        raise UsageError(f"Invalid value for '--out': MNE expects raw FIF names to end with _raw.fif, but got "
                         f"'{out.name}'; e.g. {out.with_name(out.stem + '_raw.fif').name}.")
    if args.format == "edf" and out.suffix.lower() != ".edf":
        raise UsageError(f"Invalid value for '--out': an EDF file name ends with .edf, but got '{out.name}'.")
    if out.exists() and not args.force:
        raise UsageError(f"Invalid value for '--out': '{out}' already exists; add --force to overwrite it or "
                         "choose another path.")
    if args.format == "csv":
        if out.exists() and not out.is_dir():
            raise UsageError(f"Invalid value for '--out': CSV export writes a folder, but '{out}' is a file; "
                             "choose another path.")
        check_writable_folder(out if out.exists() else out.parent, "--out")
    else:
        check_output_file(out, "--out", create_parents=False)
    writer = {"edf": "edfio", "fif": "mne"}.get(args.format)  # the [export] extra's package for this format
    if writer is not None and importlib.util.find_spec(writer) is None:
        raise UsageError(f"{args.format.upper()} export needs {writer}, which is not installed: pip install "
                         f"'attune-monitor[export]' (or use --format csv).")

    from attune_monitor.acquisition.export import export_session
    from attune_monitor.acquisition.files import RecordingError, load_recording
    from attune_monitor.acquisition.roster import RosterError
    from attune_monitor.analysis import analyze_recording
    from attune_monitor.dsp.pipeline import PipelineConfig

    try:
        rec = load_recording(args.file)
        assign, notes = make_assign(rec, args.roster)
        check_usable(rec, assign)
        analysis = analyze_recording(rec, PipelineConfig(preset=args.preset), assign=assign)
    except (RecordingError, RosterError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # what the pipeline says about unusable stream layouts (two EDA streams for one person)
        raise UsageError(f"{args.file}: {exc}") from None
    except OSError as exc:
        raise UsageError(f"{args.file}: cannot read it ({os_error_text(exc)}).") from None
    for p in rec.problems:
        print(f"attune export: warning: {args.file}: {p}", file=sys.stderr)
    try:
        paths, more = export_session(analysis, rec, args.format, out)
    except OSError as exc:
        raise UsageError(f"cannot write '{out}' ({os_error_text(exc)}); choose another path.") from None
    for n in notes + more:
        print(f"attune export: {n if n.startswith('warning:') else 'note: ' + n}", file=sys.stderr)
    size = sum(os.path.getsize(p) for p in paths)
    n_ch = len(analysis.participants) * len(analysis.modalities) + len(analysis.pairs) * len(analysis.sync)
    print(f"wrote {out}{'/' if args.format == 'csv' else ''} ({len(paths)} file(s), {size / 1e6:.2f} MB): "
          f"{n_ch} channels at {analysis.fs:g} Hz over {analysis.duration_s:.0f} s, "
          f"{len(analysis.episodes)} episode(s)")
    return 0
