"""HTML report of one analysed recording: plots (PNG, matplotlib Agg), tables, ``episodes.csv``.

:func:`write_report` writes into a folder::

    index.html        summary, per-pair table, episodes, signal loss, what could not be read
    signals.png       every person's heart rate and skin conductance on the common grid
    sync_01.png ...   one per pair: windowed synchrony per modality with the pair's own
                      baseline, the lower edge of its usual range and the chance level; episodes shaded,
                      signal loss hatched
    arousal.png       one row per person: their arousal log-likelihood ratio L (moving away
                      from the group vs in tune, 5 s mean) with the preset's threshold, the
                      seconds they were moving away shaded (climbing / flattening), their
                      episodes shaded
    episodes.csv      one row per possible rupture (with whose arousal was moving away before the flag)
    markers.csv       the recorded markers (the facilitator's and other apps'), when there are any;
                      they are listed in the page and drawn as dotted lines in the synchrony plots,
                      so a facilitator's noted ruptures can be set beside the flagged ones
    analysis.json     the attune.analysis/1 document

Every text that comes from a file (stream names, participant ids, the file
name) is HTML-escaped: a recording is untrusted input.

Every plot has the same width and the same fixed margins and spans the whole
recording, so the time axes of all PNGs line up when shown one above the other.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

import numpy as np

from .analysis_io import analysis_to_json, clock, write_episodes_csv, write_json
from .model import group_episodes
from .palette import AROUSAL_COLOURS
from .words import depth_number, disconnecting_words, episode_status

__all__ = [
    "PERSON_COLORS", "MODALITY_COLORS", "MODALITY_WORDS", "UNITS", "EPISODE_COLOR", "AROUSAL_SHADES", "MARKER_COLOR",
    "write_markers_csv", "plot_signals", "baseline_trace", "plot_pair", "plot_arousal", "plt_line", "write_report"
]


def _group_status(group: dict) -> str:
    """A group episode's status: the words of its pairs' episode in the group's state."""
    return next(episode_status(e)[1] for e in group["episodes"] if episode_status(e)[0] == group["state"])

logger = logging.getLogger(__name__)

#: Colours of people (signals) and of modalities (synchrony), colour-blind safe (Okabe-Ito).
PERSON_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MODALITY_COLORS = {"hr": "#C0392B", "eda": "#0072B2", "combined": "#333333"}
MODALITY_WORDS = {"hr": "heart rate", "eda": "skin conductance", "combined": "combined"}
UNITS = {"hr": "bpm", "eda": "µS"}
EPISODE_COLOR = "#E74C3C"
#: Arousal "moving away" shading, from the colours the live view uses too (:mod:`attune_monitor.ui.palette`):
#: state -> (fill colour, alpha, text colour).
AROUSAL_SHADES = {state: (shade, 0.3, text) for state, (text, shade) in AROUSAL_COLOURS.items()}
#: Fixed figure margins (inches), the same for every plot, so their time axes line up.
_MARGIN_IN = {"left": 0.95, "right": 0.2, "top": 0.4, "bottom": 0.6}


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _plain(x, max_len: int | None = None) -> str:
    """A file-derived name as plot text: ``$`` escaped (no mathtext), shortened to ``max_len`` characters."""
    s = str(x)
    if max_len is not None and len(s) > max_len:
        s = s[: max_len - 1] + "…"
    return s.replace("$", r"\$")


def _time_axis(ax, duration_s: float) -> None:
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: clock(x)))
    # ticks on round clock times (10 s ... 30 min), at most ~12 of them
    tick = next((s for s in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if duration_s / s <= 12), 7200)
    ax.xaxis.set_major_locator(MultipleLocator(tick))
    ax.set_xlim(0, max(duration_s, 1.0))
    ax.grid(True, color="#dddddd", linewidth=0.6)


def _shade_episodes(ax, episodes, end_s: float, label: bool = True) -> None:
    for i, ep in episodes:
        off = ep["offset_s"] if ep["offset_s"] is not None else end_s
        ax.axvspan(ep["onset_s"], off, color=EPISODE_COLOR, alpha=0.13, linewidth=0, zorder=0)
        if label:
            ax.text(ep["onset_s"], 0.97, f" #{i}", transform=ax.get_xaxis_transform(), va="top", ha="left",
                    fontsize=8, color=EPISODE_COLOR)


