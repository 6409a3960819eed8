"""Runs experiment configs: trains what is missing (or reuses checkpoints trained with the same
settings), evaluates, and writes results/<config>/ with CSVs, a markdown table and plots.

    python experiments/run.py experiments/configs/paper_table.json --profile small
    python experiments/run.py experiments/configs/*.json --profile paper     # a GPU machine

A config is a JSON file; ``"include": "base.json"`` merges a base config under it. Each entry of
``rows`` is one row of the table: ``approach`` (multi, single, synth; ``synth`` rows are trained
once per synth of the dataset and reported as one row), ``label``, ``train_synths`` (train on
these synths only), ``eval_synths`` (evaluate these synths' sounds: out of domain when the model
never saw them), and any training setting: every field of ``asp.config.TrainConfig`` by its name
(``encoder``, ``latent_size``, ``param_loss``, ``lr``, ``beta``, ``kl_warmup_epochs``, ...), which
a config may also set for all its rows; what neither sets takes TrainConfig's default.
``test_dir`` (a setting) takes the
sounds of every row and baseline from that dataset's test split, held out from ``data_dir``,
whose training split the mean and nearest baselines still use. ``profiles`` holds what a profile
overrides (epochs, patience, max_samples, eval_max_samples, data_dir, test_dir). ``refine_renders``
and/or ``refine_seconds`` (settings) add a ``<label>+search`` row under every model row: the
model's presets refined by searching with the synth (``asp.search``) for that budget per sound.
``report_samples`` (a setting, default 12, 0 for none) is how many sounds results/<config>/report/
index.html plays, rendered again with every row's preset: the best, the median and the worst by the
first row's LSD, and others between.

Every config is checked before anything is trained or written (unknown keys, values of the wrong
kind, missing settings, include loops, rows naming synths the dataset lacks: one line naming the
key); a run that fails later removes the empty folders it created, and keeps finished results.
"""

from __future__ import annotations

from pathlib import Path

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from asp.cli import ArgumentParser, positive_int, run_cli
from asp.config import EXPERIMENT_KEYS, experiment_checks, from_settings, integer, number, or_null, text, texts
from asp.errors import ASPError
from asp.files import atomic_write, read_json, write_json
from asp.locks import LOCK_FILE, folder_lock
from asp.runs import identity
from data.dataset import dataset_synths

# What each key of a config may hold: key -> (check, what it must be). A profile may set any
# setting (not rows, profiles or include).
SETTINGS = {
    "name": (text, "a folder name"),
    "title": (text, "text"),
    "about": (text, "text"),
    "test_dir": (or_null(text), "a folder path or null"),
    "eval_max_samples": (or_null(integer(1)), "an integer >= 1 or null"),
    "baselines": (lambda v: isinstance(v, list) and all(text(x) for x in v), "a list of baseline names"),
    "refine_renders": (or_null(integer(1)), "an integer >= 1 or null"),
    "refine_seconds": (or_null(number(0, open_=True)), "a finite number > 0 or null"),
    "report_samples": (integer(0), "an integer >= 0"),
    # every training setting (asp.config.TrainConfig, by field name), for all rows; a row may override it
    **{k: v for k, v in experiment_checks().items() if k not in ("approach", "synth", "synths")},
}
REQUIRED = ("data_dir", "epochs", "baselines")  # after include and profile (the rest: TrainConfig's defaults)
ROW_KEYS = {
    "label": (text, "text"),
    "approach": (text, "text (multi, single or synth)"),
    "train_synths": (texts, "a non-empty list of synth names"),
    "eval_synths": (texts, "a non-empty list of synth names"),
    **{
        k: v
        for k, v in experiment_checks().items()
        if k not in ("approach", "synth", "synths", "data_dir", "model_dir")
    },
}


def _check_keys(values: dict, schema: dict, where: str) -> None:
    """Refuses unknown keys and values of the wrong kind, naming the key."""
    for key, value in values.items():
        if key not in schema:
            raise ASPError(f"{where} has an unknown key {key!r}; known: {', '.join(sorted(schema))}")
        check, what = schema[key]
        if not check(value):
            raise ASPError(f"{where}: {key!r} must be {what}, got {json.dumps(value)[:80]}")


