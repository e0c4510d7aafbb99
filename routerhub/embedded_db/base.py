"""``routerhub.embedded_db``: Django's PostgreSQL backend, with the server started on first use."""

from __future__ import annotations

import threading
from pathlib import Path

from django.db.backends.postgresql import base as postgresql

_started: dict[str, str] = {}  # data folder → socket folder of its running server
_lock = threading.Lock()


def socket_dir_of(data_dir: str) -> str:
    """Start (or attach to) the embedded server in ``data_dir``, once per process; its socket folder."""
    with _lock:
        if data_dir not in _started:
            from routerhub.embedded import start_embedded_postgres

            _started[data_dir] = start_embedded_postgres(Path(data_dir))["HOST"]
        return _started[data_dir]


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self):
        if not self.settings_dict.get("HOST"):
            self.settings_dict["HOST"] = socket_dir_of(self.settings_dict["DATA_DIR"])
        return super().get_connection_params()
