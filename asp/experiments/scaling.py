"""The scaling curve of an experiment whose rows train the same model on more and more sounds
(``max_samples``), each scored with nearest-neighbour lookup in its own training sounds (a row's
``"baselines": ["nearest"]``): network vs lookup LSD per size with 95% CIs, their ratio (a paired
bootstrap over the held-out sounds), and where the two curves cross, measured or projected from a
fit of each curve as ``a + b ln(sounds)``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.evaluation.plots import save_figure
from asp.metrics import mean_ci
from asp.report import Table, Text

LOOKUP = "nearest"
BOOTSTRAP = 2000  # resamples of the ratio's confidence interval


def paired_lsd(network: list[dict], lookup: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The LSD of the network and of lookup on the sounds both scored (own-synth matches, paired by
    the sound's index): two (n,) float64 arrays in the same order."""

    def by_sound(rows):
        return {
            r["index"]: r["lsd"]
            for r in rows
            if r["rendered_synth"] == r["synth"] and isinstance(r["lsd"], float) and np.isfinite(r["lsd"])
        }

    a, b = by_sound(network), by_sound(lookup)
    common = sorted(set(a) & set(b))
    return np.array([a[k] for k in common], dtype=np.float64), np.array([b[k] for k in common], dtype=np.float64)


def ratio_ci(network: np.ndarray, lookup: np.ndarray, *, seed: int = 0) -> tuple[float, float, float]:
    """Mean network LSD over mean lookup LSD, and its 95% interval by a paired bootstrap over the
    sounds: (ratio, low, high); nan without sounds."""
    if not len(network):
        return float("nan"), float("nan"), float("nan")
    ratio = float(network.mean() / lookup.mean())
    picks = np.random.default_rng(seed).integers(0, len(network), size=(BOOTSTRAP, len(network)))
    samples = network[picks].mean(1) / lookup[picks].mean(1)
    low, high = np.percentile(samples, [2.5, 97.5])
    return ratio, float(low), float(high)


def log_fit(sizes: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Least-squares ``values = a + b ln(sizes)``: (a, b)."""
    b, a = np.polyfit(np.log(sizes), values, 1)
    return float(a), float(b)


def crossing(sizes: np.ndarray, network: np.ndarray, lookup: np.ndarray) -> tuple[str, float]:
    """Where the network's mean LSD meets lookup's: ("measured", the first size at which the
    network is no worse), else ("projected", the size where the two log fits meet; inf when they
    diverge or run parallel). Needs two sizes or more for a projection."""
    order = np.argsort(sizes)
    sizes, network, lookup = sizes[order], network[order], lookup[order]
    better = np.flatnonzero(network <= lookup)
    if len(better):
        return "measured", float(sizes[better[0]])
    if len(sizes) < 2:
        return "projected", float("nan")
    a, b = log_fit(sizes, network)
    c, d = log_fit(sizes, lookup)
    if b >= d:  # the network does not gain on lookup
        return "projected", float("inf")
    return "projected", float(np.exp((c - a) / (b - d)))


def scaling_points(table_rows: list, sizes: dict[str, int]) -> list[dict]:
    """One point per model row that has its own lookup row (``"<label> / nearest"``):
    {label, sounds, network (mean, half), lookup (mean, half), ratio (value, low, high), n}, by size.

    Args:
        table_rows: (label, row config, CSV rows) per table row.
        sizes: training sounds of each model row, by label.
    """
    rows = {label: csv for label, _, csv in table_rows}
    points = []
    for label, sounds in sizes.items():
        partner = rows.get(f"{label} / {LOOKUP}")
        if not partner or not rows.get(label):
            continue
        net, look = paired_lsd(rows[label], partner)
        if not len(net):
            continue
        points.append(
            {
                "label": label,
                "sounds": sounds,
                "network": mean_ci(net),
                "lookup": mean_ci(look),
                "ratio": ratio_ci(net, look),
                "n": len(net),
            }
        )
    return sorted(points, key=lambda p: p["sounds"])


def scaling_blocks(points: list[dict]) -> list[Text | Table]:
    """The scaling table and the crossing line, for the table's document ([] under two sizes)."""
    if len(points) < 2:
        return []
    table = Table(["training sounds", "network LSD", "lookup LSD", "network / lookup (95% CI)", "sounds scored"])
    for p in points:
        ratio, low, high = p["ratio"]
        table.rows.append(
            [
                f"{p['sounds']:,}",
                f"{p['network'][0]:.2f} ± {p['network'][1]:.2f}",
                f"{p['lookup'][0]:.2f} ± {p['lookup'][1]:.2f}",
                f"{ratio:.2f}x ({low:.2f}-{high:.2f})",
                str(p["n"]),
            ]
        )
    sizes = np.array([p["sounds"] for p in points], dtype=np.float64)
    kind, where = crossing(
        sizes, np.array([p["network"][0] for p in points]), np.array([p["lookup"][0] for p in points])
    )
    if kind == "measured":
        line = f"The network matches lookup from {where:,.0f} training sounds on (measured)."
    elif np.isfinite(where):
        line = (
            f"The curves cross at about {where:,.0f} training sounds: projected from a fit of each as "
            f"a + b ln(sounds) over the {len(points)} sizes measured (an extrapolation, not a measurement)."
        )
    else:
        line = "The network does not gain on lookup over the sizes measured: no crossing can be projected."
    about = (
        "Scaling: one-shot LSD of the network and of nearest-neighbour lookup in the same training "
        "sounds, on the same held-out sounds (mean ± 95% CI; the ratio's interval by a paired bootstrap "
        "over the sounds)."
    )
    return [Text(about), table, Text(line)]


def plot_scaling(out: Path, points: list[dict]) -> None:
    """``lsd_vs_sounds.png``: network and lookup LSD against training sounds (log axis), with CIs."""
    if len(points) < 2:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [p["sounds"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, name, marker in (("network", "network (one-shot)", "o"), ("lookup", "nearest training sound", "s")):
        means = [p[key][0] for p in points]
        halves = [p[key][1] if np.isfinite(p[key][1]) else 0.0 for p in points]
        ax.errorbar(sizes, means, yerr=halves, marker=marker, capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("training sounds")
    ax.set_ylabel("LSD on held-out sounds")
    ax.set_title("Network vs lookup as the training data grows")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "lsd_vs_sounds.png")
    plt.close(fig)


__all__ = ["crossing", "paired_lsd", "plot_scaling", "ratio_ci", "scaling_blocks", "scaling_points"]
