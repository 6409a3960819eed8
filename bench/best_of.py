"""Benchmark of best of K (asp/inference/candidates.py): quality against K and seconds. Run by hand;
prints a markdown table, asserts nothing.

For each held-out sound (a test split of fresh presets, e.g. ``make heldout-pitch``) and each
synth's own sounds: the regression head's preset, ``--max-k`` presets drawn from the generative
head and the index's ``--max-k`` nearest presets (by z) are rendered and scored by the search's
distance; each way of choosing candidates at a number of renders keeps the closest, whose exact
render is then scored with LSD and the multi-scale log-mel distance:

    network        the regression head's preset alone (the one-shot match)
    index R        the R nearest presets of the index
    head R         R presets drawn from the generative head
    mixed R        the network's, R // 2 drawn and the rest nearest
    mean           the training-mean preset (of the index)

    .venv/bin/python -m bench best_of saved_models/pretrained --test-dir npy_heldout_pitch
"""

from __future__ import annotations

from asp import backend  # noqa: F401  (dawdreamer before tensorflow: the other order segfaults)

# isort: split
import time

import numpy as np
from tqdm import tqdm

from asp.cli import positive_int
from asp.inference import Matcher
from asp.metrics import log_spectral_distance, multi_scale_log_mel_distance
from asp.stats import mean_ci, ratio_ci
from bench import common
from data.dataset import load_split
from data.encoding import Codec
from data_generation.render import Renderer

RENDERS = (4, 16, 64)


def ways(k_max: int) -> dict[str, list[str]]:
    """{way: candidate labels in the order drawn}: the labels are network, sample i, nearest i."""
    out = {"network": ["network"]}
    for r in [r for r in RENDERS if r <= k_max]:
        out[f"index {r}"] = [f"nearest {i}" for i in range(r)]
        out[f"head {r}"] = [f"sample {i}" for i in range(r)]
        half = (r - 1) // 2
        out[f"mixed {r}"] = (
            ["network"] + [f"sample {i}" for i in range(half)] + [f"nearest {i}" for i in range(r - 1 - half)]
        )
    return out


def present(matcher: Matcher, test) -> dict:
    """The model's synths that have sounds in the test split (e.g. not dx7 in make heldout-pitch's)."""
    return {name: spec for name, spec in matcher.specs.items() if np.any(test.synth == name)}


def score(matcher: Matcher, test, args) -> tuple[dict, dict]:
    """Each way's LSD and log-mel of every sound ({(synth, way): {"lsd": [...], "mel": [...]}}) and
    the seconds of drawing and of one render ({"sample": [...], "render": [...]})."""
    index, exact, table = matcher.index(), Renderer(), ways(args.max_k)
    scores: dict[tuple[str, str], dict[str, list[float]]] = {}
    seconds = {"sample": [], "render": []}
    for synth, spec in present(matcher, test).items():
        codec = Codec(spec)
        rows = np.flatnonzero(test.synth == synth)[: args.sounds]
        mean = index[f"params_{synth}"].astype(np.float32).mean(0)
        for row in tqdm(rows, desc=synth, unit="sound"):
            mel, note = np.asarray(test.mels[row], np.float32), int(test.note[row])
            target = exact.render(spec, codec.decode(np.asarray(test.params[synth][row], np.float32)), note=note)
            network = matcher.model.predict_vectors(mel[None], notes=np.array([note]))[synth][0]
            start = time.perf_counter()
            drawn = matcher.model.sample_vectors(mel[None], np.array([note]), args.max_k, seed=args.seed)[synth][0]
            seconds["sample"].append(time.perf_counter() - start)
            z = matcher.model.latent(mel[None])[0]
            near = np.argsort(np.sum((index[f"z_{synth}"].astype(np.float32) - z) ** 2, axis=1), kind="stable")
            vectors = {"network": network}
            vectors.update({f"sample {i}": v for i, v in enumerate(drawn)})
            vectors.update({f"nearest {i}": index[f"params_{synth}"][r] for i, r in enumerate(near[: args.max_k])})
            labels = list(vectors)
            start = time.perf_counter()
            presets = codec.decode(np.stack([vectors[k] for k in labels]).astype(np.float32))
            distance = dict(zip(labels, matcher.searcher(args.workers).score(spec, target, note, presets)))
            seconds["render"].append((time.perf_counter() - start) / len(labels))
            choices = {way: min(chosen, key=lambda k: distance[k]) for way, chosen in table.items()}
            choices["mean"] = None
            for way, label in choices.items():
                vector = mean if label is None else vectors[label]
                audio = exact.render(spec, codec.decode(np.asarray(vector, np.float32)), note=note)
                got = scores.setdefault((synth, way), {"lsd": [], "mel": []})
                got["lsd"].append(float(log_spectral_distance(target, audio)))
                got["mel"].append(float(multi_scale_log_mel_distance(target, audio)))
    return scores, seconds


def print_table(synths: list[str], table: dict, scores: dict, sample_s: float, render_s: float) -> None:
    """The markdown table: each way's renders, seconds, LSD per synth and over all, log-mel, and
    the LSD ratio to the index at equal renders with its paired-bootstrap interval."""
    print("| way | renders | s a sound | " + " | ".join(f"{s} LSD" for s in synths), end="")
    print(" | all LSD | all log-mel | LSD / index at equal renders |")
    print("|---" * (6 + len(synths)) + "|")
    for way in [*table, "mean"]:
        n = len(table.get(way, [])) if way != "mean" else 0
        cost = (sample_s if way.startswith(("head", "mixed")) else 0.0) + n * render_s
        cells = ["{:.2f} ± {:.2f}".format(*mean_ci(scores[(synth, way)]["lsd"])) for synth in synths]
        lsd = np.concatenate([scores[(s, way)]["lsd"] for s in synths])
        mel = np.concatenate([scores[(s, way)]["mel"] for s in synths])
        reference = f"index {n}" if f"index {n}" in table and way != f"index {n}" else None
        versus = ""
        if reference:
            base = np.concatenate([scores[(s, reference)]["lsd"] for s in synths])
            versus = "{:.2f}x [{:.2f}, {:.2f}]".format(*ratio_ci(lsd, base))
        m_l, h_l = mean_ci(lsd)
        m_m, h_m = mean_ci(mel)
        print(
            f"| {way} | {n} | {cost:.2f} | "
            + " | ".join(cells)
            + f" | {m_l:.2f} ± {h_l:.2f} | {m_m:.3f} ± {h_m:.3f} | {versus} |"
        )


def main() -> None:
    p = common.parser(__doc__)
    p.add_argument("run", help="a run with generative heads and an index (add_generative_head.py)")
    p.add_argument("--test-dir", required=True, help="held-out sounds (a test split)")
    p.add_argument("--sounds", type=positive_int, default=20, help="per synth (default 20)")
    p.add_argument("--max-k", type=positive_int, default=64, help="(default 64)")
    p.add_argument("--workers", type=positive_int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    matcher = Matcher(args.run)
    test = load_split(args.test_dir, "test")
    scores, seconds = score(matcher, test, args)
    matcher.close()
    sample_s, render_s = float(np.mean(seconds["sample"])), float(np.mean(seconds["render"]))
    print(f"\n{common.machine_line()}; {args.run} on {args.test_dir}: drawing {args.max_k} presets", end="")
    print(
        f" {1000 * sample_s:.0f} ms a sound, one render + score {1000 * render_s:.0f} ms ({args.workers} worker(s))\n"
    )
    print_table(list(present(matcher, test)), ways(args.max_k), scores, sample_s, render_s)


if __name__ == "__main__":
    main()
