"""Files that hold secrets (the demo's admin password and API key, the development secret key, the
embedded Redis's password): readable by their owner only."""

from __future__ import annotations

import os
import secrets
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


def private_token(path: Path, nbytes: int = 32) -> str:
    """The random secret kept in ``path`` (0600, hex), made the first time it is asked for.

    Processes asking at the same moment get the same token: each writes its own candidate and links
    it into place, and the first link wins. The file never exists half-written.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        candidate = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            os.link(write_private(candidate, secrets.token_hex(nbytes) + "\n"), path)
        except FileExistsError:
            pass
        finally:
            candidate.unlink(missing_ok=True)
    return path.read_text().strip()
