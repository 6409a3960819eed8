"""The benchmarks' one runner: ``python -m bench NAME [its arguments]`` (or ``make bench NAME=...
ARGS="..."``) runs ``bench/NAME.py``; without a name it lists them. Each is run by hand, prints its
figures and asserts nothing; the docs quote what they measured."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = sorted(p.stem for p in HERE.glob("*.py") if p.stem not in ("__main__", "__init__", "common"))


def about(name: str) -> str:
    """The first line of a benchmark's docstring."""
    text = (HERE / f"{name}.py").read_text().split('"""')
    return text[1].strip().splitlines()[0] if len(text) > 1 else ""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in NAMES:
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: no benchmark {argv[0]!r}; use one of {', '.join(NAMES)}", file=sys.stderr)
        print("usage: python -m bench NAME [ARGS]   (make bench NAME=... ARGS=...)")
        for name in NAMES:
            print(f"  {name:<15} {about(name)}")
        return 2 if argv and argv[0] not in ("-h", "--help") else 0
    sys.argv = [f"bench/{argv[0]}.py", *argv[1:]]
    runpy.run_module(f"bench.{argv[0]}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
