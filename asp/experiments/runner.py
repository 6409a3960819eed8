"""Runs one experiment config with one profile: trains what is missing (or reuses checkpoints
trained with the same settings), evaluates every row and the baselines (again only when their
stamp changed), and writes results/<config>/ with the table, plots and report page.

The modules that import TensorFlow (training, evaluation, the network) are imported once the
config is checked, so a config error is reported at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asp.checkpoints import read_config
from asp.config import APPROACHES, EXPERIMENT_KEYS, MODEL_DIR, PARAM_LOSSES, from_settings
from asp.errors import ASPError
from asp.evaluation.plots import plot
from asp.evaluation.results import cores, held_out_split, read_csv
from asp.evaluation.summary import AUDIO_METRICS, BASELINES, PARAM_METRICS
from asp.experiments.config import load_config, resolve, slug
from asp.experiments.scaling import plot_scaling, scaling_blocks, scaling_points
from asp.experiments.table import _test_set_line, write_table
from asp.files import write_json
from asp.locks import LOCK_FILE, folder_lock
from asp.report import PRESETS, REPORT_SAMPLES, evaluation_report
from asp.runs import identity, run_name
from asp.search import INPUT_REFINE_RENDERS, INPUT_REFINE_SECONDS, NEAREST_STARTS, Budget
from data.dataset import data_fingerprint, dataset_synths


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
    from models import MODEL_VERSION  # (TensorFlow)

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
    if "real_sounds" in settings:
        return _run_real_sounds(config, settings, profile, results=results, workers=workers)
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


def _run_real_sounds(config: dict, settings: dict, profile: str, *, results: Path, workers: int | None) -> Path:
    """A real-sound config (``asp.evaluation.real``): its model matched to the sounds of a folder,
    with lookup and the mean presets beside it; the sounds, their notes and the model-data pair
    are checked before anything is written (and the notes estimated before TensorFlow loads)."""
    from asp.evaluation.real import check_pair, choose_sounds, evaluate_real_sounds, model_folder, read_real_sounds

    run_dir = model_folder(settings["model"], settings.get("model_dir", MODEL_DIR))
    model_config = read_config(run_dir)
    seconds = model_config["synths"][0]["render"]["duration"]
    sounds = read_real_sounds(settings["real_sounds"], seconds)
    seed = settings.get("seed", 0)
    chosen = choose_sounds(sounds, settings.get("eval_max_samples"), seed)
    data_line = check_pair(model_config, settings["data_dir"], run_dir)
    budget = {k: settings.get(f"refine_{k}") for k in ("renders", "seconds") if settings.get(f"refine_{k}")}
    refine = Budget(**budget) if budget else Budget(renders=INPUT_REFINE_RENDERS, seconds=INPUT_REFINE_SECONDS)
    size = f"{len(chosen)} of the {len(sounds)} sounds (seeded choice)" if len(chosen) < len(sounds) else "every sound"
    about = (
        f"Sounds: {settings['real_sounds']}, {size}. Model: {run_dir}. {data_line} Search: "
        f"{refine.describe()} per synth "
        f"and sound ({_refined(settings.get('refine_synths'))}), from the network's preset and the {NEAREST_STARTS} "
        "nearest training presets (and its best of K, for a model with generative heads)."
    )
    out = results / config["name"]
    with _removed_if_empty_on_failure(out):
        out.mkdir(parents=True, exist_ok=True)
        with folder_lock(out, what="another experiments/run.py run", fix="run it after that one ends"):
            evaluate_real_sounds(
                chosen,
                run_dir,
                settings["data_dir"],
                out,
                refine=refine,
                refine_synths=settings.get("refine_synths"),
                workers=workers or cores(),
                seed=seed,
                report_samples=settings.get("report_samples", REPORT_SAMPLES),
                title=f"{config.get('title', config['name'])} ({profile} profile)",
                about=about,
            )
    print(f"results in {out}: table.md, table.csv, samples.csv; report: {out / 'report' / 'index.html'}")
    return out


def _refined(synths: int | None) -> str:
    return "every synth" if synths is None else f"the {synths} closest one-shot synths, as run_inference.py does"


def check_rows(config: dict, settings: dict, synths: list[str]) -> None:
    """Refuses, before anything is trained or written, rows that name an unknown approach,
    parameter loss or synth (``synths``: the dataset's).

    Raises:
        ASPError: naming the row and the key.
    """
    from models import ENCODERS  # (TensorFlow: after the quick checks)

    where = f"experiment config {config['name']!r}"
    unknown = [b for b in settings["baselines"] if b not in BASELINES]
    if unknown:
        raise ASPError(f"{where}: 'baselines' names {', '.join(unknown)}; use any of {', '.join(BASELINES)}")
    if settings.get("param_loss", PARAM_LOSSES[0]) not in PARAM_LOSSES:
        raise ASPError(
            f"{where}: 'param_loss' must be one of {', '.join(PARAM_LOSSES)}, not {settings['param_loss']!r}"
        )
    for k, row in enumerate(config["rows"]):
        unknown = [b for b in row.get("baselines", []) if b not in BASELINES]
        if unknown:
            raise ASPError(
                f"{where}, row {k}: 'baselines' names {', '.join(unknown)}; use any of {', '.join(BASELINES)}"
            )
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
    from asp.evaluation.evaluate import evaluate  # (TensorFlow: after the quick checks)
    from asp.training import read_config, train

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
    sizes = {}  # training sounds of each row trained on every synth (the scaling curve's x)
    parts: list[Path] = []  # every evaluation folder of the model rows
    for row in config["rows"]:
        label = row.get("label") or row["approach"]
        own_baselines = tuple(row.get("baselines", ()))
        rows_csv = []
        for synth, cfg in train_runs(settings, row, synths):
            cfg.model_dir = str(model_dir_for(cfg, fingerprint, settings.get("model_dir", MODEL_DIR)))
            train(cfg)
            part = out / slug(label) / (synth or "all")
            stamp = {"model": read_config(Path(cfg.model_dir) / run_name(cfg)), **evaluated}
            stamp.update({"eval_synths": row.get("eval_synths"), "profile": profile})
            if own_baselines:
                stamp["baselines"] = list(own_baselines)
            if not _is_current(part / "stamp.json", stamp) or not (part / PRESETS).is_file():
                evaluate(
                    Path(cfg.model_dir) / run_name(cfg),
                    data_dir,
                    part,
                    baselines=own_baselines,
                    synths=[synth] if synth else row.get("eval_synths"),
                    label=label,
                    refine=Budget(**refine) if refine else None,
                    **eval_kw,
                )
                write_json(part / "stamp.json", stamp)
            rows_csv += read_csv(part / "samples.csv")
            parts.append(part)
            if synth is None:
                sizes[label] = training_size(data_dir, cfg)
        described = {**row, "latent_size": row.get("latent_size", settings.get("latent_size", 64))}
        table_rows.append((label, described, [r for r in rows_csv if r["method"] == label]))
        for b in own_baselines:
            table_rows.append((f"{label} / {b}", {"approach": b}, [r for r in rows_csv if r["method"] == b]))
        if refine:
            searched = [r for r in rows_csv if r["method"] == f"{label}+search"]
            table_rows.append((f"{label}+search", {**described, "search": refine}, searched))
    baseline_dir = out / "baselines"
    table_rows += _baseline_rows(settings, baseline_dir, {**evaluated, "data": fingerprint}, eval_kw)
    _write_results(config, settings, profile, out, table_rows, synths, [*parts, baseline_dir], sizes=sizes)
    return out


def training_size(data_dir: str, cfg) -> int:
    """How many training sounds a run learns from: its ``max_samples`` rows of the training split."""
    from data.dataset import load_split, training_rows

    train = load_split(data_dir, "train")
    return len(training_rows(train, cfg.synths or dataset_synths(data_dir), cfg.max_samples, cfg.seed))


def _baseline_rows(settings: dict, baseline_dir: Path, evaluated: dict, eval_kw: dict) -> list[tuple]:
    """The baselines' table rows, evaluated again only when their stamp changed."""
    from asp.evaluation.evaluate import evaluate

    stamp = {**evaluated, "baselines": settings["baselines"]}
    if not _is_current(baseline_dir / "stamp.json", stamp) or not (baseline_dir / PRESETS).is_file():
        evaluate(None, settings["data_dir"], baseline_dir, baselines=tuple(settings["baselines"]), **eval_kw)
        write_json(baseline_dir / "stamp.json", stamp)
    baseline_rows = read_csv(baseline_dir / "samples.csv")
    return [
        (f"baseline: {b}", {"approach": b}, [r for r in baseline_rows if r["method"] == b])
        for b in settings["baselines"]
    ]


def _write_results(
    config: dict,
    settings: dict,
    profile: str,
    out: Path,
    table_rows: list,
    synths: list[str],
    parts: list[Path],
    *,
    sizes: dict[str, int],
) -> None:
    """table.md, all_samples.csv, the plots and the report page of a run config (``parts``: every
    evaluation folder, the baselines' last; ``sizes``: training sounds per model row, for the
    scaling curve when rows carry their own lookup)."""
    points = scaling_points(table_rows, sizes)
    per_synth = {s: scaling_points(table_rows, sizes, s) for s in synths}
    doc = write_table(
        out,
        config,
        profile,
        table_rows,
        synths,
        test_set=_test_set_line(settings),
        extra=scaling_blocks(points, per_synth),
    )
    plot(out, table_rows, synths)
    plot_scaling(out, points, per_synth)
    page = evaluation_report(
        out,
        [r for _, _, rows in table_rows for r in rows],
        preset_files=[p / PRESETS for p in parts],
        report_samples=settings.get("report_samples", REPORT_SAMPLES),
        title=f"{config.get('title', config['name'])} ({profile} profile)",
        documents=[(out / "table.md", doc)],
        plots=[
            out / name for name in ("lsd_boxplot.png", "lsd_vs_latent.png", "lsd_per_hpss.png", "lsd_vs_sounds.png")
        ],
        links=[p / "summary.md" for p in parts],
        reference=next((label for label, _, rows in table_rows if rows), None),
    )
    print(f"results in {out}: table.md, all_samples.csv, plots; report: {page}")