def _merged(path: Path, chain: tuple[Path, ...]) -> dict:
    """One config file with its ``include`` chain merged under it (the including file wins)."""
    key = path.resolve()
    if key in chain:
        names = " -> ".join(str(p) for p in (*chain[chain.index(key) :], key))
        raise ASPError(f"experiment config include loop: {names}; remove one of the includes")
    data = read_json(path, "experiment config")
    if not isinstance(data, dict):
        raise ASPError(f"experiment config {path} must hold a JSON object, not {type(data).__name__}")
    profiles = data.get("profiles", {})
    if not (isinstance(profiles, dict) and all(isinstance(v, dict) for v in profiles.values())):
        raise ASPError(f"experiment config {path}: 'profiles' must map profile names to objects of settings")
    for profile, values in profiles.items():
        _check_keys(values, SETTINGS, f"experiment config {path}, profile {profile!r}")
    base = data.pop("include", None)
    if base is None:
        return data
    if not text(base):
        raise ASPError(f"experiment config {path}: 'include' must be the path of a config file, got {base!r}")
    merged = _merged(path.parent / base, (*chain, key))
    merged.pop("name", None)  # a config is named by its own file
    profiles = {**merged.get("profiles", {})}
    for profile, values in data.get("profiles", {}).items():
        profiles[profile] = {**profiles.get(profile, {}), **values}
    merged.update(data)
    merged["profiles"] = profiles
    return merged


def load_config(path: str | Path) -> dict:
    """A config with its ``include`` chain merged (the including file wins), checked: known keys
    only, each of the right kind, and a non-empty ``rows`` list of rows with an approach.

    Raises:
        ASPError: naming the file and the key (or the include loop).
    """
    path = Path(path)
    data = _merged(path, ())
    data.setdefault("name", path.stem)
    where = f"experiment config {path}"
    _check_keys({k: v for k, v in data.items() if k not in ("rows", "profiles")}, SETTINGS, where)
    if data["name"] in (".", "..") or "/" in data["name"] or os.sep in data["name"]:
        raise ASPError(f"{where}: 'name' must be a folder name (no path), got {data['name']!r}")
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ASPError(f"{where} needs 'rows': a non-empty list of table rows, each with an 'approach'")
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or "approach" not in row:
            raise ASPError(f"{where}: row {k} must be an object with an 'approach' (multi, single or synth)")
        _check_keys(row, ROW_KEYS, f"{where}, row {k}")
    return data


def resolve(config: dict, profile: str) -> dict:
    """The settings of one profile: the config's, with the profile's over them.

    Raises:
        ASPError: for an unknown profile or a required setting that neither sets.
    """
    if profile not in config.get("profiles", {}):
        raise ASPError(
            f"config {config['name']!r} has no profile {profile!r}; it has "
            f"{', '.join(config.get('profiles', {})) or 'none'}"
        )
    settings = {**{k: v for k, v in config.items() if k != "profiles"}, **config["profiles"][profile]}
    missing = [k for k in REQUIRED if k not in settings]
    if missing:
        raise ASPError(
            f"config {config['name']!r} (profile {profile}) lacks {', '.join(map(repr, missing))} "
            f"({'; '.join(SETTINGS[k][1] for k in missing)}); set it in the config, a file it includes, or the profile"
        )
    return settings


def slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def train_runs(settings: dict, row: dict, synths: list[str]) -> list[tuple[str | None, object]]:
    """The TrainConfigs of one row: one, or one per synth for the per-synth baselines. Every
    training setting comes from the row, else the config's settings, else TrainConfig's default."""
    values = {k: row.get(k, settings.get(k)) for k in EXPERIMENT_KEYS if k in row or k in settings}
    values.pop("model_dir", None)  # each run gets its own checkpoint folder (model_dir_for)
    values["approach"] = row["approach"]
    values.setdefault("verbose", 1)
    where = f"experiment config {settings['name']!r}" if "name" in settings else "experiment config"
    if row["approach"] == "synth":
        targets = row.get("eval_synths") or synths
        return [(s, from_settings({**values, "synth": s}, where)) for s in targets]
    if row.get("train_synths"):
        values["synths"] = list(row["train_synths"])
    return [(None, from_settings(values, where))]


