import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAIN_POSTGRES_URL = os.environ.get("PLAIN_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def plain_postgres_without_pgvector() -> bool:
    try:
        with psycopg.connect(PLAIN_POSTGRES_URL, connect_timeout=2) as conn:
            return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None
    except psycopg.Error:
        return False


@pytest.mark.skipif(
    not plain_postgres_without_pgvector(), reason="needs a PostgreSQL without pgvector at PLAIN_POSTGRES_URL"
)
def test_startup_fails_naming_the_missing_vector_extension():
    env = {**os.environ, "DATABASE_URL": PLAIN_POSTGRES_URL}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "registry.E002" in result.stderr and "'vector' extension" in result.stderr


def test_database_url_is_parsed_including_socket_hosts():
    from routerhub.embedded import database_from_url

    parsed = database_from_url("postgresql://u:p%40ss@db.example:6543/routing?sslmode=require")
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"], parsed["PORT"], parsed["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "routing",
    )
    assert parsed["OPTIONS"] == {"sslmode": "require"}
    assert database_from_url("postgresql:///routing?host=/run/pg")["HOST"] == "/run/pg"
    with pytest.raises(ValueError, match="postgresql://"):
        database_from_url("mysql://x/y")
