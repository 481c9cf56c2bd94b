"""Where the command line writes its results: ``-`` is standard output; a regular file (or a new
one) is written beside itself and renamed over, so a reader never sees half of it; anything else
(a pipe, a FIFO, a device such as /dev/null, a symbolic link) is written in place, because a rename
would replace it with a regular file (as root, /dev/null itself)."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path


def replaces_atomically(output: str | os.PathLike) -> bool:
    """Whether ``output`` is written by write-to-temp-and-rename: only a regular file, or a path
    where nothing is yet. Not ``-``, a FIFO, a device, a socket, a directory or a symbolic link."""
    if str(output) == "-":
        return False
    try:
        mode = os.lstat(output).st_mode
    except FileNotFoundError:
        return True
    return stat.S_ISREG(mode)


def write_output(text: str, output: str | os.PathLike) -> None:
    """``text`` to ``output`` (see the module's docstring for how)."""
    if str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = Path(output)
    if not replaces_atomically(target):
        with open(target, "w") as fh:
            fh.write(text)
        return
    fd, tmp = tempfile.mkstemp(dir=target.parent if str(target.parent) else ".", prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