def model_dir_for(cfg, fingerprint: str, root: str) -> Path:
    """A checkpoint folder shared by every config that trains the same model (``asp.runs.identity``)."""
    from models import MODEL_VERSION

    return Path(root) / "experiments" / identity(cfg, fingerprint, MODEL_VERSION)


def _is_current(stamp_path: Path, stamp: dict) -> bool:
    """Whether a finished evaluation's stamp equals this one (compared as JSON); a damaged stamp
    is not (the evaluation runs again)."""
    try:
        return json.loads(stamp_path.read_text()) == json.loads(json.dumps(stamp))
    except (OSError, ValueError):
        return False


def run_config(path: str | Path, profile: str, *, results: Path, workers: int | None) -> Path:
    """Runs one config with one profile; returns its results folder.

    Raises:
        ASPError: for a bad config (checked before anything is trained or written), data or run;
            a failed run leaves no empty folder it created.
    """
    config = load_config(path)
    settings = resolve(config, profile)
    from asp.training import data_fingerprint
    from experiments.evaluate import held_out_split  # (TensorFlow: after the quick checks)

    data_dir = settings["data_dir"]
    test_dir = settings.get("test_dir")
    synths = dataset_synths(data_dir)
    fingerprint = data_fingerprint(data_dir)
    if test_dir:
        held_out_split(test_dir, "test", data_dir)  # a mismatched test set fails now, not after training
    check_rows(config, settings, synths)
    out = results / config["name"]
    with _removed_if_empty_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        # two runners on one config would overwrite each other's results: the second fails at once
        with folder_lock(out, what="another experiments/run.py run", fix="run it after that one ends"):
            return _run(config, settings, profile, out, synths=synths, fingerprint=fingerprint, workers=workers)


def check_rows(config: dict, settings: dict, synths: list[str]) -> None:
    """Refuses, before anything is trained or written, rows that name an unknown approach,
    parameter loss or synth (``synths``: the dataset's).

    Raises:
        ASPError: naming the row and the key.
    """
    from experiments.evaluate import BASELINES
    from models import APPROACHES, ENCODERS, PARAM_LOSSES

    where = f"experiment config {config['name']!r}"
    unknown = [b for b in settings["baselines"] if b not in BASELINES]
    if unknown:
        raise ASPError(f"{where}: 'baselines' names {', '.join(unknown)}; use any of {', '.join(BASELINES)}")
    if settings.get("param_loss", PARAM_LOSSES[0]) not in PARAM_LOSSES:
        raise ASPError(
            f"{where}: 'param_loss' must be one of {', '.join(PARAM_LOSSES)}, not {settings['param_loss']!r}"
        )
    for k, row in enumerate(config["rows"]):
        if row["approach"] not in APPROACHES:
            raise ASPError(
                f"{where}, row {k}: 'approach' must be one of {', '.join(APPROACHES)}, not {row['approach']!r}"
            )
        if row.get("param_loss", settings.get("param_loss", PARAM_LOSSES[0])) not in PARAM_LOSSES:
            raise ASPError(f"{where}, row {k}: 'param_loss' must be one of {', '.join(PARAM_LOSSES)}")
        encoder = row.get("encoder", settings.get("encoder"))
        if encoder is not None and encoder not in ENCODERS:
            raise ASPError(f"{where}, row {k}: 'encoder' must be one of {', '.join(sorted(ENCODERS))}, not {encoder!r}")
        for key in ("train_synths", "eval_synths"):
            missing = [s for s in row.get(key) or [] if s not in synths]
            if missing:
                raise ASPError(
                    f"{where}, row {k}: {key!r} names {', '.join(missing)}, which {settings['data_dir']} lacks "
                    f"(it has {', '.join(synths)})"
                )


