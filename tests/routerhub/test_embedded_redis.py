"""The embedded Redis of `make run`: a password (kept out of every command line), no CONFIG, MODULE or
DEBUG even with it, private files, and an append-only file so that a queued task survives a restart."""

from __future__ import annotations

import secrets
import stat
import subprocess

import psutil
import pytest
import redis

from routerhub.embedded import redis_config, redis_server_command, redis_url, wait_for_redis
from tests.processes.workers import free_port, stop_process


def start(data_dir, port, password) -> subprocess.Popen:
    process = subprocess.Popen(
        redis_server_command(redis_config(data_dir, port, password)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert wait_for_redis(redis_url(port, password)), "redis-server did not answer"
    return process


@pytest.fixture
def server(tmp_path):
    data_dir, port, password = tmp_path / "redis", free_port(), secrets.token_hex(32)
    process = start(data_dir, port, password)
    yield data_dir, port, password, process
    stop_process(process)


def test_commands_need_the_password_and_config_module_debug_are_refused_even_with_it(server):
    data_dir, port, password, process = server
    anonymous = redis.Redis(port=port, socket_timeout=5)
    for command in (("PING",), ("LPUSH", "celery", "{}"), ("KEYS", "*"), ("CONFIG", "SET", "dir", "/tmp"), ("SAVE",)):
        with pytest.raises(redis.AuthenticationError):
            anonymous.execute_command(*command)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password=secrets.token_hex(32), socket_timeout=5).ping()

    trusted = redis.Redis.from_url(redis_url(port, password), socket_timeout=5)
    assert trusted.ping() and trusted.lpush("celery", "{}") == 1
    for command in (
        ("CONFIG", "SET", "dir", "/tmp"),
        ("CONFIG", "GET", "*"),
        ("MODULE", "LOAD", "/tmp/x.so"),
        ("DEBUG", "SLEEP", "0"),
    ):
        with pytest.raises(redis.ResponseError, match="unknown command"):
            trusted.execute_command(*command)

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "redis.conf").stat().st_mode) == 0o600
    assert password in (data_dir / "redis.conf").read_text()
    assert password not in " ".join(psutil.Process(process.pid).cmdline())


def test_a_queued_message_survives_a_restart_of_the_embedded_redis(server):
    data_dir, port, password, process = server
    redis.Redis.from_url(redis_url(port, password)).lpush("celery", b'{"task": "routing.profile_llm", "id": "42"}')
    stop_process(process)
    process = start(data_dir, port, password)
    try:
        assert redis.Redis.from_url(redis_url(port, password)).lrange("celery", 0, -1) == [
            b'{"task": "routing.profile_llm", "id": "42"}'
        ]
        assert (data_dir / "appendonly.aof").exists()
    finally:
        stop_process(process)
