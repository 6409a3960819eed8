"""An evaluation's tables (mean ± 95% CI / median / IQR per synth and per HPSS bin, parameter
error per group, out-of-domain matches), built once as a ``Document`` for summary.md and the
report page, and the one-paragraph comparison of each model with the baselines."""

from __future__ import annotations

import numpy as np

from asp import metrics
from asp.evaluation.results import describe, finite_values
from asp.report import Document, Section, Table, Text, hpss_bins

AUDIO_METRICS = metrics.AUDIO_METRICS
PARAM_METRICS = ("cat_accuracy", "cont_sq_error", "param_mse")
BASELINES = ("mean", "random", "nearest")
DIGITS = {"rms_envelope_similarity": 3, "cat_accuracy": 3, "cont_sq_error": 4, "param_mse": 4}
CELLS = (
    "Cells: mean ± half-width of its 95% confidence interval (Student's t) / median / IQR. Lower is "
    "better, except cat_accuracy and rms_envelope_similarity. param_mse: squared error over the whole "
    "encoded vector."
)


def summary_document(rows: list[dict], *, about: str = "") -> Document:
    """Mean ± 95% CI / median / IQR tables per synth and per HPSS bin, and per-group parameter errors.

    Args:
        rows: the CSV rows of one evaluation.
        about: a line saying which sounds were evaluated.
    """
    in_domain = [r for r in rows if r["rendered_synth"] == r["synth"]]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    synths = sorted({r["synth"] for r in rows})
    doc = Document("Evaluation", [Text(about)] if about else [])
    doc.intro.append(Text(CELLS))
    for metric in (*AUDIO_METRICS, *PARAM_METRICS):
        digits = DIGITS.get(metric, 2)
        table = Table(["method", *synths, "all"])
        for m in methods:
            mine = [r for r in in_domain if r["method"] == m]
            cells = [describe([r.get(metric) for r in mine if r["synth"] == s], digits) for s in synths]
            table.rows.append([m, *cells, describe([r.get(metric) for r in mine], digits)])
        doc.sections.append(Section(f"{metric} per synth", [table]))
    doc.sections.append(Section("lsd per HPSS bin", [_hpss_table(rows, in_domain, methods)]))
    groups = sorted({k[6:] for r in rows for k in r if k.startswith("group_")})
    table = Table(["method", *groups])
    for m in methods:
        cells = []
        for g in groups:
            vals = [r[f"group_{g}"] for r in in_domain if r["method"] == m and isinstance(r.get(f"group_{g}"), float)]
            cells.append(f"{np.mean(vals):.3f}" if vals else "-")
        table.rows.append([m, *cells])
    doc.sections.append(Section("parameter error per group (mean)", [table]))
    out_of_domain = [r for r in rows if r["rendered_synth"] != r["synth"]]
    if out_of_domain:
        table = Table(["sounds of", "rendered with", "lsd"])
        for s in sorted({r["synth"] for r in out_of_domain}):
            for t in sorted({r["rendered_synth"] for r in out_of_domain if r["synth"] == s}):
                vals = [r["lsd"] for r in out_of_domain if r["synth"] == s and r["rendered_synth"] == t]
                table.rows.append([s, t, describe(vals)])
        doc.sections.append(Section("out of domain: lsd by rendered synth", [table]))
    return doc


def _hpss_table(rows: list[dict], in_domain: list[dict], methods: list[str]) -> Table | Text:
    bins = hpss_bins(rows)
    if not bins:
        return Text("no HPSS labels: the test set was generated with `--no-hpss`")
    table = Table(["method", *(str(b) for b in bins)])
    for m in methods:
        cells = [describe([r["lsd"] for r in in_domain if r["method"] == m and int(r["hpss"]) == b]) for b in bins]
        table.rows.append([m, *cells])
    return table


def summary_markdown(rows: list[dict], *, about: str = "") -> str:
    """``summary_document`` as markdown (summary.md)."""
    return summary_document(rows, about=about).markdown()


def comparison(rows: list[dict]) -> str:
    """How each model method compares with the baselines, per synth: its mean LSD and parameter
    MSE as multiples of each baseline's (below 1 = better). Own-synth matches only."""
    own = [r for r in rows if r["rendered_synth"] == r["synth"]]
    methods = list(dict.fromkeys(r["method"] for r in own))
    models = [m for m in methods if m not in BASELINES]
    present = [b for b in BASELINES if b in methods]
    lines = []
    for m in models:
        lines.append(f"{m} against the baselines (mean LSD, parameter MSE; x < 1: the model is better):")
        for synth in sorted({r["synth"] for r in own}):

            def mean(metric, method, synth=synth):
                values = finite_values([r.get(metric) for r in own if r["method"] == method and r["synth"] == synth])
                return float(values.mean()) if len(values) else float("nan")

            base = m.removesuffix("+search")  # a search's rows also compare with the one-shot match
            against = ([base] if base != m and base in methods else []) + present
            parts = []
            for metric, name in (("lsd", "LSD"), ("param_mse", "parameter MSE")):
                value = mean(metric, m)
                ratios = ", ".join(f"{value / mean(metric, b):.2f}x {b}" for b in against if mean(metric, b) > 0)
                parts.append(f"{name} {value:.3g}" + (f" ({ratios})" if ratios else ""))
            lines.append(f"  {synth}: " + "; ".join(parts))
    return "\n".join(lines)
