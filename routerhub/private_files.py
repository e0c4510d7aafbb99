"""Files that hold secrets (the demo's admin password and API key): readable by their owner only."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 from the moment the file exists.

    ``Path.write_text`` followed by ``chmod`` would leave the secret world-readable (umask 022) for
    a moment, and for good if the process died in between; an existing file is narrowed to 0600
    before anything is written into it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the mode of os.open applies to new files only
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    return path
