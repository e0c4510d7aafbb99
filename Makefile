.PHONY: install install-dev install-browser run test lint bench bench-gateway
# Set-up commands of the README. Everything lands in .venv (Python packages), .pgdata (embedded
# PostgreSQL; as root /var/lib/routerhub-pg/), .redis (embedded Redis) and .run (logs, demo credentials,
# the development secret key, the Redis password) — all git-ignored.

install:
	scripts/install.sh

install-dev:
	scripts/install.sh --dev

# Debian's chromium for the dashboard's browser tests (skipped, with the reason, where it cannot be had).
install-browser:
	scripts/install_browser.sh

run: install
	scripts/run.sh

# Lint and format check first (seconds), then the whole suite against real PostgreSQL + pgvector,
# one pytest worker per core (at most 4; each has its own test database), a test file per worker at a time.
test: install-dev install-browser lint
	.venv/bin/python -m pytest -n auto --maxprocesses 4 --dist loadfile

lint: install-dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench: install
	scripts/bench.sh

# The gateway against a fake upstream, and LiteLLM's proxy in the same run (benchmarks/gateway_load.py;
# LiteLLM is installed into benchmarks/.venv-litellm on first use). Needs a fitted router for routerhub-auto.
bench-gateway: install
	nice -n 10 .venv/bin/python benchmarks/gateway_load.py --out benchmarks/results/gateway_load.md
