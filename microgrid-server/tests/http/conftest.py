"""Fixtures of the HTTP tests: the `serve` example started on a loopback
port, on `memory:` and on PostgreSQL (a schema of its own per server).

scripts/test-http builds the example and runs these tests; the binary is
found through MICROGRID_SERVE_BIN, else in the cargo target directory.
Nothing here skips: a missing binary, database or browser fails the run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[3]


def serve_binary() -> Path:
    explicit = os.environ.get("MICROGRID_SERVE_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        path = target / "debug" / "examples" / "serve"
    if not path.is_file():
        pytest.fail(
            f"the serve example is not built ({path}): run ./scripts/test-http, "
            "or cargo build --example serve --features server,postgres"
        )
    return path


def postgres_url() -> str:
    url = os.environ.get("MICROGRID_TEST_POSTGRES_URL")
    if not url:
        # Database tests never skip: without the server the run fails.
        pytest.fail("MICROGRID_TEST_POSTGRES_URL is not set: run ./scripts/databases run -- ./scripts/test-http")
    joint = "&" if "?" in url else "?"
    return f"{url}{joint}schema=http_{uuid.uuid4().hex[:12]}"


@dataclass
class Server:
    """A running `serve`: its base URL, the keys it printed and its output."""

    store: str
    base: str
    operator_key: str
    prosumer_key: str
    prosumer_id: str
    start: str
    end: str
    process: subprocess.Popen
    output: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, key: str | None = None, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def log(self) -> str:
        return "".join(self.output[-200:])


# What `serve` prints: the page's URL with a key and the month, the keys.
_URL = re.compile(r"(http://127\.0\.0\.1:\d+)/[?#]key=([^&\s]+)&start=([0-9-]+)&end=([0-9-]+)")
_OPERATOR = re.compile(r"operator key\W*([A-Za-z0-9_\-.~+/=]{16,})", re.I)
_PROSUMER = re.compile(r"prosumer key\b(?:\s+for\s+|\s*\(|\s*)([^\s:)]*)\)?\W*([A-Za-z0-9_\-.~+/=]{16,})", re.I)
_LISTEN = re.compile(r"(http://127\.0\.0\.1:\d+)")


def start_server(store: str, args: list[str] | None = None, timeout: float = 300.0) -> Server:
    """Starts `serve` on `store` at 127.0.0.1 on a port the system picks and
    waits until it printed its keys and answers /healthz."""
    cmd = [str(serve_binary()), store, "--listen", "127.0.0.1:0", *(args or [])]
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    output: list[str] = []
    seen = threading.Event()

    def pump():
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            seen.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        text = "".join(output)
        if (m := _URL.search(text)) and "page" not in found:
            found.update(page="1", base=m.group(1), page_key=m.group(2), start=m.group(3), end=m.group(4))
        if (m := _OPERATOR.search(text)) and "operator" not in found:
            found["operator"] = m.group(1)
        if (m := _PROSUMER.search(text)) and "prosumer" not in found:
            found["prosumer_id"], found["prosumer"] = m.group(1), m.group(2)
        if "base" not in found and (m := _LISTEN.search(text)):
            found["base"] = m.group(1)
        if {"page", "operator", "prosumer"} <= found.keys():
            try:
                if requests.get(found["base"] + "/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}:\n{''.join(output)}")
        seen.wait(0.2)
        seen.clear()
    else:
        proc.kill()
        raise AssertionError(f"serve did not start within {timeout} s:\n{''.join(output)}")
    server = Server(
        store=store,
        base=found["base"],
        operator_key=found["operator"],
        prosumer_key=found["prosumer"],
        prosumer_id=found.get("prosumer_id", ""),
        start=found["start"],
        end=found["end"],
        process=proc,
        output=output,
    )
    if not server.prosumer_id:
        me = server.request("GET", "/api/v1/me", server.prosumer_key).json()
        server.prosumer_id = me["prosumer"]
    return server


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session", params=["memory", "postgres"])
def server(request):
    """`serve` with a simulated month (a fixed one, September 2026, so that
    the day after it, which the tests record and clear, is always past), on
    memory and on PostgreSQL."""
    store = "memory:" if request.param == "memory" else postgres_url()
    srv = start_server(store, ["--simulate", "6", "--month", "2026-09"])
    yield srv
    stop_server(srv)


def chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: run ./scripts/test-http as root (it installs it with apt-get) or apt-get install chromium")
    return path


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """Where the browser tests keep their screenshots (git-ignored)."""
    path = Path(os.environ.get("MICROGRID_HTTP_SCREENSHOTS", ROOT / "target" / "http-screenshots"))
    path.mkdir(parents=True, exist_ok=True)
    return path