@contextmanager
def _removed_if_empty_on_failure(out: Path) -> Iterator[None]:
    """On any failure, removes the folders this call created under and above ``out`` that are
    still empty (``out``'s own lock file aside, when this call created ``out``); folders that
    existed before, and any holding results, stay."""
    existed = {out, *out.rglob("*")} if out.is_dir() else set()
    above = [p for p in [out, *out.parents] if not p.exists()]  # deepest first
    try:
        yield
    except BaseException:
        if out in above and {p.name for p in out.iterdir()} == {LOCK_FILE}:
            (out / LOCK_FILE).unlink()
        new = [p for p in out.rglob("*") if p.is_dir() and p not in existed] if out.is_dir() else []
        for folder in sorted(new, key=lambda p: -len(p.parts)) + above:
            try:
                folder.rmdir()  # only an empty one goes
            except OSError:
                pass
        raise


def _run(
    config: dict, settings: dict, profile: str, out: Path, *, synths: list[str], fingerprint: str, workers: int | None
) -> Path:
    """``run_config``'s work once the config is checked: trains, evaluates, writes ``out``."""
    from asp.report import PRESETS, REPORT_SAMPLES, evaluation_report
    from asp.runs import run_name
    from asp.search import Budget
    from asp.training import data_fingerprint, read_config, train
    from experiments.evaluate import AUDIO_METRICS, PARAM_METRICS, evaluate, read_csv

    data_dir = settings["data_dir"]
    test_dir = settings.get("test_dir")
    out.mkdir(parents=True, exist_ok=True)
    eval_kw = dict(
        max_samples=settings.get("eval_max_samples"), workers=workers, seed=settings.get("seed", 0), test_dir=test_dir
    )
    refine = {k: settings.get(f"refine_{k}") for k in ("renders", "seconds") if settings.get(f"refine_{k}")}
    evaluated = {
        "eval": {**eval_kw, "workers": None},
        "refine": refine or None,
        "test_data": data_fingerprint(test_dir) if test_dir else None,
        "metrics": [*AUDIO_METRICS, *PARAM_METRICS],
    }
    table_rows = []
    parts: list[Path] = []  # every evaluation folder of the model rows
    for row in config["rows"]:
        label = row.get("label") or row["approach"]
        rows_csv = []
        for synth, cfg in train_runs(settings, row, synths):
            cfg.model_dir = str(model_dir_for(cfg, fingerprint, settings.get("model_dir", "saved_models")))
            train(cfg)
            run_dir = Path(cfg.model_dir) / run_name(cfg)
            part = out / slug(label) / (synth or "all")
            stamp = {
                "model": read_config(run_dir),
                **evaluated,
                "eval_synths": row.get("eval_synths"),
                "profile": profile,
            }
            stamp_path = part / "stamp.json"
            if not _is_current(stamp_path, stamp) or not (part / PRESETS).is_file():
                evaluate(
                    run_dir,
                    data_dir,
                    part,
                    baselines=(),
                    synths=[synth] if synth else row.get("eval_synths"),
                    label=label,
                    refine=Budget(**refine) if refine else None,
                    **eval_kw,
                )
                write_json(stamp_path, stamp)
            rows_csv += read_csv(part / "samples.csv")
            parts.append(part)
        described = {**row, "latent_size": row.get("latent_size", settings.get("latent_size", 64))}
        table_rows.append((label, described, [r for r in rows_csv if r["method"] == label]))
        if refine:
            searched = [r for r in rows_csv if r["method"] == f"{label}+search"]
            table_rows.append((f"{label}+search", {**described, "search": refine}, searched))
    baseline_dir = out / "baselines"
    stamp = {**evaluated, "data": fingerprint, "baselines": settings["baselines"]}
    if not _is_current(baseline_dir / "stamp.json", stamp) or not (baseline_dir / PRESETS).is_file():
        evaluate(None, data_dir, baseline_dir, baselines=tuple(settings["baselines"]), **eval_kw)
        write_json(baseline_dir / "stamp.json", stamp)
    baseline_rows = read_csv(baseline_dir / "samples.csv")
    for b in settings["baselines"]:
        table_rows.append((f"baseline: {b}", {"approach": b}, [r for r in baseline_rows if r["method"] == b]))
    write_table(out, config, profile, table_rows, synths, test_set=_test_set_line(settings))
    plot(out, table_rows, synths)
    page = evaluation_report(
        out,
        [r for _, _, rows in table_rows for r in rows],
        preset_files=[p / PRESETS for p in parts] + [baseline_dir / PRESETS],
        report_samples=settings.get("report_samples", REPORT_SAMPLES),
        title=f"{config.get('title', config['name'])} ({profile} profile)",
        markdown=[out / "table.md"],
        plots=[out / name for name in ("lsd_boxplot.png", "lsd_vs_latent.png", "lsd_per_hpss.png")],
        links=[p / "summary.md" for p in [*parts, baseline_dir]],
        reference=next((label for label, _, rows in table_rows if rows), None),
    )
    print(f"results in {out}: table.md, all_samples.csv, plots; report: {page}")
    return out


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