def _hatch_losses(ax, losses, end_s: float, color: str = "#777777") -> None:
    for x in losses:
        off = x["offset_s"] if x["offset_s"] is not None else end_s
        ax.axvspan(x["onset_s"], off, facecolor="none", edgecolor=color, hatch="////", linewidth=0, alpha=0.6,
                   zorder=0)


MARKER_COLOR = "#6A1B9A"


def _marker_times(analysis, time_offset: float) -> list[float]:
    """Recorded marker times in file time (s), within the recording."""
    end = float(analysis.duration_s) + time_offset
    return [t + time_offset for t, _, _ in getattr(analysis, "markers", [])
            if time_offset - 1e-9 <= t + time_offset <= end]


def _draw_markers(ax, times, label: bool = False) -> None:
    for k, t in enumerate(times):
        ax.axvline(t, color=MARKER_COLOR, linewidth=0.9, linestyle=":", zorder=1,
                   label="recorded marker" if label and k == 0 else None)


def write_markers_csv(analysis, path, time_offset: float = 0.0) -> Path:
    """Write the recorded markers as CSV.

    ``time_s`` (file time, as in the JSON), ``time``, ``stream``, ``marker`` (Attune's JSON markers in words, others as
    recorded) and ``raw`` (as recorded).
    """
    import csv

    from attune_monitor.acquisition.files import marker_words

    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time_s", "time", "stream", "marker", "raw"])
        for t, name, text in getattr(analysis, "markers", []):
            tf = round(t + time_offset, 3)
            w.writerow([tf, clock(tf), name, marker_words(text), text])
    return path


def _new_figure(n_rows: int, height_per_row: float = 2.3, extra_top_in: float = 0.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = _MARGIN_IN
    width = 11.0
    height = m["top"] + extra_top_in + m["bottom"] + height_per_row * n_rows
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    # fixed margins (not a layout engine, which sizes them by the labels): every plot's time axis spans the
    # same pixels, so the report's plots line up in time
    fig.subplots_adjust(left=m["left"] / width, right=1 - m["right"] / width,
                        top=1 - (m["top"] + extra_top_in) / height, bottom=m["bottom"] / height,
                        hspace=0.25 / max(height_per_row - 0.25, 0.5))
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False)[:, 0]
    return fig, axes


def _decimate_for_plot(t: np.ndarray, y: np.ndarray, max_points: int = 6000):
    """Keep at most ~max_points columns (min/max pairs would be overkill for smooth signals)."""
    step = max(1, int(math.ceil(t.size / max_points)))
    return t[::step], y[..., ::step]


def plot_signals(analysis, doc: dict, time_offset: float, path) -> Path | None:
    """Every person's signals per modality, episodes shaded, signal loss hatched.

    Parameters
    ----------
    analysis : ui.runner.Analysis
        ``grid[m]`` of shape (n_people, n_samples) at ``analysis.fs``.
    doc : dict
        The attune.analysis/1 document (episodes, signal loss in file time).
    time_offset : float
        File time of session time 0.
    path : path-like
        PNG to write.
    """
    mods = [m for m in analysis.modalities if m in analysis.grid and analysis.grid[m].size]
    if not mods:
        return None
    fig, axes = _new_figure(len(mods))
    end = doc["duration_s"]
    eps = list(enumerate(doc["episodes"], 1))
    for ax, m in zip(axes, mods):
        g = np.asarray(analysis.grid[m], dtype=float)
        t = np.arange(g.shape[1]) / analysis.fs + time_offset
        tt, gg = _decimate_for_plot(t, g)
        for i, person in enumerate(analysis.participants):
            color = PERSON_COLORS[i % len(PERSON_COLORS)]
            ax.plot(tt, gg[i], color=color, linewidth=0.9, label=_plain(person, 24))
            _hatch_losses(ax, [x for x in doc["signal_loss"] if x["participant"] == person and x["modality"] == m],
                          end, color)
        _shade_episodes(ax, eps, end, label=ax is axes[0])
        ax.set_ylabel(f"{MODALITY_WORDS[m]} ({UNITS[m]})")
        ax.legend(loc="upper right", fontsize=8, ncol=min(4, len(analysis.participants)), framealpha=0.8)
        _time_axis(ax, end)
    axes[0].set_title("Signals (grid). Shaded red: possible ruptures; hatched: signal lost or unreliable", fontsize=10)
    axes[-1].set_xlabel("time since the start of the recording (mm:ss)")
    fig.savefig(path)
    return Path(path)


