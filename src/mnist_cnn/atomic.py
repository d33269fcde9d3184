"""Write files so that a crash, a kill, a full disk or a power cut never leaves a half-written one in
place of a good one, nor a temporary file behind."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Written to a temporary file beside `path`, flushed to disk, renamed over `path`, and the folder
    flushed too. A failed write removes its temporary file, leaves any previous `path` as it was and
    raises OSError naming `path` (its strerror says why, e.g. "No space left on device")."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself reaches the disk
    finally:
        os.close(folder)
