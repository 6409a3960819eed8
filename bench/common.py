"""What the benchmarks share: the project's command-line conventions (``asp.cli.ArgumentParser``:
one-line errors; ``-d/--data-dir`` for a dataset) and the one dataset they generate when given
none (``--n`` random presets of each built-in synth at note 60, no HPSS labels)."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asp.cli import ArgumentParser, positive_int

BUILT_IN = ("va", "fm", "modal")


def parser(doc: str | None) -> ArgumentParser:
    """A benchmark's command line, its docstring as the help."""
    return ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_dataset(p: ArgumentParser, *, layout: str, n: int) -> None:
    """``-d/--data-dir`` (a dataset of ``layout``) or ``--n``: the presets per built-in synth of the
    one generated in its place (``dataset``)."""
    p.add_argument("-d", "--data-dir", help=f"an {layout} dataset (default: generate --n presets per built-in synth)")
    p.add_argument(
        "--n", type=positive_int, default=n, help=f"presets per built-in synth of the generated dataset ({n})"
    )


@contextmanager
def dataset(args: argparse.Namespace, layout: str) -> Iterator[Path]:
    """``args.data_dir``, or the benchmarks' dataset generated into a temporary folder (removed
    after): ``args.n`` random presets of each built-in synth at note 60, no HPSS labels, ``layout``."""
    if args.data_dir:
        yield Path(args.data_dir)
        return
    import asp

    with tempfile.TemporaryDirectory(prefix="asp-bench-") as tmp:
        data = Path(tmp) / "data"
        asp.generate(list(BUILT_IN), args.n, out=data, presets=["random"], hpss=False, layout=layout)
        yield data


def machine_line(what: str = "") -> str:
    """The line each benchmark's figures start with: the cores and the load they ran under."""
    return f"cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}" + (f"; {what}" if what else "")
