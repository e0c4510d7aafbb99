"""The embedded Redis of `make run` keeps an append-only file: a queued task survives a restart."""

from __future__ import annotations

import os
import signal
import socket
import time

import redis

from routerhub.embedded import start_embedded_redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(data_dir) -> None:
    pid = int((data_dir / "redis.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError("redis did not stop")


def test_a_queued_message_survives_a_restart_of_the_embedded_redis(tmp_path):
    data_dir, port = tmp_path / "redis", free_port()
    url = start_embedded_redis(data_dir, port)
    try:
        redis.Redis.from_url(url).lpush("celery", b'{"task": "routing.profile_llm", "id": "42"}')
    finally:
        stop(data_dir)
    url = start_embedded_redis(data_dir, port)
    try:
        assert redis.Redis.from_url(url).lrange("celery", 0, -1) == [b'{"task": "routing.profile_llm", "id": "42"}']
        assert (data_dir / "appendonly.aof").exists()
    finally:
        stop(data_dir)
