"""Safe file writing: every file and folder the toolkit writes is whole or absent.

atomic_write      writes a file through a temp file in the same folder, fsync, rename
atomic_path       the same for libraries that write to a path themselves (Keras, numpy)
atomic_folder     fills a temp folder, then swaps it in for a folder the toolkit owns
write_json, remove_stale_temps, remove_stale_folders
read_json         the one JSON reader: limits, no blocking on a pipe or a device, one line naming the file
not_a_file_problem  why a path is not a regular file (a named pipe, a device, a folder) before opening it
write_sound       soundfile.write whose failures (a full disk) are one ASPError naming the file
path_problem      why a path given cannot be opened: missing, a symbolic link loop, a file on the way
check_outputs     refuses to replace a file or folder no command wrote (unless --overwrite)
mark_written, output_path   record what a command wrote (.asp-written.json), so its next run may replace it
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import soundfile as sf

from asp.errors import ASPError, os_error_line

TEMP_MARK = ".tmp"  # every temp file is named <name>.<pid>.tmp[<suffix>]


# ---------------------------------------------------------------------------------------
# reading and writing files


JSON_MAX_BYTES = 256 << 20  # no JSON the project reads comes near this; a bigger one is not ours
JSON_MAX_DIGITS = 100  # an integer literal longer than this is damage (Python refuses 4,300 with a traceback)


class _BigInteger(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_MAX_DIGITS:
        raise _BigInteger(len(text.lstrip("-")))
    return int(text)


def not_a_file_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file that can be read without blocking (a named pipe, a device
    such as ``/dev/zero``, a socket, a folder), in words that name it; None for a regular file and
    for a path that does not exist (``path_problem`` says that). Checked before opening: opening a
    named pipe for reading waits for a writer forever, and ``/dev/zero`` never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = (
        "a folder"
        if stat.S_ISDIR(mode)
        else "a named pipe (FIFO)"
        if stat.S_ISFIFO(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "not a regular file"
    )
    return f"{path} is {kind}, not a file"


def read_json(path: str | Path, what: str, fix: str = "", *, max_bytes: int = JSON_MAX_BYTES) -> object:
    """Reads a JSON file a user gave, a run wrote or the project ships: the one JSON reader.

    Refused with an ``ASPError`` naming the file (and ``fix``): a missing or unreadable file; a
    named pipe, a device or a folder (checked before opening, so nothing blocks); a file over
    ``max_bytes``; invalid JSON, text that is not UTF-8, nesting too deep; an integer of more than
    ``JSON_MAX_DIGITS`` digits (Python's own limit is a ``ValueError`` traceback).

    Args:
        path: the file.
        what: what the file is, for the message ("preset file", "experiment config").
        fix: what to do about a damaged file, appended to the message.
        max_bytes: the largest file read.
    """
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    problem = not_a_file_problem(path)
    if problem:
        raise ASPError(f"{what} {problem}; give a JSON file") from None
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            raise ASPError(f"cannot read {what}: {path_problem(path) or path}") from None
        raise ASPError(f"cannot read {what} {path} ({err.strerror})") from None
    if len(raw) > max_bytes:
        raise ASPError(f"{what} {path} is over {max_bytes >> 20} MB, too large for one{hint}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ASPError(f"{what} {path} is not valid JSON (not UTF-8 text){hint}") from None
    return parse_json(text, f"{what} {path}", fix)


def parse_json(text: str, what: str, fix: str = "") -> object:
    """JSON text (a file's, read by ``read_json``, or an environment variable's such as
    TF_CONFIG) with the same limits and one-line errors; ``what`` names it ("run config x.json")."""
    hint = f"; {fix}" if fix else ""
    try:
        return json.loads(text, parse_int=_parse_int)
    except _BigInteger as err:
        raise ASPError(
            f"{what} is damaged: it holds an integer of {err.args[0]} digits (at most {JSON_MAX_DIGITS} are read){hint}"
        ) from None
    except (json.JSONDecodeError, RecursionError) as err:
        where = f"{err.msg} at line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "nested too deeply"
        raise ASPError(f"{what} is not valid JSON ({where}){hint}") from None


def distinct_slug(text: str) -> str:
    """``text`` as a safe file name and URI part: itself when it is one (ASCII letters, digits,
    ``_``, ``-``), else its ASCII letters and digits (accents dropped, the rest as ``-``) and the
    first 8 hex digits of its sha256, so that distinct names stay distinct (``ö`` -> ``o-<hash>``,
    ``音`` -> ``preset-<hash>``, ``a b`` and ``a-b`` apart)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", plain).strip("-")
    if slug == text:
        return slug
    return f"{slug or 'preset'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def path_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened, in words that name it ("... does not exist", "... is a
    symbolic link that loops", "...: part of this path is a file, not a folder"); None where it can."""
    try:
        os.stat(path)
    except OSError as err:
        err.filename, err.filename2 = str(path), None
        return os_error_line(err)
    return None


def write_sound(
    path: str | Path,
    audio,
    sample_rate: int,
    *,
    subtype: str | None = None,
    format: str | None = None,  # noqa: A002  (soundfile's word)
    shown: str | Path | None = None,
) -> None:
    """``soundfile.write`` to a path (never to an open file: there a full disk is an
    ``AssertionError`` in a callback). libsndfile reports a full disk as "System error." without
    the cause; this says it: an ``ASPError`` naming the file (``shown``, default ``path``: the
    user's file where ``path`` is a temp one) and, when it is out of space, its disk.

    Args:
        format, subtype: as ``soundfile.write`` (default: from the file name's suffix).
    """
    try:
        sf.write(path, audio, sample_rate, subtype=subtype, format=format)
    except (sf.LibsndfileError, OSError) as err:  # LibsndfileError is a RuntimeError
        name = str(shown or path)
        code = err.errno if isinstance(err, OSError) else None
        if code is None:
            try:
                disk = os.statvfs(Path(path).parent)
                if disk.f_bavail * disk.f_frsize < getattr(audio, "nbytes", 0) + (1 << 20):
                    code = errno.ENOSPC
            except OSError:
                pass
        if code is not None:
            raise ASPError(os_error_line(OSError(code, os.strerror(code), name))) from None
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ASPError(f"cannot write sound file {name} ({reason})") from None


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
    ``path`` is deleted. Temp folders of killed writers are removed first. An ``OSError`` or
    ``ASPError`` that names a file in the temp folder is made to name it in ``path``.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):  # the current folder, a parent or the root: not a folder to swap
        raise ASPError(
            f"cannot write {path} as a new folder (it is an existing folder above); name one in it, e.g. {path / 'out'}"
        )
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
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            for key in ("filename", "filename2"):
                if getattr(err, key) and str(getattr(err, key)).startswith(str(tmp)):
                    setattr(err, key, str(path) + str(getattr(err, key))[len(str(tmp)) :])
        elif isinstance(err, ASPError) and err.args and isinstance(err.args[0], str):
            err.args = (err.args[0].replace(str(tmp), str(path)), *err.args[1:])
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