def write_table(
    out: Path, config: dict, profile: str, table_rows: list, synths: list[str], *, test_set: str = ""
) -> None:
    """Writes ``table.md`` (one line per row: mean ± 95% CI (median) of each metric) and ``all_samples.csv``.

    Args:
        out: the config's results folder.
        table_rows: (label, row config, CSV rows) per table row.
        synths: the dataset's synths, one LSD column each.
        test_set: a line saying which sounds were scored.
    """
    from experiments.evaluate import DIGITS, finite_values, mean_ci_text, write_csv

    def cell(values: list, digits: int = 2) -> str:
        finite = finite_values(values)
        return f"{mean_ci_text(list(finite), digits)} ({np.median(finite):.{digits}f})" if len(finite) else "-"

    everything = []
    headings = [*synths, "all", *(heading for _, heading in TABLE_METRICS)]
    lines = [
        f"# {config.get('title', config['name'])} ({profile} profile)",
        "",
        *([test_set, ""] if test_set else []),
        "Cells: mean ± half-width of its 95% confidence interval (median in brackets). LSD per synth and over "
        "all sounds, then the other audio metrics over all sounds; lower is better except the RMS envelope "
        "similarity and categorical accuracy. Parameter MSE: over the sound's synth's whole encoded vector.",
        "",
        "| row | " + " | ".join(headings) + " |",
        "|---" * (len(headings) + 1) + "|",
    ]
    for label, _row, rows in table_rows:
        own = [r for r in rows if r["rendered_synth"] == r["synth"]]
        scored = own or rows
        if not own and rows:  # out of domain: the best head per sound
            best: dict = {}
            for r in rows:
                key = r["index"]
                if key not in best or r["lsd"] < best[key]["lsd"]:
                    best[key] = r
            scored = list(best.values())
        cells = [cell([r["lsd"] for r in scored if r["synth"] == s]) for s in synths]
        cells.append(cell([r["lsd"] for r in scored]))
        for metric, _ in TABLE_METRICS:
            source = own if metric in PARAMETER_COLUMNS else scored
            cells.append(cell([r.get(metric) for r in source], DIGITS.get(metric, 2)))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        everything += [{**r, "row": label} for r in rows]
    lines += relative_table(table_rows, synths)
    lines += ["", "Per-synth, per-HPSS-bin and per-parameter-group breakdowns: the summary.md files beside."]
    with atomic_write(out / "table.md") as f:
        f.write("\n".join(lines) + "\n")
    write_csv(out / "all_samples.csv", everything)


