.PHONY: install run test bench
# Set-up commands of the README. Everything lands in .venv (Python packages), .pgdata (embedded
# PostgreSQL), .redis (embedded Redis) and .run (logs, demo credentials) — all git-ignored.

install:
	scripts/install.sh

run: install
	scripts/run.sh

test: install
	.venv/bin/python -m pytest

bench: install
	scripts/bench.sh
