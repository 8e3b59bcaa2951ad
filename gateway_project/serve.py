"""The web process: uvicorn (uvloop + httptools) with a drain on SIGTERM.

    python -m gateway_project.serve --host 0.0.0.0 --port 8000 --workers 4

On SIGTERM (or a first Ctrl-C) a worker *drains*: ``/readyz`` answers 503 at
once so the load balancer stops sending, the listening socket stays open for
``GATEWAY_DRAIN_DELAY_SECONDS`` (the chart's ``preStop`` delay, while
endpoints are updated) and then closes, requests and streams in flight run
to their end for up to ``GATEWAY_SHUTDOWN_GRACE_SECONDS``, the usage buffer
is flushed, and the process exits 0. With several workers a small supervisor
binds the socket, restarts a worker that dies, and passes SIGTERM on to every
worker; the workers share their metrics through ``GATEWAY_METRICS_DIR``
(a fresh temporary directory when unset).
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import uvicorn

from gateway_project.environment import env
from gateway_project.http_limits import GuardedHttpToolsProtocol
from proxy import drain

logger = logging.getLogger("gateway.serve")

APPLICATION = "gateway_project.asgi:application"
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
FORCED_EXIT_SECONDS = 5.0


def drain_delay() -> float:
    from django.conf import settings

    return settings.GATEWAY_DRAIN_DELAY_SECONDS


def shutdown_grace() -> float:
    from django.conf import settings

    return settings.GATEWAY_SHUTDOWN_GRACE_SECONDS


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains on its first exit signal and exits 0."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_deadline is not None:
            # A second signal: stop waiting for the delay; a third stops waiting
            # for connections, and the process is gone a few seconds later
            # whatever it was doing.
            if self.should_exit and not self.force_exit:
                self.force_exit = True
                timer = threading.Timer(FORCED_EXIT_SECONDS, os._exit, args=(1,))
                timer.daemon = True
                timer.start()
            self.should_exit = True
            return
        drain.begin_drain()
        self.drain_deadline = time.monotonic() + drain_delay()
        logger.info("draining: readiness off, closing the socket in %.1fs", drain_delay())

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn re-raises the signal after shutdown (the process then dies of
        # it); a drained gateway has done what SIGTERM asks and exits 0.
        original = {sig: signal.signal(sig, self.handle_exit) for sig in EXIT_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _config(args: argparse.Namespace) -> uvicorn.Config:
    return uvicorn.Config(
        APPLICATION,
        host=args.host,
        port=args.port,
        loop="uvloop",
        # httptools, with deadlines and a size limit on what clients send.
        http=GuardedHttpToolsProtocol,
        access_log=False,  # the gateway writes its own (proxy.access_log)
        log_config=None,  # Django's LOGGING formats every logger
        log_level=args.log_level,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=int(shutdown_grace()),
        timeout_keep_alive=args.timeout_keep_alive,
        server_header=False,  # no "server: uvicorn": the software is nobody's business
    )


def _worker(config: uvicorn.Config, sock: socket.socket) -> None:
    """A worker process: serve on the supervisor's socket."""
    config.configure_logging()  # a spawned process starts with none
    DrainingServer(config).run(sockets=[sock])


class Supervisor:
    """Runs ``count`` workers on one socket; SIGTERM drains them all."""

    def __init__(self, config: uvicorn.Config, count: int) -> None:
        self.config = config
        self.count = count
        self.stopping = False
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[multiprocessing.process.BaseProcess] = []

    def _start(self, sock: socket.socket) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(target=_worker, args=(self.config, sock), daemon=False)
        process.start()
        return process

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        first = not self.stopping
        self.stopping = True
        for process in self.workers:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)
        if first:
            logger.info("draining %d workers", len(self.workers))

    def run(self) -> int:
        sock = self.config.bind_socket()
        for sig in EXIT_SIGNALS:
            signal.signal(sig, self._stop)
        self.workers = [self._start(sock) for _ in range(self.count)]
        while not self.stopping:
            for index, process in enumerate(self.workers):
                if process.exitcode is not None and not self.stopping:
                    logger.warning(
                        "worker %s exited (%s); starting another", process.pid, process.exitcode
                    )
                    self.workers[index] = self._start(sock)
            time.sleep(0.2)
        # The workers keep the socket open while they drain; ours goes now.
        sock.close()
        deadline = time.monotonic() + drain_delay() + shutdown_grace() + 10
        for process in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
        failed = 0
        for process in self.workers:
            if process.exitcode is None:
                logger.error("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
            if process.exitcode != 0:
                failed += 1
        return 1 if failed else 0


def _fresh_metrics_directory(workers: int) -> Path | None:
    """The workers' shared metrics directory, emptied (totals of an earlier
    server must not count again); a temporary one for several workers when
    none is configured. Returns the temporary one, to remove at exit."""
    value = env("GATEWAY_METRICS_DIR", "")
    if not value and workers == 1:
        return None  # one process keeps its totals in memory
    path = Path(value) if value else Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for item in path.iterdir():
        if item.is_file() and item.name.startswith(("gateway-", ".tmp-")):
            item.unlink(missing_ok=True)
    os.environ["GATEWAY_METRICS_DIR"] = str(path)  # the spawned workers read it
    return None if value else path


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m gateway_project.serve")
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env("PORT", "8000") or 8000))
    parser.add_argument(
        "--workers", type=int, default=int(env("WEB_CONCURRENCY", "1") or 1), help="processes"
    )
    parser.add_argument(
        "--log-level", default=(env("LOG_LEVEL", "info") or "info").lower(), help="uvicorn's"
    )
    parser.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read the client address from X-Forwarded-For of --forwarded-allow-ips (default)",
    )
    parser.add_argument("--forwarded-allow-ips", default=env("FORWARDED_ALLOW_IPS", "127.0.0.1"))
    parser.add_argument("--timeout-keep-alive", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = _config(args)
    temporary = _fresh_metrics_directory(args.workers)
    try:
        if args.workers > 1:
            return Supervisor(config, args.workers).run()
        server = DrainingServer(config)
        server.run()
        return 0 if server.started else 3
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
