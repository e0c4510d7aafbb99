"""The first `make run` of a fresh clone, timed as a newcomer would live it.

    .venv/bin/python benchmarks/first_run.py [--clone /tmp/routerhub-first-run] [--port 18000] [--redis-port 16399]
        [--timeout 1800] [--out benchmarks/results/first_run.md]

Clones this repository's committed HEAD into a new folder (no .venv, .pgdata, .models), runs
`make run` there on its own web and Redis ports, timestamps every line it prints, and once the demo's
`curl` example is printed, runs that very command until it answers with a routing decision. Reports
the time of each phase and the headline figure: from the end of the package install ("Python
packages installed.") to the printed curl working. Stops the service (Ctrl-C, as a user would) and
leaves the clone for inspection.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL_DONE = "Python packages installed."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clone", type=Path, default=Path("/tmp/routerhub-first-run"))
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--redis-port", type=int, default=16399)
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    if args.clone.exists():
        shutil.rmtree(args.clone)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(args.clone)], check=True)
    commit = subprocess.run(
        ["git", "-C", str(args.clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ROUTERHUB_EMBEDDER", "VIRTUAL_ENV")
    }
    env.update({"ROUTERHUB_PORT": str(args.port), "ROUTERHUB_REDIS_PORT": str(args.redis_port)})
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "run"],
        cwd=args.clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[tuple[float, str]] = []
    curl: list[str] = []
    done = threading.Event()

    def read() -> None:
        take_next = False
        for line in process.stdout:
            line = line.rstrip("\n")
            lines.append((time.monotonic() - started, line))
            print(f"{lines[-1][0]:7.1f}  {line}", flush=True)
            if take_next and line.strip().startswith("curl "):
                curl.append(line.strip())
                take_next = False
            take_next = take_next or line.strip() == "Try:"
        done.set()

    threading.Thread(target=read, daemon=True).start()
    answered_at, answer = None, None
    try:
        while time.monotonic() - started < args.timeout and not done.is_set():
            if curl:
                result = subprocess.run(["bash", "-c", curl[0]], capture_output=True, text=True, timeout=30)
                if result.returncode == 0 and '"decision_id"' in result.stdout:
                    answered_at, answer = time.monotonic() - started, json.loads(result.stdout)
                    break
            time.sleep(0.25)
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)

    install_done = next((t for t, line in lines if line.strip() == INSTALL_DONE), None)
    report = [
        f"First `make run` in a fresh clone of commit {commit} (`benchmarks/first_run.py`), "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| seconds since `make run` | line |",
        "| --- | --- |",
        *(f"| {t:.1f} | {line.replace('|', '/')} |" for t, line in lines if _milestone(line)),
        "",
    ]
    if answered_at is None:
        report.append(f"The printed curl did not answer within {args.timeout:.0f} s.")
    else:
        chosen = answer.get("llm", {}).get("name") if isinstance(answer.get("llm"), dict) else answer.get("llm")
        report.append(f"The printed curl answered (routed to {chosen}) {answered_at:.1f} s after `make run` started.")
        if install_done is not None:
            report.append(
                f"**From the end of the package install to the curl answering: {answered_at - install_done:.1f} s.**"
            )
    text = "\n".join(report)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    sys.exit(0 if answered_at is not None else 1)


def _milestone(line: str) -> bool:
    keep = (
        "Installing",
        INSTALL_DONE,
        "Building",
        "built",
        "Embedded Redis",
        "Checking",
        "Operations to perform",
        "Collecting",
        "Reading",
        "embeddings taken",
        "MISMATCH",
        "Embedding",
        "Writing",
        "Building the nearest",
        "Committing",
        "Imported",
        "Loading",
        "Fitting",
        "fitted",
        "Routing state",
        "Starting",
        "routerhub is running",
        "done in",
    )
    return line.strip().startswith(keep) or any(k in line for k in ("embeddings taken", "MISMATCH", "not used"))


if __name__ == "__main__":
    main()
