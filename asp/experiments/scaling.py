"""The scaling curve of an experiment whose rows train the same model on more and more sounds
(``max_samples``), each scored with nearest-neighbour lookup in its own training sounds (a row's
``"baselines": ["nearest"]``): network vs lookup LSD per size with 95% CIs, their ratio (a paired
bootstrap over the held-out sounds), and where the two curves cross, measured or projected from a
fit of each curve as ``a + b ln(sounds)``; the same per synth, with the size at which the network
would reach ``TARGET`` x lookup and each size's LSD and parameter error as multiples of the
training-mean preset's (the config's ``"mean"`` baseline, on the same sounds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.evaluation.plots import save_figure
from asp.experiments.table import mean_ratio
from asp.report import Table, Text
from asp.stats import mean_ci, ratio_ci

LOOKUP = "nearest"
MEAN = "baseline: mean"  # the table row of the config's training-mean preset
TARGET = 0.9  # the network / lookup ratio a shipped model is held to (per synth)


def paired_lsd(network: list[dict], lookup: list[dict], *, synth: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The LSD of the network and of lookup on the sounds both scored (own-synth matches, paired by
    the sound's index; ``synth``: that synth's sounds only): two (n,) float64 arrays in the same
    order."""

    def by_sound(rows):
        return {
            r["index"]: r["lsd"]
            for r in rows
            if r["rendered_synth"] == r["synth"]
            and (synth is None or r["synth"] == synth)
            and isinstance(r["lsd"], float)
            and np.isfinite(r["lsd"])
        }

    a, b = by_sound(network), by_sound(lookup)
    common = sorted(set(a) & set(b))
    return np.array([a[k] for k in common], dtype=np.float64), np.array([b[k] for k in common], dtype=np.float64)


