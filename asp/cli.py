"""The one way commands run and parse their arguments.

run_cli(main)     runs a command: ASPError and OSError become one ``error:`` line, exit 2; SIGTERM
                  unwinds like Ctrl-C (temp files and folders are removed), exit 143
ArgumentParser    argparse whose usage errors are one ``error:`` line too
positive_int, ...  argparse ``type=`` functions that refuse zero, negatives, NaN and inf
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable

from asp.errors import ASPError, os_error_line


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM (``kill``), so that ``with`` blocks and ``finally``
    clauses run: temp files and folders are removed, worker pools shut down."""


def _raise_terminated(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise Terminated


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs a script's ``main``: an ``ASPError`` or ``OSError`` becomes one line on stderr
    (``error: ...``) and exit status 2; Ctrl-C exits 130 and SIGTERM 143, each with one line,
    after the cleanup an exception gets."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        code = main()
    except ASPError as err:
        _fail(str(err))
    except BrokenPipeError:  # the output went to a reader that stopped (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except OSError as err:
        _fail(os_error_line(err))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(143)
    sys.exit(code or 0)


def _fail(message: str) -> None:
    print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)  # one line, always
    sys.exit(2)


# ---------------------------------------------------------------------------------------
# the command line


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line, ``error: argument --n: ...
    (see --help)``, exit status 2, like every other error of the scripts."""

    def error(self, message: str):
        message = re.sub(r"^argument (\S+): must be", r"\1 must be", " ".join(message.split()))
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _int(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
    return value


def _float(text: str, *, zero: bool) -> float:
    bound = ">= 0" if zero else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text!r}") from None
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (counts, sizes)."""
    return _int(text, 1)


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds, optional counts where 0 means none)."""
    return _int(text, 0)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, durations)."""
    return _float(text, zero=False)


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (loss weights)."""
    return _float(text, zero=True)


def parse_plugin_paths(items: list[str] | None) -> dict[str, str]:
    """``["serum=/path/Serum.so"]`` -> ``{"serum": "/path/Serum.so"}`` (the --plugin flag)."""
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ASPError(f"--plugin takes NAME=PATH (e.g. serum=/path/to/Serum.so), got {item!r}")
        out[name] = path
    return out


def add_overwrite_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--overwrite`` flag of a command that writes outputs: without it, a file or folder in the
    way that no command of this toolkit wrote is refused (``asp.files.check_outputs``)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files or folders in the way that this toolkit did not write (default: refuse)",
    )
