"""The project's error type and the one way scripts report it."""

from __future__ import annotations

import sys
from collections.abc import Callable


class ASPError(ValueError):
    """A problem with the user's input: the message says what was wrong and what to do."""


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
