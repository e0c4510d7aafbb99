"""What the load benchmarks share: loopback ports, the processes they start, their HTTP client, the
machine they ran on, the Server-Timing header they read, and where their report goes. Imported by the scripts beside it (run as ``python benchmarks/X.py``)."""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, with its children (web workers)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


def publish(report: str, out: Path | None) -> None:
    """Print the report and, with ``--out``, write it there too."""
    print(report)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)


def server_timing(header: str) -> dict[str, tuple[float, str]]:
    """A ``Server-Timing`` header as {metric: (dur in ms, desc)}; a malformed entry is skipped."""
    timings = {}
    for metric in filter(None, (m.strip() for m in header.split(","))):
        name, *params = [p.strip() for p in metric.split(";")]
        values = dict(p.split("=", 1) for p in params if "=" in p)
        try:
            timings[name] = (float(values.get("dur", "nan")), values.get("desc", "").strip('"'))
        except ValueError:
            continue
    return timings


class Connection:
    """One keep-alive HTTP/1.1 connection: a client of the benchmark.

    Not httpx: on this 2-core machine a shared ``httpx.AsyncClient`` itself added ~0.26 s at the
    median to 1 s calls at 50 clients, and held 500 two-second streams for ~19 s each, using more CPU
    than the servers measured (its pool and h11 parser are pure Python; one client per connection
    costs an SSL context each). This one reads a status line, headers and a Content-Length or chunked
    body, and nothing else, so what it measures is the servers'."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port or 80, parts.path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, headers: dict[str, str], body: bytes, on_first_data=None) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        try:
            head = f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status_line, *lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(status_line.split(" ", 2)[1])
            response_headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
            }
            if response_headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    if size == 0:
                        await self.reader.readuntil(b"\r\n")  # no trailers are sent: the last empty line
                        break
                    parts.append((await self.reader.readexactly(size + 2))[:-2])
                    if on_first_data is not None and len(parts) == 1:
                        on_first_data()
                data = b"".join(parts)
            elif "content-length" in response_headers:
                data = await self.reader.readexactly(int(response_headers["content-length"]))
            else:
                data = await self.reader.read()
                response_headers["connection"] = "close"
        except BaseException:
            self.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            self.close()
        return status, response_headers, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
