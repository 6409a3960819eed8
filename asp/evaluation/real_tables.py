"""The real-sound experiment's tables and page (``asp.evaluation.real``): each method's best match
per sound summarized (mean with its 95% CI, median and IQR per distance, ratios to lookup with
their paired-bootstrap intervals, per synth and per source) for table.md and table.csv, and the
listening page that plays every method's match beside the sound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.evaluation.results import describe, finite_values
from asp.report import Document, Section, Table, Text, choose_samples
from asp.report.pages import INDEX_PAGE, REPORT_FOLDER, render_page
from asp.stats import BOOTSTRAP, mean_ci, ratio_ci

SOUNDS = "sounds"  # <out>/sounds/<name>/: run_inference's output folder for the sound
METRICS = (  # (samples.csv column, heading)
    ("lsd", "LSD"),
    ("multi_scale_log_mel_distance", "multi-scale log-mel"),
    ("mfcc_distance", "MFCC"),
)
METHODS = {  # method -> its row in the tables
    "one-shot": "network one-shot (best synth)",
    "searched": "network + search (best synth)",
    "lookup": "lookup: nearest training sound (any synth)",
    "mean": "training-mean preset (best synth)",
}
REFERENCE = "lookup"  # the ratios' denominator


def _best(rows: list[dict], method: str) -> dict[str, dict]:
    """{sound: its best row} of a method."""
    return {r["sound"]: r for r in rows if r["method"] == method and int(r["best"]) == 1}


def summary(rows: list[dict], *, title: str = "Real sounds", about: str = "", seed: int = 0) -> tuple:
    """The tables of samples.csv's rows: (a ``Document`` for table.md and the page, the rows of
    table.csv: method, metric, n, mean, ci95 (half-width, Student's t), median, iqr, and the ratio
    to lookup with its bootstrap interval)."""
    sounds = list(dict.fromkeys(r["sound"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    best = {m: _best(rows, m) for m in methods}
    reference = best.get(REFERENCE, {})
    doc = Document(title, [Text(about)] if about else [])
    doc.intro.append(
        Text(
            f"{len(sounds)} sounds. A method's match of a sound is its best synth's (the lowest LSD), lookup's the "
            "nearest training sound re-rendered at the sound's note. Cells: mean ± half-width of its 95% confidence "
            "interval (Student's t) / median / IQR; lower is closer."
        )
    )
    main = Table(["method", *(h for _, h in METRICS)])
    ratios = Table(["method", *(f"{h} ÷ lookup" for _, h in METRICS), "closer than lookup (LSD)"])
    csv_rows = []
    for m in methods:
        cells, ratio_cells = [], []
        for metric, _ in METRICS:
            values = [best[m][s][metric] for s in sounds if s in best[m]]
            cells.append(describe(values))
            v = finite_values(values)
            q1, median, q3 = np.percentile(v, [25, 50, 75]) if len(v) else (np.nan,) * 3
            mean, half = mean_ci(v)
            paired = [s for s in sounds if s in best[m] and s in reference]
            ratio, low, high = ratio_ci(
                [best[m][s][metric] for s in paired], [reference[s][metric] for s in paired], seed
            )
            if m != REFERENCE:
                ratio_cells.append(f"{ratio:.2f}x [{low:.2f}, {high:.2f}]" if np.isfinite(ratio) else "-")
            csv_rows.append(
                {
                    "method": m,
                    "metric": metric,
                    "n": len(v),
                    "mean": mean,
                    "ci95": half,
                    "median": float(median),
                    "iqr": float(q3 - q1),
                    "ratio_to_lookup": ratio,
                    "ratio_low": low,
                    "ratio_high": high,
                }
            )
        main.rows.append([METHODS[m], *cells])
        if m != REFERENCE:
            paired = [s for s in sounds if s in best[m] and s in reference]
            closer = sum(best[m][s]["lsd"] < reference[s]["lsd"] for s in paired)
            ratio_cells.append(f"{closer} of {len(paired)}")
            ratios.rows.append([METHODS[m], *ratio_cells])
    doc.sections.append(Section("Distances to the real sounds", [main]))
    if reference:
        doc.sections.append(
            Section(
                "Relative to lookup",
                [
                    Text(
                        "Each method's mean distance divided by lookup's over the same sounds, with the 95% interval "
                        f"of a paired bootstrap ({BOOTSTRAP} resamples of the sounds); below 1 is closer than lookup."
                    ),
                    ratios,
                ],
            )
        )
    doc.sections.append(Section("Per synth", [_synth_table(rows, sounds)]))
    sources = sorted({str(r["source"]) for r in rows} - {""})
    if len(sources) > 1:
        table = Table(["method", *(f"LSD, {s}" for s in sources)])
        for m in methods:
            table.rows.append(
                [METHODS[m], *(describe([r["lsd"] for r in best[m].values() if r["source"] == s]) for s in sources)]
            )
        doc.sections.append(Section("Per source", [table]))
    return doc, csv_rows


def _synth_table(rows: list[dict], sounds: list[str]) -> Table:
    """Per synth: the mean LSD of its one-shot, searched and mean matches over every sound, and
    how often each method picked it (lookup: how often the nearest sound was of it)."""
    synths = list(dict.fromkeys(r["synth"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    per_synth = [m for m in methods if m != REFERENCE]
    table = Table(["synth", *(f"{m} LSD" for m in per_synth), *(f"{m} picks" for m in methods)])
    for synth in synths:
        cells = [describe([r["lsd"] for r in rows if r["method"] == m and r["synth"] == synth]) for m in per_synth]
        picks = [
            f"{sum(r['method'] == m and r['synth'] == synth and int(r['best']) == 1 for r in rows)} of {len(sounds)}"
            for m in methods
        ]
        table.rows.append([synth, *cells, *picks])
    return table


# -- the listening page -----------------------------------------------------------------------


def listening_page(out: Path, rows: list[dict], doc: Document, *, report_samples: int, title: str) -> Path:
    """``<out>/report/index.html`` (the evaluation page's template): each sound and every method's
    best match, playable, for up to ``report_samples`` sounds (the best, the median and the worst by
    the searched match's LSD, others between); every sound's distances in a sortable table."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    reference = "searched" if "searched" in methods else methods[0]
    sounds = list(dict.fromkeys(r["sound"] for r in rows))
    samples = {}
    for k, sound in enumerate(sounds):
        mine = [r for r in rows if r["sound"] == sound]
        cells = {}
        for r in mine:
            if int(r["best"]) != 1:
                continue
            stem = {"one-shot": r["synth"], "searched": f"{r['synth']}.refined", "lookup": "lookup"}.get(
                r["method"], f"mean.{r['synth']}"
            )
            cells[r["method"]] = {
                "lsd": float(r["lsd"]),
                "synth": r["synth"],
                "audio": f"../{SOUNDS}/{sound}/{stem}.wav",
                "png": f"../{SOUNDS}/{sound}/{stem}.mel.png",
            }
        samples[k] = {
            "index": k,
            "name": sound,
            "synth": str(mine[0]["source"]) or "sound",
            "hpss": 0,
            "note": int(mine[0]["note"]),
            "cells": cells,
            "case": None,
            "target": {"audio": f"../{SOUNDS}/{sound}/target.wav", "png": f"../{SOUNDS}/{sound}/target.mel.png"},
        }
    scored = {k: s["cells"][reference]["lsd"] for k, s in samples.items() if reference in s["cells"]}
    cases = choose_samples(scored, report_samples)
    for k, case in cases.items():
        samples[k]["case"] = case

    def key(s):
        lsd = s["cells"].get(reference, {}).get("lsd", np.nan)
        return (not np.isfinite(lsd), lsd if np.isfinite(lsd) else 0.0, s["index"])

    page = out / REPORT_FOLDER / INDEX_PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    return render_page(
        "evaluation.html.j2",
        page,
        title=title,
        methods=methods,
        reference=reference,
        listen=sorted((samples[k] for k in cases), key=key),
        samples=sorted(samples.values(), key=key),
        report_samples=report_samples,
        missing=0,
        synths=sorted({s["synth"] for s in samples.values()}),
        bins=[],
        documents=[{"path": "../table.md", "doc": doc}],
        plots=[],
        links=[f"../{SOUNDS}/{INDEX_PAGE}", "../samples.csv", "../table.csv"],
    )
