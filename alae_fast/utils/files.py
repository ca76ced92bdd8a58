"""Writing a file so that readers never see it half written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from typing import Any

__all__ = ["atomic_write"]


def _default_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", fsync: bool = False, **open_args: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; when the block ends without an error,
    give it the permissions a plain ``open()`` would (``mkstemp`` makes it private), optionally
    fsync it, and rename it over ``path``. On an error the temporary file is removed and
    ``path`` is untouched. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
