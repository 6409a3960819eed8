"""Runs experiment configs: trains what is missing (or reuses checkpoints trained with the same
settings), evaluates, and writes results/<config>/ with CSVs, a markdown table and plots.

    python experiments/run.py experiments/configs/paper_table.json --profile small
    python experiments/run.py experiments/configs/*.json --profile paper     # a GPU machine

A config is a JSON file; ``"include": "base.json"`` merges a base config under it. Each entry of
``rows`` is one row of the table: ``approach`` (multi, single, synth; ``synth`` rows are trained
once per synth of the dataset and reported as one row), and optionally ``latent_size``,
``param_loss``, ``beta``, ``free_bits``, ``kl_warmup_epochs`` (these three also as settings for
every row), ``train_synths`` (train on these synths only) and ``eval_synths`` (evaluate these
synths' sounds: out of domain when the model never saw them). ``test_dir`` (a setting) takes the
sounds of every row and baseline from that dataset's test split, held out from ``data_dir``,
whose training split the mean and nearest baselines still use. ``profiles`` holds what a profile
overrides (epochs, patience, max_samples, eval_max_samples, data_dir, test_dir).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import data_generation  # noqa: E402, F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

import numpy as np  # noqa: E402

from asp_io import ArgumentParser, atomic_write, positive_int, write_json  # noqa: E402
from data.dataset import dataset_synths  # noqa: E402
from data_generation.errors import ASPError, read_json, run_cli  # noqa: E402

TRAIN_EXTRAS = ("beta", "free_bits", "kl_warmup_epochs")  # passed to TrainConfig only when a row or setting has them
ROW_KEYS = {"label", "approach", "latent_size", "param_loss", "train_synths", "eval_synths", *TRAIN_EXTRAS}


def load_config(path: str | Path) -> dict:
    """A config with its ``include`` chain merged (the including file wins)."""
    path = Path(path)
    data = read_json(path, "experiment config")
    base = data.pop("include", None)
    name = data.get("name", path.stem)
    if base:
        merged = load_config(path.parent / base)
        profiles = {**merged.get("profiles", {})}
        for profile, values in data.get("profiles", {}).items():
            profiles[profile] = {**profiles.get(profile, {}), **values}
        merged.update(data)
        merged["profiles"] = profiles
        data = merged
    data["name"] = name
    for k, row in enumerate(data.get("rows", [])):
        unknown = set(row) - ROW_KEYS
        if unknown or "approach" not in row:
            raise ASPError(f"{path}: row {k} needs an approach and takes only {sorted(ROW_KEYS)}")
    return data


def resolve(config: dict, profile: str) -> dict:
    if profile not in config.get("profiles", {}):
        raise ASPError(
            f"config {config['name']!r} has no profile {profile!r}; it has "
            f"{', '.join(config.get('profiles', {})) or 'none'}"
        )
    return {**{k: v for k, v in config.items() if k != "profiles"}, **config["profiles"][profile]}


def slug(text: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def train_runs(settings: dict, row: dict, synths: list[str]) -> list[tuple[str | None, object]]:
    """The TrainConfigs of one row: one, or one per synth for the per-synth baselines."""
    from training import TrainConfig

    common = dict(
        data_dir=settings["data_dir"],
        latent_size=row.get("latent_size", settings["latent_size"]),
        param_loss=row.get("param_loss", settings["param_loss"]),
        epochs=settings["epochs"],
        seed=settings["seed"],
        max_samples=settings.get("max_samples"),
        patience=settings.get("patience"),
        batch_size=settings.get("batch_size", 32),
        lr=settings.get("lr", 1e-4),
        verbose=settings.get("verbose", 1),
    )
    for key in TRAIN_EXTRAS:  # set only when given: TrainConfig's defaults are the measured ones
        value = row.get(key, settings.get(key))
        if value is not None:
            common[key] = value
    if row["approach"] == "synth":
        targets = row.get("eval_synths") or synths
        return [(s, TrainConfig(approach="synth", synth=s, **common)) for s in targets]
    train_synths = tuple(row["train_synths"]) if row.get("train_synths") else None
    return [(None, TrainConfig(approach=row["approach"], synths=train_synths, **common))]


def model_dir_for(cfg, fingerprint: str, root: str) -> Path:
    """A checkpoint folder shared by every config that trains the same model."""
    from models import MODEL_VERSION

    key = (
        json.dumps(
            {
                k: getattr(cfg, k, None)
                for k in (
                    "approach",
                    "synth",
                    "synths",
                    "latent_size",
                    "param_loss",
                    "epochs",
                    "seed",
                    "max_samples",
                    "patience",
                    "batch_size",
                    "lr",
                    *TRAIN_EXTRAS,
                )
            },
            sort_keys=True,
            default=list,
        )
        + fingerprint
        + f"model{MODEL_VERSION}"
    )
    return Path(root) / "experiments" / hashlib.sha256(key.encode()).hexdigest()[:12]


def _is_current(stamp_path: Path, stamp: dict) -> bool:
    """Whether a finished evaluation's stamp equals this one (compared as JSON); a damaged stamp
    is not (the evaluation runs again)."""
    try:
        return json.loads(stamp_path.read_text()) == json.loads(json.dumps(stamp))
    except (OSError, ValueError):
        return False


def run_config(path: str | Path, profile: str, *, results: Path, workers: int | None) -> Path:
    from experiments.evaluate import AUDIO_METRICS, PARAM_METRICS, evaluate, held_out_split, read_csv
    from training import data_fingerprint, read_config, run_name, train

    config = load_config(path)
    settings = resolve(config, profile)
    data_dir = settings["data_dir"]
    test_dir = settings.get("test_dir")
    synths = dataset_synths(data_dir)
    fingerprint = data_fingerprint(data_dir)
    if test_dir:
        held_out_split(test_dir, "test", data_dir)  # a mismatched test set fails now, not after training
    out = results / config["name"]
    out.mkdir(parents=True, exist_ok=True)
    eval_kw = dict(
        max_samples=settings.get("eval_max_samples"), workers=workers, seed=settings["seed"], test_dir=test_dir
    )
    evaluated = {
        "eval": {**eval_kw, "workers": None},
        "test_data": data_fingerprint(test_dir) if test_dir else None,
        "metrics": [*AUDIO_METRICS, *PARAM_METRICS],
    }
    table_rows = []
    for row in config["rows"]:
        label = row.get("label") or row["approach"]
        rows_csv = []
        for synth, cfg in train_runs(settings, row, synths):
            cfg.model_dir = str(model_dir_for(cfg, fingerprint, settings.get("model_dir", "saved_models")))
            train(cfg)
            run_dir = Path(cfg.model_dir) / run_name(cfg.approach, cfg.latent_size, cfg.synth)
            part = out / slug(label) / (synth or "all")
            stamp = {
                "model": read_config(run_dir),
                **evaluated,
                "eval_synths": row.get("eval_synths"),
                "profile": profile,
            }
            stamp_path = part / "stamp.json"
            if not _is_current(stamp_path, stamp):
                evaluate(
                    run_dir,
                    data_dir,
                    part,
                    baselines=(),
                    synths=[synth] if synth else row.get("eval_synths"),
                    label=label,
                    **eval_kw,
                )
                write_json(stamp_path, stamp)
            rows_csv += read_csv(part / "samples.csv")
        table_rows.append((label, {**row, "latent_size": row.get("latent_size", settings["latent_size"])}, rows_csv))
    baseline_dir = out / "baselines"
    stamp = {**evaluated, "data": fingerprint, "baselines": settings["baselines"]}
    if not _is_current(baseline_dir / "stamp.json", stamp):
        evaluate(None, data_dir, baseline_dir, baselines=tuple(settings["baselines"]), **eval_kw)
        write_json(baseline_dir / "stamp.json", stamp)
    baseline_rows = read_csv(baseline_dir / "samples.csv")
    for b in settings["baselines"]:
        table_rows.append((f"baseline: {b}", {"approach": b}, [r for r in baseline_rows if r["method"] == b]))
    write_table(out, config, profile, table_rows, synths, test_set=_test_set_line(settings))
    plot(out, table_rows, synths)
    print(f"results in {out}: table.md, all_samples.csv, plots")
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

    bins = sorted({int(r["hpss"]) for _, _, rows in table_rows for r in rows})
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
