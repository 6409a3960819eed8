"""The project's error type, the one way scripts report errors, and safe file writing.

Nothing heavy is imported here (no DawDreamer, TensorFlow or librosa), so any module and any
script can use it, and importing it never changes the order in which those libraries load.

    ASPError          a problem with the user's input or files; its message says what to do
    run_cli(main)     runs a script: ASPError and OSError become one ``error:`` line, exit 2
    ArgumentParser    argparse whose usage errors are one ``error:`` line too
    positive_int, ...  argparse ``type=`` functions that refuse zero, negatives, NaN and inf
    atomic_write      writes a file through a temp file in the same folder, fsync, rename
    atomic_path       the same for libraries that write to a path themselves (Keras, numpy)
    atomic_folder     fills a temp folder, then swaps it in for a folder the toolkit owns
    folder_lock       holds a folder for one run: a second run on it fails at once, naming the first
    write_json, read_json, remove_stale_temps, remove_stale_folders
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import fnmatch
import json
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TEMP_MARK = ".tmp"  # every temp file is named <name>.<pid>.tmp[<suffix>]


class ASPError(ValueError):
    """A problem with the user's input: the message says what was wrong and what to do."""


# ---------------------------------------------------------------------------------------
# reading and writing files


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
    except IsADirectoryError:
        raise ASPError(f"{what} {path} is a folder, not a file") from None
    except OSError as err:
        raise ASPError(f"cannot read {what} {path} ({err.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        if isinstance(err, json.JSONDecodeError):
            where = f"{err.msg} at line {err.lineno}"
        else:
            where = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else "nested too deeply"
        hint = f"; {fix}" if fix else ""
        raise ASPError(f"{what} {path} is not valid JSON ({where}){hint}") from None


def temp_path(path: str | Path, suffix: str = "") -> Path:
    """The temp file that ``atomic_path`` writes before renaming it to ``path``: same folder,
    ``<name>.<pid>.tmp<suffix>`` (the pid lets ``remove_stale_temps`` tell a dead writer's)."""
    path = Path(path)
    return path.with_name(f"{path.name}.{os.getpid()}{TEMP_MARK}{suffix}")


def _fsync(path: Path, *, folder: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if folder else 0))
    except OSError:
        if folder:  # some file systems cannot open folders for syncing; the rename still holds
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not folder:
            raise
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, *, suffix: str = "") -> Iterator[Path]:
    """Yields a temp path next to ``path`` to write; on success the file is synced to disk and
    renamed over ``path`` (readers see the old file or the new one, never a torn one); on any
    failure, Ctrl-C included, the temp file is removed and ``path`` is left as it was.

    Args:
        path: the file to (re)place. Its folder must exist.
        suffix: appended to the temp name, for writers that insist on an extension (Keras
            ``save_weights`` needs ``.weights.h5``).

    Raises:
        OSError: as raised while writing, with ``filename`` set to ``path`` where it was empty
            (``f.write`` on a full disk) or named the temp file, so the message names the file.
    """
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(err, OSError) and (not err.filename or str(err.filename) == str(tmp)):
            err.filename, err.filename2 = str(path), None  # name the user's file, not our temp
        raise
    _fsync(path.parent, folder=True)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_args) -> Iterator[IO]:
    """Opens a temp file next to ``path`` for writing; on success it replaces ``path`` atomically.

    ``with atomic_write(path) as f: f.write(text)``; ``mode="wb"`` for bytes; other keywords go to
    ``open`` (``newline=""`` for csv). See ``atomic_path`` for what happens on failure.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write writes a new file; mode {mode!r} has no 'w'")
    with atomic_path(path) as tmp, open(tmp, mode, **open_args) as f:
        yield f


def write_json(path: str | Path, data: object) -> None:
    """Writes JSON atomically (indented, one trailing newline)."""
    with atomic_write(path) as f:
        f.write(json.dumps(data, indent=1) + "\n")


def remove_stale_folders(path: str | Path) -> None:
    """Removes the temp folders (``.<name>.<pid>.tmp``, ``.tmp.old``) that a write of the folder
    ``path`` killed midway left beside it; a running writer's are kept."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.tmp(\.old)?$")
    for p in path.parent.iterdir() if path.parent.is_dir() else []:
        m = pattern.match(p.name)
        if m and p.is_dir() and not p.is_symlink() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yields an empty temp folder next to ``path`` (``.<name>.<pid>.tmp``) to fill; on success
    it takes the place of ``path`` (a folder there before is swapped out, then deleted), so
    readers see the old folder or the new one, never a mix; on any failure the temp folder is
    removed and ``path`` is left as it was. Only for folders the toolkit owns: what was at
    ``path`` is deleted. Temp folders of killed writers are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_folders(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # ours: this process's name
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.tmp.old")
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMP_NAME = re.compile(rf"^(.+)\.(\d+){re.escape(TEMP_MARK)}[^/]*$")


def remove_stale_temps(folder: str | Path, *names: str) -> list[Path]:
    """Removes the temp files that writers killed mid-write left in ``folder``: those of
    ``atomic_path`` for a file matching one of the glob patterns ``names`` (default: any) whose
    process is gone; a live writer's are kept. Returns what it removed."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_NAME.match(p.name)
        if not (m and p.is_file() and (not names or any(fnmatch.fnmatchcase(m.group(1), n) for n in names))):
            continue
        pid = int(m.group(2))
        if pid == os.getpid() or not _pid_alive(pid):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


LOCK_FILE = ".lock"


def _lock_holder(path: Path) -> str:
    """Who holds a lock file, from what its holder wrote into it (retried briefly: the holder
    writes just after taking the lock)."""
    for _ in range(10):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and "pid" in info:
            started = info.get("started")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, float) else "?"
            command = f": {info['command']}" if info.get("command") else ""
            return f"pid {info['pid']}, started {when}{command}"
        time.sleep(0.05)
    return "a process that did not say who it is"


@contextmanager
def folder_lock(folder: str | Path, *, what: str = "another run", fix: str = "choose another folder") -> Iterator[Path]:
    """Holds ``folder`` for this run: an exclusive ``flock`` on ``<folder>/.lock`` until the
    block ends (or the process dies: the kernel releases it, so a killed run never leaves a
    stale lock). The file records who holds it and stays afterwards; it is ours.

    Args:
        folder: an existing folder.
        what: what the holder is, for the message ("another generate.py run").
        fix: what to do instead of waiting, for the message.

    Raises:
        ASPError: another process holds the folder; the message names its pid, start time and
            command line.
    """
    path = Path(folder) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by worker processes
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ASPError(
                f"{folder} is in use by {what} ({_lock_holder(path)}); wait for it to finish, or {fix}"
            ) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            yield path  # a file system without locks (some network ones): run unguarded, as before
            return
        info = {"pid": os.getpid(), "started": time.time(), "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------------------------------
# OSError -> one line


_FIXES = {
    errno.ENOSPC: "no space left on the disk holding {path}; free some space (or choose another output folder) "
    "and run the same command again",
    errno.EDQUOT: "disk quota exceeded writing {path}; free space within your quota (or choose another output "
    "folder) and run the same command again",
    errno.EFBIG: "{path} would exceed the file-size limit (ulimit -f); raise the limit or write elsewhere",
    errno.EACCES: "permission denied for {path}; make it writable (chmod/chown) or choose another output folder",
    errno.EPERM: "operation not permitted on {path}; check its permissions or choose another output folder",
    errno.EROFS: "{path} is on a read-only file system; choose an output folder on a writable disk",
    errno.ENOTDIR: "{path}: part of this path is a file, not a folder; choose another path or move the file",
    errno.EISDIR: "{path} is a folder, not a file; give a file path",
    errno.EEXIST: "{path} already exists and is in the way (a file where a folder should be?); "
    "choose another path or move it",
    errno.ENOENT: "{path} does not exist; check the path",
    errno.ENAMETOOLONG: "{path}: the file name is too long; choose a shorter one",
    errno.EIO: "input/output error on {path}; the disk may be failing: copy your data elsewhere",
    errno.ENOMEM: "out of memory; close other programs or use smaller settings (e.g. --batch-size)",
}


def os_error_line(err: OSError) -> str:
    """An OSError as one line: what happened, to which path, what to free or fix."""
    code = err.errno
    if code is None:  # h5py and others put the errno only in the text
        m = re.search(r"errno\s*=\s*(\d+)", str(err))
        code = int(m.group(1)) if m else None
    path = err.filename or "a file"
    if err.filename2:
        path = f"{err.filename} -> {err.filename2}"
    if code in _FIXES:
        return _FIXES[code].format(path=path)
    text = str(err).strip()
    reason = err.strerror or (text.splitlines()[0] if text else type(err).__name__)
    return f"{reason}: {path}" if err.filename else reason


def run_cli(main: Callable[[], int | None]) -> None:
    """Runs a script's ``main``: an ``ASPError`` or ``OSError`` becomes one line on stderr
    (``error: ...``) and exit status 2; Ctrl-C exits 130 with one line."""
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
