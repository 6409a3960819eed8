"""An evaluation as ``experiments/evaluate.py`` runs it: evaluate, print the summary and how the
model compares with the baselines, then write the plots and the report page."""

from __future__ import annotations

from pathlib import Path

from asp.evaluation.evaluate import evaluate, sounds_line
from asp.evaluation.plots import plot
from asp.evaluation.summary import BASELINES, comparison, summary_document
from asp.files import check_outputs, mark_written
from asp.report import PRESETS, evaluation_report
from asp.report.pages import REPORT_FOLDER
from asp.search import NEAREST_STARTS, Budget

OUTPUTS = ("samples.csv", "summary.md", PRESETS, "lsd_boxplot.png", "lsd_per_hpss.png", REPORT_FOLDER)  # in --out


def write_report(
    out: str | Path, rows: list[dict], *, report_samples: int, title: str, progress: bool = True, about: str = ""
) -> Path:
    """One evaluation's plots (LSD per method and synth, per HPSS bin) and its report page,
    ``<out>/report/index.html``: its tables and plots, every sample's LSD, and ``report_samples``
    samples (the best, the median and the worst by the model's LSD, others between) rendered again
    to listen to, from the presets ``evaluate`` kept. ``about``: the summary's line saying which
    sounds were evaluated (``sounds_line``). Returns the page."""
    out = Path(out)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    models = [m for m in methods if m not in BASELINES]
    plot(out, [(m, {}, [r for r in rows if r["method"] == m]) for m in methods], sorted({r["synth"] for r in rows}))
    return evaluation_report(
        out,
        rows,
        preset_files=[out / PRESETS],
        report_samples=report_samples,
        title=title,
        documents=[(out / "summary.md", summary_document(rows, about=about))],
        plots=[out / "lsd_boxplot.png", out / "lsd_per_hpss.png"],
        links=[out / "samples.csv"],
        reference=(models or methods or [None])[0],
        progress=progress,
    )


def run_evaluation(
    run_dir: str | Path | None,
    data_dir: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    test_dir: str | Path | None = None,
    baselines: tuple[str, ...] = BASELINES,
    synths: list[str] | None = None,
    max_samples: int | None = None,
    workers: int | None = None,
    seed: int = 0,
    refine: Budget | None = None,
    refine_starts: int = NEAREST_STARTS,
    report_samples: int,
    overwrite: bool = False,
) -> list[dict]:
    """Evaluates (``evaluate``, same arguments), prints the summary's first tables and the
    comparison with the baselines, and writes the report (``write_report``); returns the rows.
    Outputs in ``out`` that no evaluation wrote (a user's ``summary.md``) are refused before any
    work, unless ``overwrite``."""
    check_outputs([Path(out) / name for name in OUTPUTS], overwrite=overwrite)
    rows = evaluate(
        run_dir,
        data_dir,
        out,
        split=split,
        test_dir=test_dir,
        baselines=baselines,
        synths=synths,
        max_samples=max_samples,
        workers=workers,
        seed=seed,
        refine=refine,
        refine_starts=refine_starts,
    )
    _mark(out)  # as soon as written: a run that fails in its report leaves outputs its rerun may replace
    print((Path(out) / "summary.md").read_text().split("## mrsd")[0])
    verdict = comparison(rows)
    if verdict:
        print(verdict)
    print(f"{len(rows)} rows in {Path(out) / 'samples.csv'}; every table in {Path(out) / 'summary.md'}")
    where = f"{test_dir or data_dir} ({split} split)"
    title = f"Evaluation of {run_dir or 'the baselines'} on {where}"
    source = Path(data_dir if test_dir is None else test_dir)
    about = sounds_line(split, source, data_dir if test_dir is not None else None)
    print(f"report: {write_report(out, rows, report_samples=report_samples, title=title, about=about)}")
    _mark(out)
    return rows


def _mark(out: str | Path) -> None:
    mark_written(*(Path(out) / name for name in OUTPUTS if (Path(out) / name).exists()))