def log_fit(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares ``values = a + b ln(sizes)``: (a, b)."""
    b, a = np.polyfit(np.log(sizes), values, 1)
    return float(a), float(b)


def crossing(sizes: np.ndarray, network: np.ndarray, lookup: np.ndarray, ratio: float = 1.0) -> tuple[str, float]:
    """Where the network's mean LSD meets ``ratio`` x lookup's: ("measured", the smallest size from
    which the network stays there at every larger size measured), else, when it is not there at
    the largest size, ("projected", the size where the network's log fit meets ``ratio`` x
    lookup's; inf when the network does not gain on it). Needs two sizes or more to project."""
    order = np.argsort(sizes)
    sizes, network, lookup = sizes[order], network[order], ratio * lookup[order]
    worse = np.flatnonzero(network > lookup)
    if not len(worse) or worse[-1] < len(sizes) - 1:
        return "measured", float(sizes[worse[-1] + 1 if len(worse) else 0])
    if len(sizes) < 2:
        return "projected", float("nan")
    a, b = log_fit(sizes, network)
    c, d = log_fit(sizes, lookup)
    if b >= d:  # the network does not gain on lookup
        return "projected", float("inf")
    return "projected", float(np.exp((c - a) / (b - d)))


def scaling_points(table_rows: list, sizes: dict[str, int], synth: str | None = None) -> list[dict]:
    """One point per model row that has its own lookup row (``"<label> / nearest"``):
    {label, sounds, network (mean, half), lookup (mean, half), ratio (value, low, high), n,
    vs_mean: {lsd, param_mse}: the network's mean over the training-mean preset's on the same
    sounds (nan without a ``"mean"`` baseline)}, by size.

    Args:
        table_rows: (label, row config, CSV rows) per table row.
        sizes: training sounds of each model row, by label.
        synth: that synth's sounds only (None: every sound).
    """
    rows = {label: csv for label, _, csv in table_rows}
    points = []
    for label, sounds in sizes.items():
        partner = rows.get(f"{label} / {LOOKUP}")
        if not partner or not rows.get(label):
            continue
        net, look = paired_lsd(rows[label], partner, synth=synth)
        if not len(net):
            continue
        vs_mean = {m: mean_ratio(rows[label], rows.get(MEAN, []), m, synth) for m in ("lsd", "param_mse")}
        points.append(
            {
                "label": label,
                "sounds": sounds,
                "network": mean_ci(net),
                "lookup": mean_ci(look),
                "ratio": ratio_ci(net, look),
                "n": len(net),
                "vs_mean": vs_mean,
            }
        )
    return sorted(points, key=lambda p: p["sounds"])


def _crossing_line(points: list[dict], ratio: float, who: str) -> str:
    """Where ``who``'s network reaches ``ratio`` x lookup, measured or projected, as a sentence."""
    sizes = np.array([p["sounds"] for p in points], dtype=np.float64)
    network = np.array([p["network"][0] for p in points])
    lookup = np.array([p["lookup"][0] for p in points])
    kind, where = crossing(sizes, network, lookup, ratio)
    goal = "matches lookup" if ratio == 1.0 else f"reaches {ratio:g}x lookup"
    if kind == "measured":
        return f"{who}: the network {goal} from {where:,.0f} training sounds on (measured)."
    if np.isfinite(where):
        return (
            f"{who}: the network {goal} at about {where:,.0f} training sounds: projected from a fit of each "
            f"curve as a + b ln(sounds) over the {len(points)} sizes measured (an extrapolation, not a measurement)."
        )
    return f"{who}: the network does not gain on lookup over the sizes measured; no size where it {goal} is projected."


def scaling_blocks(points: list[dict], per_synth: dict[str, list[dict]] | None = None) -> list[Text | Table]:
    """The scaling tables (every sound; then per synth, with the ratios to the training-mean
    preset) and the crossing lines, for the table's document ([] under two sizes)."""
    if len(points) < 2:
        return []
    table = Table(["training sounds", "network LSD", "lookup LSD", "network / lookup (95% CI)", "sounds scored"])
    for p in points:
        table.rows.append([f"{p['sounds']:,}", *_cells(p), str(p["n"])])
    about = (
        "Scaling: one-shot LSD of the network and of nearest-neighbour lookup in the same training "
        "sounds, on the same held-out sounds (mean ± 95% CI; the ratio's interval by a paired bootstrap "
        "over the sounds)."
    )
    blocks = [Text(about), table, Text(_crossing_line(points, 1.0, "Every sound"))]
    per_synth = {s: p for s, p in (per_synth or {}).items() if len(p) >= 2}
    if per_synth:
        by_synth = Table(
            [
                "synth",
                "training sounds",
                "network LSD",
                "lookup LSD",
                "network / lookup (95% CI)",
                "LSD / mean preset's",
                "parameter error / mean preset's",
            ]
        )
        lines = []
        for synth, pts in per_synth.items():
            for p in pts:
                vs = p["vs_mean"]
                by_synth.rows.append(
                    [synth, f"{p['sounds']:,}", *_cells(p), f"{vs['lsd']:.2f}x", f"{vs['param_mse']:.2f}x"]
                )
            lines += [_crossing_line(pts, 1.0, synth), _crossing_line(pts, TARGET, synth)]
        blocks += [
            Text(
                "Per synth, with the network's LSD and parameter error (squared error over the encoded "
                "preset) as multiples of the training-mean preset's on the same sounds:"
            ),
            by_synth,
            Text(" ".join(lines)),
        ]
    return blocks


def _cells(p: dict) -> list[str]:
    ratio, low, high = p["ratio"]
    return [
        f"{p['network'][0]:.2f} ± {p['network'][1]:.2f}",
        f"{p['lookup'][0]:.2f} ± {p['lookup'][1]:.2f}",
        f"{ratio:.2f}x ({low:.2f}-{high:.2f})",
    ]


def plot_scaling(out: Path, points: list[dict], per_synth: dict[str, list[dict]] | None = None) -> None:
    """``lsd_vs_sounds.png``: network and lookup LSD against training sounds (log axis), with CIs;
    one panel for every sound, then one per synth."""
    panels = [("every sound", points)] + [(s, p) for s, p in (per_synth or {}).items() if len(p) >= 2]
    if len(points) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, pts) in zip(axes[0], panels):
        sizes = [p["sounds"] for p in pts]
        for key, name, marker in (("network", "network (one-shot)", "o"), ("lookup", "nearest training sound", "s")):
            means = [p[key][0] for p in pts]
            halves = [p[key][1] if np.isfinite(p[key][1]) else 0.0 for p in pts]
            ax.errorbar(sizes, means, yerr=halves, marker=marker, capsize=3, label=name)
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes], fontsize=8)
        ax.set_xlabel("training sounds")
        ax.set_title(title)
    axes[0][0].set_ylabel("LSD on held-out sounds")
    axes[0][0].legend()
    fig.suptitle("Network vs lookup as the training data grows")
    fig.tight_layout()
    save_figure(fig, out / "lsd_vs_sounds.png")
    plt.close(fig)


__all__ = ["crossing", "paired_lsd", "plot_scaling", "ratio_ci", "scaling_blocks", "scaling_points"]