def relative_table(table_rows: list, synths: list[str], reference: str = "baseline: mean") -> list[str]:
    """Markdown lines: each row's mean LSD and parameter MSE per synth as a multiple of the
    training-mean preset's (below 1: better than predicting one average preset). Own-synth
    matches only; empty without the mean baseline."""
    from experiments.evaluate import finite_values

    by_label = {label: [r for r in rows if r["rendered_synth"] == r["synth"]] for label, _, rows in table_rows}
    base = by_label.get(reference)
    if not base:
        return []

    def mean(rows, metric, synth):
        values = finite_values([r.get(metric) for r in rows if r["synth"] == synth])
        return float(values.mean()) if len(values) else float("nan")

    headings = [f"{s} LSD" for s in synths] + [f"{s} param MSE" for s in synths]
    lines = [
        "",
        "Relative to the training-mean preset (mean over the sounds of a synth, divided by the mean "
        "baseline's; below 1 is better):",
        "",
        "| row | " + " | ".join(headings) + " |",
        "|---" * (len(headings) + 1) + "|",
    ]
    for label, own in by_label.items():
        if label == reference or not own:
            continue
        cells = []
        for metric in ("lsd", "param_mse"):
            for s in synths:
                ratio = mean(own, metric, s) / mean(base, metric, s)
                cells.append(f"{ratio:.2f}x" if np.isfinite(ratio) else "-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def plot(out: Path, table_rows: list, synths: list[str]) -> None:
    import matplotlib

    from asp.report import hpss_bins

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _, rows in table_rows if rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) * len(synths) / 2), 4))
    data, ticks, names = [], [], []
    for i, (label, _, rows) in enumerate([t for t in table_rows if t[2]]):
        for j, s in enumerate(synths):
            values = [r["lsd"] for r in rows if r["synth"] == s and r["rendered_synth"] == s]
            if values:
                data.append(values)
                ticks.append(i * (len(synths) + 1) + j)
                names.append(f"{label}\n{s}")
    if data:
        ax.boxplot(data, positions=ticks, widths=0.7, showfliers=False)
        ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("LSD")
        ax.set_title("LSD per approach and synth")
        fig.tight_layout()
        _save_figure(fig, out / "lsd_boxplot.png")
    plt.close(fig)

    latents = [(row.get("latent_size"), rows) for _, row, rows in table_rows if row.get("latent_size") and rows]
    if len({lat for lat, _ in latents}) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [lat for lat, _ in latents]
        ax.plot(xs, [np.mean([r["lsd"] for r in rows]) for _, rows in latents], marker="o", label="mean")
        ax.plot(xs, [np.median([r["lsd"] for r in rows]) for _, rows in latents], marker="s", label="median")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("latent size")
        ax.set_ylabel("LSD")
        ax.legend()
        ax.set_title("LSD vs latent size")
        fig.tight_layout()
        _save_figure(fig, out / "lsd_vs_latent.png")
        plt.close(fig)

    bins = hpss_bins([r for _, _, rows in table_rows for r in rows])
    if not bins:  # a test set generated with --no-hpss: no plot per bin
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / max(1, len(labels))
    for i, (label, _, rows) in enumerate([t for t in table_rows if t[2]]):
        means = [np.mean([r["lsd"] for r in rows if int(r["hpss"]) == b] or [np.nan]) for b in bins]
        ax.bar(np.arange(len(bins)) + i * width, means, width, label=label)
    ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, [str(b) for b in bins])
    ax.set_xlabel("harmonic percentage bin")
    ax.set_ylabel("mean LSD")
    ax.legend(fontsize=7)
    ax.set_title("LSD per HPSS bin")
    fig.tight_layout()
    _save_figure(fig, out / "lsd_per_hpss.png")
    plt.close(fig)


def _save_figure(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="experiment config files")
    p.add_argument("--profile", default="small", help="small (CPU, make data) or paper (the paper's settings)")
    p.add_argument("--results", default="results", help="results folder (default results)")
    p.add_argument(
        "--workers", type=positive_int, default=None, help="render workers for evaluation (default all cores)"
    )
    args = p.parse_args()
    for path in args.configs:
        run_config(path, args.profile, results=Path(args.results), workers=args.workers)
    return 0


if __name__ == "__main__":
    run_cli(main)
