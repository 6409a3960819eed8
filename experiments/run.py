"""Runs experiment configs: trains what is missing (or reuses checkpoints trained with the same
settings), evaluates, and writes results/<config>/ with CSVs, a markdown table and plots.

    python experiments/run.py experiments/configs/paper_table.json --profile small
    python experiments/run.py experiments/configs/*.json --profile paper     # a GPU machine

A config is a JSON file; ``"include": "base.json"`` merges a base config under it. Each entry of
``rows`` is one row of the table: ``approach`` (multi, single, synth; ``synth`` rows are trained
once per synth of the dataset and reported as one row), and optionally ``latent_size``,
``param_loss``, ``train_synths`` (train on these synths only) and ``eval_synths`` (evaluate
these synths' sounds: out of domain when the model never saw them). ``profiles`` holds what a
profile overrides (epochs, patience, max_samples, eval_max_samples, data_dir).
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

from data.dataset import dataset_synths  # noqa: E402
from data_generation.errors import ASPError, read_json, run_cli  # noqa: E402

ROW_KEYS = {"label", "approach", "latent_size", "param_loss", "train_synths", "eval_synths"}


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
    if row["approach"] == "synth":
        targets = row.get("eval_synths") or synths
        return [(s, TrainConfig(approach="synth", synth=s, **common)) for s in targets]
    train_synths = tuple(row["train_synths"]) if row.get("train_synths") else None
    return [(None, TrainConfig(approach=row["approach"], synths=train_synths, **common))]


def model_dir_for(cfg, fingerprint: str, root: str) -> Path:
    """A checkpoint folder shared by every config that trains the same model."""
    key = (
        json.dumps(
            {
                k: getattr(cfg, k)
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
                )
            },
            sort_keys=True,
            default=list,
        )
        + fingerprint
    )
    return Path(root) / "experiments" / hashlib.sha256(key.encode()).hexdigest()[:12]


def run_config(path: str | Path, profile: str, *, results: Path, workers: int | None) -> Path:
    from experiments.evaluate import evaluate, read_csv
    from training import read_config, run_name, train

    config = load_config(path)
    settings = resolve(config, profile)
    data_dir = settings["data_dir"]
    synths = dataset_synths(data_dir)
    from training import data_fingerprint

    fingerprint = data_fingerprint(data_dir)
    out = results / config["name"]
    out.mkdir(parents=True, exist_ok=True)
    eval_kw = dict(max_samples=settings.get("eval_max_samples"), workers=workers, seed=settings["seed"])
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
                "eval": {**eval_kw, "workers": None},
                "eval_synths": row.get("eval_synths"),
                "profile": profile,
            }
            stamp_path = part / "stamp.json"
            if not (stamp_path.is_file() and json.loads(stamp_path.read_text()) == json.loads(json.dumps(stamp))):
                evaluate(
                    run_dir,
                    data_dir,
                    part,
                    baselines=(),
                    synths=[synth] if synth else row.get("eval_synths"),
                    label=label,
                    **eval_kw,
                )
                stamp_path.write_text(json.dumps(stamp))
            rows_csv += read_csv(part / "samples.csv")
        table_rows.append((label, {**row, "latent_size": row.get("latent_size", settings["latent_size"])}, rows_csv))
    baseline_dir = out / "baselines"
    stamp = {"eval": {**eval_kw, "workers": None}, "data": fingerprint, "baselines": settings["baselines"]}
    if not ((baseline_dir / "stamp.json").is_file() and json.loads((baseline_dir / "stamp.json").read_text()) == stamp):
        evaluate(None, data_dir, baseline_dir, baselines=tuple(settings["baselines"]), **eval_kw)
        (baseline_dir / "stamp.json").write_text(json.dumps(stamp))
    baseline_rows = read_csv(baseline_dir / "samples.csv")
    for b in settings["baselines"]:
        table_rows.append((f"baseline: {b}", {"approach": b}, [r for r in baseline_rows if r["method"] == b]))
    write_table(out, config, profile, table_rows, synths)
    plot(out, table_rows, synths)
    print(f"results in {out}: table.md, all_samples.csv, plots")
    return out


def write_table(out: Path, config: dict, profile: str, table_rows: list, synths: list[str]) -> None:
    from experiments.evaluate import write_csv

    everything = []
    lines = [
        f"# {config.get('title', config['name'])} ({profile} profile)",
        "",
        "Mean LSD (median in brackets) on the test split; lower is better.",
        "",
        "| row | " + " | ".join(synths) + " | all | MRSD | categorical accuracy |",
        "|---" * (len(synths) + 4) + "|",
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

        def cell(values):
            values = [v for v in values if isinstance(v, float) and np.isfinite(v)]
            return f"{np.mean(values):.2f} ({np.median(values):.2f})" if values else "-"

        cells = [cell([r["lsd"] for r in scored if r["synth"] == s]) for s in synths]
        cells.append(cell([r["lsd"] for r in scored]))
        cells.append(cell([r["mrsd"] for r in scored]))
        acc = [r.get("cat_accuracy") for r in own]
        cells.append(cell(acc))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        everything += [{**r, "row": label} for r in rows]
    lines += ["", "Per-synth, per-HPSS-bin and per-parameter-group breakdowns: the summary.md files beside."]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    write_csv(out / "all_samples.csv", everything)


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
        fig.savefig(out / "lsd_boxplot.png", dpi=90)
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
        fig.savefig(out / "lsd_vs_latent.png", dpi=90)
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
    fig.savefig(out / "lsd_per_hpss.png", dpi=90)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("configs", nargs="+", help="experiment config files")
    p.add_argument("--profile", default="small", help="small (CPU, make data) or paper (the paper's settings)")
    p.add_argument("--results", default="results", help="results folder (default results)")
    p.add_argument("--workers", type=int, default=None, help="render workers for evaluation (default all cores)")
    args = p.parse_args()
    for path in args.configs:
        run_config(path, args.profile, results=Path(args.results), workers=args.workers)
    return 0


if __name__ == "__main__":
    run_cli(main)