def baseline_trace(sync: np.ndarray, chance: np.ndarray, t: np.ndarray, preset: str, step_s: float,
                   modality: str = "hr", chance_sd: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and lower edge of the usual range of one pair and modality over time.

    Replay the detector's per-pair machine on one modality to get its baseline and the lower edge of the
    usual range (``baseline - cusum_k * margin``, the live view's band) over time.

    Parameters
    ----------
    sync, chance : ndarray, shape (n_windows,)
    t : ndarray, shape (n_windows,)
    chance_sd : ndarray, shape (n_windows,) | None
        The surrogate's spread per window (what arming measures the excess against; None: unknown).
    preset : str
    step_s : float

    Returns
    -------
    baseline, threshold : ndarray, shape (n_windows,)
        As r; NaN while calibrating or when the pair is never clearly above chance.
    """
    from attune_monitor.dsp.detector import PairModalityMachine, get_preset

    cfg = get_preset(preset)
    mach = PairModalityMachine(modality, cfg, step_s)
    base = np.full(t.size, np.nan)
    thr = np.full(t.size, np.nan)
    sd = np.full(t.size, np.nan) if chance_sd is None else np.asarray(chance_sd, dtype=float)
    for k in range(t.size):
        mach.step_window(float(t[k]), float(sync[k]), float(chance[k]), float(sd[k]))
        thr_z = mach.threshold_z()
        if np.isfinite(thr_z):
            base[k] = math.tanh(mach.baseline_z)
            thr[k] = math.tanh(thr_z)
    return base, thr


def plot_pair(analysis, p: int, doc: dict, time_offset: float, path, preset: str = "balanced") -> Path | None:
    """Synchrony of pair ``p`` per modality with its baseline, usual range, chance, episodes and losses.

    Synchrony of pair ``p`` per modality with baseline, the usual range's lower edge and chance, episodes and
    losses.

    Parameters
    ----------
    analysis : ui.runner.Analysis
        ``sync[m]["t"]`` (n_windows,), ``sync[m]["sync"]`` and ``sync[m]["chance"]`` (n_pairs, n_windows).
    p : int
        Pair index into ``analysis.pairs``.
    """
    pair = tuple(analysis.pairs[p])
    mods = [m for m in analysis.modalities if m in analysis.sync and np.asarray(analysis.sync[m]["t"]).size]
    if not mods:
        return None
    fig, axes = _new_figure(len(mods), 2.1)
    end = doc["duration_s"]
    eps = [(i, e) for i, e in enumerate(doc["episodes"], 1) if tuple(e["pair"]) == pair]
    n_pairs = len(analysis.pairs)
    for ax, m in zip(axes, mods):
        w = analysis.sync[m]
        t = np.asarray(w["t"], dtype=float)
        r = np.asarray(w["sync"], dtype=float).reshape(n_pairs, -1)[p]
        ch = w.get("chance")
        ch = (np.full_like(r, np.nan) if ch is None
              else np.broadcast_to(np.asarray(ch, dtype=float).reshape(n_pairs, -1)[p], r.shape))
        sd = w.get("chance_sd")
        if sd is not None:
            sd = np.broadcast_to(np.asarray(sd, dtype=float).reshape(n_pairs, -1)[p], r.shape)
        base, thr = baseline_trace(r, ch, t, preset, analysis.step_s, m, sd)  # "sync" is what the detector saw
        tf = t + time_offset
        if sd is not None:
            ok = np.isfinite(ch) & np.isfinite(sd)
            ax.fill_between(tf, ch - sd, ch + sd, where=ok, color="#9e9e9e", alpha=0.35, linewidth=0,
                            label="chance (surrogate mean ± 1 sd)")
        else:
            ax.fill_between(tf, -1, ch, where=np.isfinite(ch), color="#9e9e9e", alpha=0.3, linewidth=0,
                            label="chance level (and below)")
        ax.plot(tf, r, color=MODALITY_COLORS[m], linewidth=0.8, label="synchrony r (window)")
        ax.plot(tf, base, color="#2E7D32", linewidth=1.6, label="pair's baseline")
        ax.plot(tf, thr, color="#2E7D32", linewidth=1.0, linestyle="--", label="usual range, lower edge")
        who = [x for x in doc["signal_loss"] if x["participant"] in pair and x["modality"] == m]
        _hatch_losses(ax, who, end)
        _shade_episodes(ax, eps, end, label=ax is axes[0])
        _draw_markers(ax, _marker_times(analysis, time_offset), label=True)
        ax.set_ylim(-1.02, 1.02)
        ax.axhline(0, color="#999999", linewidth=0.5)
        ax.set_ylabel(f"{MODALITY_WORDS[m]}\nsynchrony r")
        ax.legend(loc="lower left", fontsize=7.5, ncol=4, framealpha=0.85)
        _time_axis(ax, end)
    axes[0].set_title(f"Pair {_plain(pair[0], 24)} – {_plain(pair[1], 24)}. Shaded red: possible ruptures; "
                      "hatched: signal loss (synchrony not computed)", fontsize=10)
    axes[-1].set_xlabel("time since the start of the recording (mm:ss)")
    fig.savefig(path)
    return Path(path)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` index ranges (stop exclusive) where a 1-D boolean mask is True."""
    d = np.diff(np.r_[0, np.asarray(mask, dtype=np.int8), 0])
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def plot_arousal(analysis, doc: dict, time_offset: float, path) -> Path | None:
    """Each person's smoothed arousal log-likelihood ratio with the threshold, moving-away spans and episodes.

    Parameters
    ----------
    analysis : ui.runner.Analysis
        ``arousal_t`` (n_sec,), ``arousal`` (n_people, n_sec) smoothed ``L``, ``arousal_state``
        (n_people, n_sec) codes into :data:`attune_monitor.dsp.divergence.AROUSAL_STATES`, ``arousal_threshold``.
    doc : dict
        The attune.analysis/1 document (episodes in file time).
    time_offset : float
        File time of session time 0.
    path : path-like
        PNG to write.

    Returns
    -------
    path : Path | None
        ``None`` when the analysis has no arousal values (nothing written).
    """
    from matplotlib.patches import Patch

    from .model import AROUSAL_STATES

    t = np.asarray(getattr(analysis, "arousal_t", np.zeros(0)), dtype=float)
    L = np.asarray(getattr(analysis, "arousal", np.zeros((0, 0))), dtype=float)
    code = np.asarray(getattr(analysis, "arousal_state", np.zeros((0, 0))), dtype=np.uint8)
    people = list(analysis.participants)
    if not t.size or L.shape != (len(people), t.size) or not np.isfinite(L).any():
        return None
    thr = float(analysis.arousal_threshold)
    fig, axes = _new_figure(len(people), 1.6, extra_top_in=0.15)
    end = doc["duration_s"]
    tf = t + time_offset
    half = 0.5 * float(analysis.step_s)
    # one y range for everybody (comparable rows), the threshold always in view, extremes clipped
    fin = L[np.isfinite(L)]
    lo = min(-2.0, float(np.clip(fin.min(), -30.0, 0.0))) - 0.5
    hi = max(thr + 2.0, float(np.clip(fin.max(), 0.0, 40.0))) + 0.5
    hi += 0.12 * (hi - lo)  # room for the episode numbers above the curves
    states = {s: AROUSAL_STATES.index(s) for s in AROUSAL_SHADES}
    for i, (ax, person) in enumerate(zip(axes, people)):
        for state, k in states.items():
            color, alpha, _ = AROUSAL_SHADES[state]
            # each moving-away second covers its whole step (start - step/2 .. end + step/2); a solid strip
            # along the bottom keeps the flavour readable where an episode's shading overlaps
            for a, b in _runs(code[i] == k):
                x0, x1 = tf[a] - half, tf[b - 1] + half
                ax.axvspan(x0, x1, color=color, alpha=alpha, linewidth=0, zorder=1)
                ax.axvspan(x0, x1, ymin=0.0, ymax=0.07, color=color, linewidth=0, zorder=1)
        eps = [(n, e) for n, e in enumerate(doc["episodes"], 1) if person in e["pair"]]
        _shade_episodes(ax, eps, end)
        known = np.flatnonzero(np.isfinite(L[i]))
        first = tf[known[0]] if known.size else end
        if first - time_offset > 20:
            ax.text(0.5 * (time_offset + first), 0.25, "learning baseline", transform=ax.get_xaxis_transform(),
                    ha="center", va="center", fontsize=8, color="#6B7280")
        ax.axhline(thr, color="#333333", linewidth=1.0, linestyle="--", zorder=2)
        ax.axhline(0, color="#999999", linewidth=0.5, zorder=2)
        ax.plot(tf, np.clip(L[i], lo, hi), color=PERSON_COLORS[i % len(PERSON_COLORS)], linewidth=1.1, zorder=3)
        ax.set_ylim(lo, hi)
        ax.set_ylabel(f"{_plain(person, 14)}\narousal L", fontsize=9)
        _time_axis(ax, end)
    handles = [
        plt_line("#555555", "-", "L: moving away vs in tune (5 s mean)"),
        plt_line("#333333", "--", f"threshold (preset: {thr:g})"),
        *[Patch(facecolor=AROUSAL_SHADES[s][0], alpha=AROUSAL_SHADES[s][1], label=f"moving away ({s})")
          for s in AROUSAL_SHADES],
        Patch(facecolor=EPISODE_COLOR, alpha=0.13, label="possible rupture (their pairs)"),
    ]
    axes[0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7.5, ncol=5,
                   frameon=False, borderaxespad=0.1)
    fig.suptitle("Arousal of each person vs the rest of the group: L = log-likelihood ratio 'moving away' vs "
                 "'in tune' (heart rate, skin conductance)", fontsize=10, y=1 - 0.08 / fig.get_figheight(),
                 va="top")
    axes[-1].set_xlabel("time since the start of the recording (mm:ss)")
    fig.savefig(path)
    return Path(path)


def plt_line(color: str, style: str, label: str):
    """A legend handle for a line."""
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, linestyle=style, linewidth=1.2, label=label)


def _table(header, rows) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 1150px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
.note { color: #555; } .warn { color: #a04000; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.4em 0; }
"""


def _f(x, spec="+.2f"):
    return "–" if x is None else format(x, spec)


def write_report(analysis, out_dir, doc: dict | None = None, time_offset: float = 0.0, problems=(), notes=(),
                 preset: str = "balanced") -> Path:
    """Write the HTML report of one analysis into ``out_dir`` (created if needed).

    Parameters
    ----------
    analysis : ui.runner.Analysis
    out_dir : path-like
    doc : dict | None
        Its attune.analysis/1 document (built when None).
    time_offset : float
        File time of session time 0 (see :func:`attune_monitor.ui.analysis_io.analysis_to_json`).
    problems, notes : sequence of str
        What could not be read; which streams were chosen.
    preset : str
        Detector preset the analysis used (for the baseline and threshold lines).

    Returns
    -------
    index : Path
        The ``index.html`` written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = doc if doc is not None else analysis_to_json(analysis, time_offset)
    write_json(doc, out / "analysis.json")
    away = analysis.episode_arousal() if hasattr(analysis, "episode_arousal") else None
    if away is not None and len(away) != len(doc["episodes"]):
        away = None  # a document of another analysis: nothing to say about its flags
    write_episodes_csv(doc, out / "episodes.csv", away=away)
    markers = list(getattr(analysis, "markers", []))
    if markers:
        write_markers_csv(analysis, out / "markers.csv", time_offset)
    away = away or [{} for _ in doc["episodes"]]
    images = []
    if plot_signals(analysis, doc, time_offset, out / "signals.png"):
        images.append(("signals.png", "Signals of every participant"))
    for p, pair in enumerate(analysis.pairs):
        name = f"sync_{p + 1:02d}.png"
        if plot_pair(analysis, p, doc, time_offset, out / name, preset):
            images.append((name, f"Synchrony of {pair[0]} and {pair[1]}"))
    if plot_arousal(analysis, doc, time_offset, out / "arousal.png"):
        images.append(("arousal.png", "Arousal of each person: moving away from the group (climbing or flattening)"))

    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Attune analysis – {_esc(Path(doc['recording']).name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Attune analysis of {_esc(doc['recording'])}</h1>",
        f"<p>Duration {_esc(clock(doc['duration_s']))}, {len(doc['participants'])} participants, "
        f"{len(analysis.pairs)} pairs, detector preset {_esc(preset)}.</p>",
        '<p class="note">A flagged drop in synchrony is a <em>possible</em> rupture: a prompt for the '
        "facilitator to check in with the people, never a diagnosis. Synchrony is the windowed (30 s) correlation "
        "of two people's heart rate and of their skin-conductance changes (responses to the same moments, up "
        "to 3 s apart); the chance level is what unrelated people reach.</p>",
    ]
    if problems:
        parts.append("<h2>What could not be read</h2><ul>" + "".join(
            f'<li class="warn">{_esc(x)}</li>' for x in problems) + "</ul>")
    parts.append("<h2>Participants</h2>")
    parts.append(_table(("participant", "streams used"),
                        [(p["id"], ", ".join(p["streams"])) for p in doc["participants"]]))
    if notes:
        parts.append("<ul>" + "".join(f'<li class="note">{_esc(x)}</li>' for x in notes) + "</ul>")
    parts.append("<h2>Synchrony per pair</h2>")
    parts.append(_table(
        ("pair", "modality", "mean synchrony (Fisher z mean of r)", "SSI ln(Σr+/Σ|r−|)", "coverage"),
        [("–".join(r["pair"]), r["modality"], _f(r["mean_sync"]), _f(r["ssi"]), f"{r['coverage']:.0%}")
         for r in doc["pairs"]]))
    names = {"hr": "heart", "eda": "skin"}
    parts.append("<h2>Measurably in tune?</h2>")
    parts.append(_table(
        ("pair", "in tune (armed)", "out of tune after a lapse", "synchrony above chance (Fisher z ± SE)"),
        [("–".join(a["pair"]),
          (f"{a['armed_fraction']:.0%}" if a["armed_fraction"] >= 0.01 else "under 1 %") + " of the session"
          if a["armed_spans"] else "not measurably in tune",
          ", ".join(f"{clock(x)}–{clock(y)}" for x, y in a["out_of_tune_spans"]) or "–",
          ", ".join(f"{names.get(m, m)} {x['excess']:+.2f} ± {x['se']:.2f}" for m, x in a["above_chance"].items()
                    if x["excess"] is not None and x["se"] is not None) or "–")
         for a in doc.get("attunement", [])]))
    from attune_monitor.dsp.detector import get_preset

    dc = get_preset(preset) if isinstance(preset, str) else preset
    rising = ""
    if dc.arm_correct:
        from attune_monitor.dsp.detector import arm_sigma_after

        need = [arm_sigma_after(dc, u) for u in (480.0, 1080.0)]
        rising = (f", more the longer a pair is tested without passing: {need[0]:.2f} after 8 minutes, "
                  f"{need[1]:.2f} after 18")
    parts.append('<p class="note">A possible rupture needs an attunement to lapse from: a pair is watched for one only '
                 f"while its synchrony has been measurably above chance (its mean over the last {dc.arm_span_s:g} s of "
                 f"windows at least {dc.arm_sigma:g} standard errors above the time-shifted-partner level{rising}). "
                 "A pair never in tune is <em>not measurably in tune</em>, and nothing is flagged for it. "
                 f"A possible rupture that does not come back within {dc.lapse_s / 60:g} minutes of its onset "
                 "closes as not repaired and the pair shows <em>out of tune</em> until it is measurably in tune "
                 "again. Markers, task switches, gaps and everybody's arousal moving at once re-baseline every "
                 "pair.</p>")
    parts.append(f"<h2>Possible ruptures ({len(doc['episodes'])})</h2>")
    if doc["episodes"]:
        numbered = [{**e, "id": i} for i, e in enumerate(doc["episodes"], 1)]
        groups = [g for g in group_episodes(numbered, [p["id"] for p in doc["participants"]]) if g["words"]]
        if groups:
            parts.append("<p>One person drifting away from several others at once (their pairs' episodes, "
                         "flagged together):</p><ul>" + "".join(
                             f"<li>{_esc(g['words'])} (episodes {', '.join(str(e['id']) for e in g['episodes'])}; "
                             f"{_esc(_group_status(g))})</li>"
                             for g in groups) + "</ul>")
        parts.append(_table(
            ("#", "pair", "who is disconnecting", "onset", "deepest", "end", "outcome", "time to repair",
             "depth (0-1)", "modalities", "confidence", "arousal context", "moving away before the flag"),
            [(i, "–".join(e["pair"]), disconnecting_words(e["people"], e["pair"], away[i - 1]), clock(e["onset_s"]),
              clock(e["nadir_s"]), clock(e["offset_s"]), episode_status(e)[1],
              "–" if e["time_to_repair_s"] is None else f"{e['time_to_repair_s']:.0f} s", depth_number(e["depth"]),
              "+".join(e["modalities"]), f"{e['confidence']:.2f}",
              ", ".join(f"{k}: {v}" for k, v in e["context"].items()),
              ", ".join(f"{k} ({v})" for k, v in away[i - 1].items()) or "–")
             for i, e in enumerate(doc["episodes"], 1)]))
        parts.append('<p class="note">Depth: 0 = as in tune as usual for this pair, 1 = down to chance level '
                     "(synchrony that fell further, below chance, shows as 1.00 (below chance)). Who is "
                     "disconnecting: in a group, the member most of whose pairs dropped; a couple's drop cannot be "
                     "told apart, unless one partner's arousal moved away before the flag (then that partner, "
                     "marked (arousal)). "
                     "Moving away before the flag: whose arousal (heart rate, skin conductance) was moving away "
                     "from the rest of the group while the episode built up (from its onset to the flag), climbing "
                     "(aversive) or flattening (withdrawn); "
                     'see the arousal plot. Also in <a href="episodes.csv">episodes.csv</a>.</p>')
    else:
        parts.append("<p>None flagged.</p>")
    parts.append(f"<h2>Signal loss ({len(doc['signal_loss'])})</h2>")
    if doc["signal_loss"]:
        parts.append(_table(("participant", "modality", "from", "to", "reason"),
                            [(x["participant"], x["modality"], clock(x["onset_s"]),
                              "end" if x["offset_s"] is None else clock(x["offset_s"]), x["reason"])
                             for x in doc["signal_loss"]]))
        parts.append('<p class="note">Synchrony is not computed while a signal is lost; these periods are not '
                     "counted as ruptures.</p>")
    else:
        parts.append("<p>None.</p>")
    if markers:
        from attune_monitor.acquisition.files import marker_words

        parts.append(f"<h2>Recorded markers ({len(markers)})</h2>")
        parts.append(_table(("time", "stream", "marker"),
                            [(clock(t + time_offset), name, marker_words(text))
                             for t, name, text in markers]))
        parts.append('<p class="note">What the facilitator (or another app) marked during the session; dotted '
                     'lines in the synchrony plots. Also in <a href="markers.csv">markers.csv</a>.</p>')
    parts.append("<h2>Plots</h2>")
    for name, alt in images:
        parts.append(f'<figure><img src="{_esc(name)}" alt="{_esc(alt)}"><figcaption>{_esc(alt)}</figcaption></figure>')
        if name == "arousal.png":
            parts.append(
                '<p class="note">Arousal: per person and second, L is the log-likelihood ratio of their heart rate '
                "and skin conductance (level, variability, responses; relative to their own baseline) moving away "
                "from the rest of the group rather than being in tune with it, mean of the last 5 s. At or above the "
                f"preset's threshold ({_esc(format(float(getattr(analysis, 'arousal_threshold', math.nan)), 'g'))}) "
                "the person reads as moving away: climbing (aversive: more aroused) or flattening (withdrawn). "
                + ("In a couple the two readings mirror each other, so only the likelier of the two counts. "
                   if len(analysis.participants) == 2 else "")
                + "No line: still learning the person's baseline (about the first 1.5 minutes). The plots share "
                "one time axis.</p>")
    parts.append('<p class="note">Files: <a href="analysis.json">analysis.json</a> (attune.analysis/1), '
                 '<a href="episodes.csv">episodes.csv</a>.</p></body></html>')
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index
