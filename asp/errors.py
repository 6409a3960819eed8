"""The project's error type, and an OSError as the one line a command prints.

Nothing heavy is imported here, so any module may use it.

    ASPError        a problem with the user's input or files; its message says what to do
    os_error_line   an OSError as one line: what happened, to which path, what to free or fix
    RESTORE_SHIPPED the fix for a damaged file of the shipped pretrained model
"""

from __future__ import annotations

import errno
import re


class ASPError(ValueError):
    """A problem with the user's input: the message says what was wrong and what to do."""


RESTORE_SHIPPED = "git checkout -- saved_models/pretrained"  # the fix for a damaged file of the shipped model


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
    errno.ELOOP: "{path} is a symbolic link that loops (it leads back to itself); fix or remove the link",
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
