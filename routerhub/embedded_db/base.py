"""``routerhub.embedded_db``: Django's PostgreSQL backend, with the server started on first use."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from django.db.backends.postgresql import base as postgresql

_attached: dict[str, tuple[int, str]] = {}  # data folder → (pid that attached, socket folder of its server)
_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be released


os.register_at_fork(after_in_child=_reset_after_fork)


def socket_dir_of(data_dir: str) -> str:
    """Start (or attach to) the embedded server in ``data_dir``; its socket folder.

    Once per process, forked ones included (Celery's pool, uvicorn's workers): each registers as a
    user of the server itself, so the server stays up exactly as long as one of them is alive.
    """
    entry = _attached.get(data_dir)
    if entry and entry[0] == os.getpid():
        return entry[1]
    with _lock:
        entry = _attached.get(data_dir)
        if not entry or entry[0] != os.getpid():
            from routerhub.embedded import start_embedded_postgres

            entry = _attached[data_dir] = (os.getpid(), start_embedded_postgres(Path(data_dir))["HOST"])
        return entry[1]


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self):
        self.settings_dict["HOST"] = socket_dir_of(self.settings_dict["DATA_DIR"])
        return super().get_connection_params()
