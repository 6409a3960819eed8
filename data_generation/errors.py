"""The project's error type and the one way scripts report it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path


class ASPError(ValueError):
    """A problem with the user's input: the message says what was wrong and what to do."""


def read_json(path: str | Path, what: str, fix: str = "") -> object:
    """Reads a JSON file a user gave or a run wrote; unreadable or invalid JSON is an ``ASPError``.

    Args:
        path: the file.
        what: what the file is, for the message ("preset file", "experiment config").
        fix: what to do about invalid JSON, appended to the message.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise ASPError(f"cannot read {what} {path} ({err.strerror})") from None
    except json.JSONDecodeError as err:
        hint = f"; {fix}" if fix else ""
        raise ASPError(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno}){hint}") from None


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs a script's ``main``; an ``ASPError`` becomes one line on stderr and exit status 2."""
    try:
        code = main()
    except ASPError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
