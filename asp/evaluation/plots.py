"""The plots of an evaluation or an experiment table: LSD per row and synth (box plot), LSD
against latent size (when rows differ in it), and mean LSD per HPSS bin (when the sounds have bins)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asp.files import atomic_write
from asp.report import hpss_bins


def plot(out: Path, table_rows: list, synths: list[str]) -> None:
    """Writes the plots of ``table_rows`` ((label, row config, CSV rows) per row) into ``out``."""
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
        save_figure(fig, out / "lsd_boxplot.png")
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
        save_figure(fig, out / "lsd_vs_latent.png")
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
    save_figure(fig, out / "lsd_per_hpss.png")
    plt.close(fig)


def save_figure(fig, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=90)
