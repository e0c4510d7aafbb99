"""The keeper of an embedded PostgreSQL server: it runs the server and stops it once no process that
uses it is alive.

Every process that uses the server is listed in a state file in the data folder, by pid and start
time. The keeper looks at the list twice a second and stops the server (a fast shutdown) as soon as
none of them is alive — however they ended: a normal exit, SIGKILL, or ``os._exit`` without exit
handlers (Celery's pool processes, pytest-xdist workers). A pid that is gone, a zombie, or a pid now
used by another process keeps nothing running.

``routerhub.embedded_db.server`` starts the keeper in a session of its own: a signal to the process
group of what started it (Ctrl-C, ``kill -TERM -- -PGID``) does not reach it, and it stops the
server once those processes are gone. SIGTERM to the keeper itself stops the server at once.

The keeper runs as a script (``python keeper.py``), with the standard library and psutil only: a
process that lives as long as the server should not import Django or Celery. The server module
imports the state helpers below from here.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

STATE_FILE = ".routerhub-server.json"
LOCK_FILE = ".routerhub-server.lock"
LOG_FILE = "log"
POLL_SECONDS = 0.5
FAST_SHUTDOWN_SECONDS = 10  # then an immediate shutdown (SIGQUIT), then SIGKILL
STARTED_TOLERANCE_SECONDS = 1.0


# --- what the keeper and the processes that use the server share -----------------------------------
def process_entry(pid: int | None = None) -> list:
    """[pid, start time] of a process: the pair names it even after its pid is reused."""
    pid = os.getpid() if pid is None else pid
    return [pid, psutil.Process(pid).create_time()]


def same_process(entry, other) -> bool:
    return bool(entry and other) and entry[0] == other[0] and abs(entry[1] - other[1]) < STARTED_TOLERANCE_SECONDS


def is_alive(entry) -> bool:
    if not entry:
        return False
    try:
        process = psutil.Process(entry[0])
        return same_process(entry, [process.pid, process.create_time()]) and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@contextlib.contextmanager
def locked(data_dir: Path):
    """Hold the data folder's lock: registering a user, starting and stopping are done under it."""
    descriptor = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def read_state(data_dir: Path) -> dict:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text() or "{}")
    except (FileNotFoundError, json.JSONDecodeError):
        state = {}
    return {"keeper": state.get("keeper"), "users": list(state.get("users") or [])}


def write_state(data_dir: Path, state: dict) -> None:
    temporary = data_dir / f"{STATE_FILE}.{os.getpid()}"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle)
    os.replace(temporary, data_dir / STATE_FILE)


def running_postmaster(data_dir: Path) -> psutil.Process | None:
    """The server process named by ``postmaster.pid``, if it is running: not a zombie, and not another
    process that got the pid of a server that crashed (PostgreSQL works in its data folder)."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().splitlines()[0])
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()).resolve() == data_dir.resolve():
            return process
    except (OSError, ValueError, IndexError, psutil.Error):
        pass
    return None


# --- the keeper process ------------------------------------------------------------------------------
class Server:
    """The postmaster: the keeper's child, or one found running (a keeper killed before it could stop it)."""

    def __init__(self, *, child: subprocess.Popen | None = None, found: psutil.Process | None = None):
        self.child, self.found = child, found

    @property
    def pid(self) -> int:
        return self.child.pid if self.child else self.found.pid

    def running(self) -> bool:
        if self.child:
            return self.child.poll() is None
        try:
            return self.found.is_running() and self.found.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.running():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        for sig, seconds in ((signal.SIGINT, FAST_SHUTDOWN_SECONDS), (signal.SIGQUIT, 3), (signal.SIGKILL, 3)):
            if not self.running():
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
            if self.wait(seconds):
                return


def start_server(data_dir: Path, bin_dir: Path, socket_dir: Path, run_as: tuple[int, int] | None) -> Server:
    found = running_postmaster(data_dir)
    if found:
        return Server(found=found)
    log = open(data_dir / LOG_FILE, "ab")  # noqa: SIM115 (the child writes to it for its whole life)
    user = {"user": run_as[0], "group": run_as[1], "extra_groups": []} if run_as else {}
    child = subprocess.Popen(
        # No TCP (-h ""): only the unix socket, in a folder only the server's user can enter.
        [str(bin_dir / "postgres"), "-D", str(data_dir), "-h", "", "-k", str(socket_dir)],
        cwd=data_dir,
        env={"PATH": os.defpath, "LC_ALL": "C"},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        umask=0o077,
        **user,
    )
    log.close()
    return Server(child=child)


def keep(data_dir: Path, bin_dir: Path, socket_dir: Path, run_as: tuple[int, int] | None) -> int:
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stopping.append(True))
    me = process_entry()
    with locked(data_dir):
        if not same_process(read_state(data_dir)["keeper"], me):
            return 0  # another keeper is in charge
        server = start_server(data_dir, bin_dir, socket_dir, run_as)
    while True:
        time.sleep(POLL_SECONDS)
        with locked(data_dir):
            state = read_state(data_dir)
            if not same_process(state["keeper"], me):
                return 0
            users = [user for user in state["users"] if is_alive(user)]
            if users and server.running() and not stopping:
                if users != state["users"]:
                    write_state(data_dir, {**state, "users": users})
                continue
            # Nobody uses the server any more (or it ended, or the keeper was told to stop). The state
            # says no keeper runs before the lock is released: the next user starts a new one.
            write_state(data_dir, {"keeper": None, "users": users})
            server.stop()
            return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Run an embedded PostgreSQL server while its users live.")
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--socket-dir", type=Path, required=True)
    parser.add_argument("--run-as", help="uid:gid the server runs as (when the keeper runs as root)")
    args = parser.parse_args(argv)
    run_as = tuple(int(part) for part in args.run_as.split(":")) if args.run_as else None
    return keep(args.data_dir, args.bin_dir, args.socket_dir, run_as)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
