"""Real processes for the tests: the mock provider and gateway servers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, with its children (workers)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    # Children that outlived their parent (a worker of a killed supervisor).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class MockProviderProcess:
    """The project's mock provider in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy.mock_provider",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)
        self.control = httpx.Client(base_url=self.url, timeout=10)

    def reset(self) -> None:
        self.control.post("/_mock/reset").raise_for_status()

    def add_rule(self, **rule: Any) -> None:
        self.control.post("/_mock/rules", json=rule).raise_for_status()

    def requests(self, limit: int = 100) -> list[dict[str, Any]]:
        response = self.control.get("/_mock/requests", params={"limit": limit})
        response.raise_for_status()
        return response.json()["requests"]

    def request_count(self) -> int:
        return self.control.get("/_mock/stats").json()["requests"]

    def close(self) -> None:
        self.control.close()
        stop(self.process)


class GatewayProcess:
    """A real gateway server (``gateway_project.serve``: uvicorn) on the tests' database."""

    # The log file of every gateway process this test run started.
    logs: ClassVar[list[Path]] = []

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = ROOT / "var" / f"gateway-test-{self.port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        GatewayProcess.logs.append(self.log_path)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway_project.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_for_revision(self, revision: str | None, timeout: float = 15.0) -> None:
        """Block until the gateway serves configuration ``revision``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.client.get("/readyz").json()
            if body.get("config_revision") == revision:
                return
            time.sleep(0.05)
        raise TimeoutError(f"the gateway did not load revision {revision}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.client.close()
        stop(self.process)
        self._log.close()


class RedisServerProcess:
    """A Redis server of the test's own, to stop and start again (with an
    append-only file, as a production server keeps its data over a restart)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it writes what it holds, then exits)."""
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=15)

    def freeze(self) -> None:
        """The server stops answering but keeps its connections (SIGSTOP)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)
            stop(self.process)
