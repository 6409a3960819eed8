"""An experiment's table (table.md): one line per row, mean ± 95% CI (median) of each metric,
and each row relative to the training-mean preset, built once as a ``Document`` for the markdown
file and the report page; and all_samples.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.evaluation.results import finite_values, mean_ci_text, write_csv
from asp.evaluation.summary import DIGITS
from asp.files import atomic_write
from asp.report import Document, Table, Text

TABLE_METRICS = (  # (CSV column, table heading) after the per-synth LSD columns
    ("mrsd", "MRSD"),
    ("multi_scale_log_mel_distance", "log-mel distance"),
    ("mfcc_distance", "MFCC distance"),
    ("rms_envelope_similarity", "RMS envelope similarity"),
    ("cat_accuracy", "categorical accuracy"),
    ("param_mse", "parameter MSE"),
)
PARAMETER_COLUMNS = {"cat_accuracy", "param_mse"}  # scored on the sound's own synth only


def _test_set_line(settings: dict) -> str:
    """Which sounds the table scores, for table.md."""
    limit = settings.get("eval_max_samples")
    size = f"at most {limit} sounds per evaluation (seeded choice)" if limit else "every sound"
    if settings.get("test_dir"):
        return (
            f"Test set: the test split of {settings['test_dir']}, held out from the training data "
            f"{settings['data_dir']} (whose training split the mean and nearest baselines use); {size}."
        )
    return f"Test set: the test split of {settings['data_dir']}, the training data's own; {size}."


CELLS = (
    "Cells: mean ± half-width of its 95% confidence interval (median in brackets). LSD per synth and over "
    "all sounds, then the other audio metrics over all sounds; lower is better except the RMS envelope "
    "similarity and categorical accuracy. Parameter MSE: over the sound's synth's whole encoded vector."
)
BREAKDOWNS = "Per-synth, per-HPSS-bin and per-parameter-group breakdowns: the summary.md files beside."


def write_table(
    out: Path,
    config: dict,
    profile: str,
    table_rows: list,
    synths: list[str],
    *,
    test_set: str = "",
    extra: list | None = None,
) -> Document:
    """Writes ``table.md`` (one line per row: mean ± 95% CI (median) of each metric) and
    ``all_samples.csv``; returns the table's ``Document``.

    Args:
        out: the config's results folder.
        table_rows: (label, row config, CSV rows) per table row.
        synths: the dataset's synths, one LSD column each.
        test_set: a line saying which sounds were scored.
        extra: blocks (``Text``, ``Table``) after the relative table, e.g. the scaling curve.
    """
    doc = Document(f"{config.get('title', config['name'])} ({profile} profile)", [Text(test_set)] if test_set else [])
    table = Table(["row", *synths, "all", *(heading for _, heading in TABLE_METRICS)])
    doc.intro += [Text(CELLS), table]
    everything = []
    for label, _row, rows in table_rows:
        table.rows.append([label, *_row_cells(rows, synths)])
        everything += [{**r, "row": label} for r in rows]
    doc.intro += [*relative_blocks(table_rows, synths), *(extra or []), Text(BREAKDOWNS)]
    with atomic_write(out / "table.md") as f:
        f.write(doc.markdown())
    write_csv(out / "all_samples.csv", everything)
    return doc


def _cell(values: list, digits: int = 2) -> str:
    finite = finite_values(values)
    return f"{mean_ci_text(list(finite), digits)} ({np.median(finite):.{digits}f})" if len(finite) else "-"


def _row_cells(rows: list[dict], synths: list[str]) -> list[str]:
    """A table row's cells: LSD per synth and over all, then each of ``TABLE_METRICS``."""
    own = [r for r in rows if r["rendered_synth"] == r["synth"]]
    scored = own or rows
    if not own and rows:  # out of domain: the best head per sound
        best: dict = {}
        for r in rows:
            key = r["index"]
            if key not in best or r["lsd"] < best[key]["lsd"]:
                best[key] = r
        scored = list(best.values())
    cells = [_cell([r["lsd"] for r in scored if r["synth"] == s]) for s in synths]
    cells.append(_cell([r["lsd"] for r in scored]))
    for metric, _ in TABLE_METRICS:
        source = own if metric in PARAMETER_COLUMNS else scored
        cells.append(_cell([r.get(metric) for r in source], DIGITS.get(metric, 2)))
    return cells


def mean_ratio(rows: list[dict], reference: list[dict], metric: str, synth: str | None = None) -> float:
    """The mean of ``metric`` over ``rows`` divided by its mean over ``reference`` (own-synth
    matches only; ``synth``: that synth's sounds, None: every sound); nan where either has none."""

    def mean(of):
        values = finite_values(
            [r.get(metric) for r in of if r["rendered_synth"] == r["synth"] and synth in (None, r["synth"])]
        )
        return float(values.mean()) if len(values) else float("nan")

    return mean(rows) / mean(reference)


def relative_blocks(table_rows: list, synths: list[str], reference: str = "baseline: mean") -> list[Text | Table]:
    """Each row's mean LSD and parameter MSE per synth as a multiple of the training-mean preset's
    (below 1: better than predicting one average preset): a line and a table. Own-synth matches
    only; empty without the mean baseline."""
    by_label = {label: rows for label, _, rows in table_rows}
    base = by_label.get(reference)
    if not base:
        return []
    table = Table(["row", *(f"{s} LSD" for s in synths), *(f"{s} param MSE" for s in synths)])
    for label, own in by_label.items():
        if label == reference or not any(r["rendered_synth"] == r["synth"] for r in own):
            continue
        cells = []
        for metric in ("lsd", "param_mse"):
            for s in synths:
                ratio = mean_ratio(own, base, metric, s)
                cells.append(f"{ratio:.2f}x" if np.isfinite(ratio) else "-")
        table.rows.append([label, *cells])
    about = (
        "Relative to the training-mean preset (mean over the sounds of a synth, divided by the mean "
        "baseline's; below 1 is better):"
    )
    return [Text(about), table]


def relative_table(table_rows: list, synths: list[str], reference: str = "baseline: mean") -> list[str]:
    """``relative_blocks`` as markdown lines, each block after a blank line ([] without the mean baseline)."""
    lines = []
    for block in relative_blocks(table_rows, synths, reference):
        lines += ["", *block.markdown().split("\n")]
    return lines