# ---------------------------------------------------------------------------------------
# outputs: never replace what the toolkit did not write

WRITTEN = ".asp-written.json"  # in each folder the commands write into: {name: digest of what was written}
OVERWRITE_FLAG = "--overwrite"


def file_sha256(path: str | Path) -> str:
    """A file's sha256, hex (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _digest(path: Path) -> str:
    """A file's sha256, or a folder's: of its files' relative names and contents (symbolic links
    by their target), so that anything changed, added or removed since it was written shows."""
    if path.is_file() and not path.is_symlink():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")) if path.is_dir() and not path.is_symlink() else [path]:
        h.update(str(p.relative_to(path) if p != path else ".").encode() + b"\0")
        if p.is_symlink():
            h.update(b"link:" + os.readlink(p).encode())
        elif p.is_file():
            h.update(_digest(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def _written(folder: Path) -> dict:
    try:
        data = read_json(folder / WRITTEN, "record of written files")
    except ASPError:
        return {}
    return data if isinstance(data, dict) else {}


def is_ours(path: str | Path) -> bool:
    """Whether ``path`` (a file or a folder) is as a command of this toolkit wrote it: recorded in
    its folder's ``.asp-written.json`` with the same contents (a user's edit since makes it theirs)."""
    path = Path(path)
    recorded = _written(path.parent).get(path.name)
    return isinstance(recorded, str) and (path.exists() or path.is_symlink()) and recorded == _digest(path)


def check_outputs(paths, *, overwrite: bool = False, flag: str = OVERWRITE_FLAG) -> None:
    """Refuses, before any work, to replace a file or folder the toolkit did not write: each of
    ``paths`` that exists must be one a command wrote (``is_ours``), unless ``overwrite`` (the user
    said ``--overwrite``). One line names the first one in the way and the two ways out.

    Raises:
        ASPError: a path exists and is not ours.
    """
    if overwrite:
        return
    for path in map(Path, paths):
        if (path.exists() or path.is_symlink()) and not is_ours(path):
            kind = "folder" if path.is_dir() else "file"
            raise ASPError(
                f"{path} already exists and was not written by this toolkit (or was changed since); nothing was "
                f"changed: move the {kind} away, choose another output path, or give {flag} to replace it"
            )


def mark_written(*paths: str | Path) -> None:
    """Records files or folders a command just wrote as the toolkit's (``check_outputs`` lets a
    later run replace them), in ``.asp-written.json`` of their folders."""
    by_folder: dict[Path, list[Path]] = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, []).append(path)
    for folder, items in by_folder.items():
        record = _written(folder)
        record = {k: v for k, v in record.items() if (folder / k).exists()}
        record.update({p.name: _digest(p) for p in items})
        write_json(folder / WRITTEN, record)


@contextmanager
def output_path(path: str | Path, *, overwrite: bool = False, suffix: str = "") -> Iterator[Path]:
    """``atomic_path`` for a command's output file: refused (``check_outputs``) where ``path`` is a
    file the toolkit did not write, recorded as written (``mark_written``) once it is whole."""
    check_outputs([path], overwrite=overwrite)
    with atomic_path(path, suffix=suffix) as tmp:
        yield tmp
    mark_written(path)
