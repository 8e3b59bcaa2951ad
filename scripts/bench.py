"""The gateway's benchmark (``make bench``): throughput, latency, time to first token, memory.

Everything runs on this machine, against the project's own fast mock provider:

* the mock provider (``proxy.mock_provider --record-limit 0``) and the load generator share
  core 1; the gateway (uvicorn, uvloop, httptools) has core 0 to itself;
* closed loop: ``wrk -t1 -c16`` for ``--duration`` seconds;
* fixed rates (100, 500, 1,000 requests/s): wrk with a Lua ``delay()`` that hands out send
  slots on one global schedule (wrk2's constant rate without wrk2, which Debian lacks), so
  the offered load does not depend on the answers' latency;
* the gateway's added latency: the same fixed-rate runs straight against the mock in the
  same invocation, subtracted percentile by percentile;
* added time to first token: sequential streamed requests (aiohttp, one connection), through
  the gateway and straight to the mock;
* the gateway's CPU time per request (``/proc/PID/stat`` before and after each run) and its
  RSS (``VmRSS``) after the runs.

Scenarios: ``direct`` (the mock alone), ``embedded`` (one worker, in-process limits, a key
with a requests-per-minute limit, a tokens-per-minute limit and a daily budget), ``ungoverned``
(the same process, a key without any limit), ``cluster`` (limits in Redis under
``--redis-prefix``), ``workers2`` (``--workers 2``, see ``docs/performance.md`` for the method)
and, with ``--soak SECONDS``, a long closed-loop run that samples the RSS.

The state (SQLite database, secrets, logs) lives in ``--state-dir``, wiped at each start;
the results go to stdout as a table and to ``--output`` as JSON. The exit status is 1 when
any measured request failed, so a broken setup cannot pass for a fast one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
GATEWAY_CORES = "0"
LOAD_CORES = "1"
BOTH_CORES = "0,1"
CONNECTIONS = 16
RATES = (100, 500, 1000)
# Above this, a run shared the machine with someone else's work: its figures are suspect.
OTHER_CPU_WARNING_PCT = 15
RETRY_WAIT_SECONDS = 10
STATE_MARKER = ".bench-state"
SERVED_CODE = ("proxy", "governance", "keys", "gateway_project", "audit", "pyproject.toml")
CHAT_PATH = "/v1/chat/completions"
PROMPT = [{"role": "user", "content": "Hello! In one sentence, what does a gateway do?"}]
GATEWAY_MODEL = "gpt-4o-mini"  # the route's public name
MOCK_MODEL = "mock-gpt"  # what the route asks the mock for (priced in prices.yaml)

# Limits far above what one machine can reach, so nothing is ever refused but every
# counter is checked, taken and settled on each request.
BENCH_CONFIG = """\
version: 1
providers:
  - name: mock
    kind: openai
    base_url: {mock_url}/v1
    allow_private_network: true
    keys:
      - name: bench
        api_key_env: GATEWAY_BENCH_PROVIDER_KEY
routes:
  - name: {route}
    provider: mock
    model: {model}
customers:
  - name: bench
    teams:
      - name: bench-governed
        virtual_keys:
          - name: bench-governed
            secret_env: GATEWAY_BENCH_GOVERNED_KEY
            rate_limits:
              - {{metric: requests, limit: 1000000000, window_seconds: 60}}
              - {{metric: tokens, limit: 1000000000000, window_seconds: 60}}
            budgets:
              - {{amount: "1000000", period: 1d}}
      - name: bench-ungoverned
        virtual_keys:
          - name: bench-ungoverned
            secret_env: GATEWAY_BENCH_UNGOVERNED_KEY
"""

# One Django process for the whole setup (three manage.py runs cost a second each).
SETUP_CODE = """
import sys
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
call_command("load_prices", verbosity=0)
call_command("apply_config", sys.argv[1])
"""

# wrk's script: POST the body from the environment; with BENCH_RATE > 0, hand out send slots
# on one schedule shared by every connection (wrk's timers are whole milliseconds, so a send
# may leave up to 1 ms before its slot; the average rate is exact). ``done`` prints the
# summary as one JSON line, latencies in microseconds.
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH") or ""
if auth ~= "" then wrk.headers["Authorization"] = auth end

local rate = tonumber(os.getenv("BENCH_RATE") or "0")
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clk_id, bench_timespec *tp);
  ]]
  local ts = ffi.new("bench_timespec")
  local interval = 1000 / rate
  local slot = nil
  function delay()
    ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
    local now = tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
    if slot == nil then slot = now end
    slot = slot + interval
    if slot < now then return 0 end
    return slot - now
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d,'
    .. ' "mean_us": %.1f, "max_us": %d, "non2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max, e.status,
    e.connect + e.read + e.write + e.timeout))
end
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the machine -------------------------------------------------------------------------


def ensure_wrk() -> str:
    """wrk's path, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        sys.exit(
            "bench: wrk is not installed and cannot be installed here "
            "(needs root and apt-get); install it with: apt-get install -y wrk"
        )
    log("installing wrk from Debian's packages")
    installed = subprocess.run([apt, "install", "-y", "-q", "wrk"], capture_output=True)  # noqa: S603
    if installed.returncode != 0:
        subprocess.run([apt, "update", "-q"], capture_output=True)  # noqa: S603
        installed = subprocess.run([apt, "install", "-y", "-q", "wrk"], capture_output=True)  # noqa: S603
    found = shutil.which("wrk")
    if installed.returncode != 0 or found is None:
        sys.exit(
            "bench: `apt-get install -y wrk` failed:\n"
            + installed.stderr.decode(errors="replace")[-2000:]
        )
    return found


class Pinning:
    """``taskset`` prefixes, or none when the machine cannot pin (one core, no taskset)."""

    def __init__(self, enabled: bool) -> None:
        self.taskset = shutil.which("taskset")
        self.enabled = enabled and self.taskset is not None and (os.cpu_count() or 1) >= 2
        if enabled and not self.enabled:
            log("cannot pin to cores (needs taskset and two cores): running unpinned")

    def prefix(self, cores: str) -> list[str]:
        return [self.taskset, "-c", cores] if self.enabled and self.taskset else []

    def pin_self(self, cores: str) -> None:
        """Put this process (the TTFT client, the orchestration) on the load generator's core."""
        if self.enabled:
            os.sched_setaffinity(0, {int(core) for core in cores.split(",")})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process {process.args} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children (uvicorn's workers)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def machine_busy_seconds() -> float:
    """CPU time spent by everything on the machine so far (all cores, idle excluded)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def redis_server_pids() -> list[int]:
    """Local Redis servers: their CPU is part of a cluster-mode run, not interference."""
    pids = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                pids.append(int(entry.name))
    return pids


class Interference:
    """CPU used on the machine during a block by anything but the bench's own processes
    (and a local Redis server, counted apart)."""

    def __init__(self, own_pids: list[int]) -> None:
        self.own_pids = own_pids
        self.redis_pids = redis_server_pids()

    def __enter__(self) -> Interference:
        self.started = time.monotonic()
        self.busy = machine_busy_seconds()
        self.own = cpu_seconds(self.own_pids)
        self.redis = cpu_seconds(self.redis_pids)
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.started
        self.redis = cpu_seconds(self.redis_pids) - self.redis
        own = cpu_seconds(self.own_pids) - self.own
        self.other = machine_busy_seconds() - self.busy - own - self.redis

    def pct(self, also_own: float = 0.0) -> float:
        """Others' CPU in % of one core; ``also_own``: CPU of own processes not in the list."""
        return round(max(0.0, 100 * (self.other - also_own) / self.elapsed), 1)

    def redis_pct(self) -> float:
        return round(100 * self.redis / self.elapsed, 1)


def rss_mb(pid: int) -> float | None:
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


# --- state, mock provider, gateway -----------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any gateway setting, plus ``extra``."""
    dropped = ("GATEWAY_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(extra)
    return env


class State:
    """The bench's own state directory: SQLite database, secrets, config, logs."""

    def __init__(self, path: Path, redis_prefix: str, overrides: dict[str, str]) -> None:
        self.path = path
        self.redis_prefix = redis_prefix
        self.overrides = overrides  # --gateway-env: settings under trial
        self.governed_key = generate_key()
        self.ungoverned_key = generate_key()
        self.provider_key = "bench-" + os.urandom(8).hex()

    def wipe(self) -> None:
        if self.path.exists():
            if any(self.path.iterdir()) and not (self.path / STATE_MARKER).exists():
                sys.exit(
                    f"bench: {self.path} is not empty and not a bench state dir; not wiping it"
                )
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        (self.path / STATE_MARKER).write_text("created by scripts/bench.py; wiped on each run\n")

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(
            GATEWAY_VAR_DIR=str(self.path),
            GATEWAY_REDIS_PREFIX=self.redis_prefix,
            GATEWAY_BENCH_GOVERNED_KEY=self.governed_key,
            GATEWAY_BENCH_UNGOVERNED_KEY=self.ungoverned_key,
            GATEWAY_BENCH_PROVIDER_KEY=self.provider_key,
            LOG_LEVEL="WARNING",
            **{**self.overrides, **extra},
        )

    def prepare(self, mock_url: str) -> None:
        """Migrate, load the prices and apply the bench's declarative config."""
        config = self.path / "bench-config.yaml"
        config.write_text(
            BENCH_CONFIG.format(mock_url=mock_url, route=GATEWAY_MODEL, model=MOCK_MODEL)
        )
        done = subprocess.run(  # noqa: S603
            [PYTHON, "-c", SETUP_CODE, str(config)],
            cwd=ROOT,
            env=self.env(DJANGO_SETTINGS_MODULE="gateway_project.settings"),
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"bench: preparing the state dir failed:\n{done.stdout}\n{done.stderr}")


def generate_key() -> str:
    """A virtual key in the gateway's format (``keys.tokens``), made without Django."""
    import secrets
    import string

    prefix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))
    return f"sk-gw-{prefix}{secret}"


class Mock:
    """The project's mock provider, recording nothing, on the load generator's core."""

    def __init__(self, pinning: Pinning, state: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (state / "mock.log").open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            [
                *pinning.prefix(LOAD_CORES),
                PYTHON,
                "-m",
                "proxy.mock_provider",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--record-limit",
                "0",
            ],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)

    def close(self) -> None:
        stop(self.process)
        self._log.close()


class Gateway:
    """The gateway server (uvicorn under ``gateway_project.serve``), as deployed."""

    def __init__(
        self, name: str, env: dict[str, str], pinning: Pinning, *, workers: int, cores: str
    ) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(env["GATEWAY_VAR_DIR"]) / f"gateway-{name}.log"
        self._log = self.log_path.open("wb")
        argv = [
            *pinning.prefix(cores),
            PYTHON,
            "-m",
            "gateway_project.serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--workers",
            str(workers),
        ]
        self.process = subprocess.Popen(  # noqa: S603
            argv,
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.port, self.process)

    def server_pids(self) -> list[int]:
        """The processes that serve requests: uvicorn itself, or its workers."""
        if self.workers == 1:
            return [self.process.pid]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = [
                pid
                for pid in children(self.process.pid)
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
            ]
            if len(pids) >= self.workers:
                return pids
            time.sleep(0.1)
        raise RuntimeError(f"uvicorn did not start {self.workers} workers")

    def wait_until_serving(self, key: str, body: bytes, timeout: float = 30.0) -> None:
        """Until chat completions answer 200 (every worker has loaded its snapshot)."""
        deadline = time.monotonic() + timeout
        successes = 0
        last = ""
        while time.monotonic() < deadline:
            request = urllib.request.Request(  # noqa: S310
                self.url + CHAT_PATH,
                data=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    response.read()
                    successes += 1
                    if successes >= 4 * self.workers:
                        return
                    continue
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
            except OSError as exc:
                last = str(exc)
            successes = 0
            time.sleep(0.1)
        raise RuntimeError(f"gateway {self.name} never answered 200 ({last}); see {self.log_path}")

    def rss(self) -> dict[str, Any]:
        sizes = [rss_mb(pid) for pid in self.server_pids()]
        return {"per_worker_mb": sizes, "max_mb": max(s for s in sizes if s is not None)}

    def close(self) -> None:
        stop(self.process)
        self._log.close()


# --- load ------------------------------------------------------------------------------------


class Wrk:
    def __init__(self, path: str, pinning: Pinning, state: Path, load_cores: str) -> None:
        self.path = path
        self.pinning = pinning
        self.load_cores = load_cores
        self.script = state / "bench.lua"
        self.script.write_text(WRK_SCRIPT)
        # The bench's own processes besides the server and wrk: whatever else uses CPU
        # during a run is interference from outside, reported with each run.
        self.own_pids: list[int] = [os.getpid()]

    def run(
        self,
        url: str,
        *,
        body: bytes,
        key: str | None,
        duration: float,
        rate: int = 0,
        connections: int = CONNECTIONS,
        server_pids: list[int] | None = None,
    ) -> dict[str, Any]:
        """One wrk run; the summary in ms plus the CPU used by the server and by wrk."""
        env = {
            **os.environ,
            "BENCH_BODY": body.decode(),
            "BENCH_AUTH": f"Bearer {key}" if key else "",
            "BENCH_RATE": str(rate),
        }
        argv = [
            *self.pinning.prefix(self.load_cores),
            self.path,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(self.script),
            url + CHAT_PATH,
        ]
        server_cpu = cpu_seconds(server_pids or [])
        per_worker = [cpu_seconds([pid]) for pid in server_pids or []]
        threads = thread_cpu(server_pids[0]) if server_pids and len(server_pids) == 1 else None
        with Interference(sorted(set(server_pids or []) | set(self.own_pids))) as interference:
            process = subprocess.Popen(  # noqa: S603
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            # wait4 gives wrk's own CPU time; its output is small enough to wait in the pipe.
            _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = interference.elapsed
        server_cpu = cpu_seconds(server_pids or []) - server_cpu
        per_worker = [
            cpu_seconds([pid]) - before
            for pid, before in zip(server_pids or [], per_worker, strict=True)
        ]
        wrk_cpu = usage.ru_utime + usage.ru_stime
        threads_after = thread_cpu(server_pids[0]) if threads is not None and server_pids else None
        stdout = process.stdout.read().decode() if process.stdout else ""
        stderr = process.stderr.read().decode() if process.stderr else ""
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH ")), None)
        if process.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({process.returncode}): {stdout}\n{stderr}")
        raw = json.loads(line[len("BENCH ") :])
        seconds = raw["duration_us"] / 1e6
        requests = raw["requests"]
        result = {
            "requests": requests,
            "rps": round(requests / seconds, 1),
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "mean_ms": round(raw["mean_us"] / 1000, 3),
            "max_ms": raw["max_us"] / 1000,
            "non2xx": raw["non2xx"],
            "socket_errors": raw["socket_errors"],
            "loadgen_cpu_pct": round(100 * wrk_cpu / elapsed, 1),
            # Everything else on the machine (other people's jobs), in % of a core.
            "other_cpu_pct": interference.pct(also_own=wrk_cpu),
            "redis_cpu_pct": interference.redis_pct(),
        }
        if rate:
            result["target_rps"] = rate
        if server_pids:
            result["server_cpu_pct"] = round(100 * server_cpu / elapsed, 1)
            # Keep-alive connections stay with the worker that accepted them: how even it was.
            result["server_cpu_pct_per_process"] = [round(100 * c / elapsed, 1) for c in per_worker]
            result["server_cpu_us_per_request"] = round(1e6 * server_cpu / max(requests, 1), 1)
        if threads is not None and threads_after is not None and server_pids:
            # The event loop runs on the process's main thread; the rest is worker threads.
            pid = server_pids[0]
            main = threads_after.get(pid, 0.0) - threads.get(pid, 0.0)
            others = sum(
                t - threads.get(tid, 0.0) for tid, t in threads_after.items() if tid != pid
            )
            result["server_event_loop_thread_us_per_request"] = round(
                1e6 * main / max(requests, 1), 1
            )
            result["server_other_threads_us_per_request"] = round(
                1e6 * others / max(requests, 1), 1
            )
        return result


def chat_body(model: str, *, stream: bool = False) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": PROMPT}
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


async def _ttft(url: str, key: str | None, body: bytes, count: int, warmup: int) -> list[float]:
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for index in range(warmup + count):
            started = time.perf_counter()
            async with session.post(url + CHAT_PATH, data=body, headers=headers) as response:
                first = await response.content.readany()
                elapsed = time.perf_counter() - started
                rest = await response.read()
                if response.status != 200 or b"data:" not in first + rest:
                    raise RuntimeError(f"streamed request failed: {response.status} {rest[:300]!r}")
            if index >= warmup:
                samples.append(elapsed * 1000)
    return samples


def ttft(url: str, key: str | None, model: str, count: int, own_pids: list[int]) -> dict[str, Any]:
    """Time to the first streamed bytes of ``count`` sequential requests, in ms."""
    body = chat_body(model, stream=True)
    with Interference(own_pids) as interference:
        samples = asyncio.run(_ttft(url, key, body, count, max(10, count // 10)))
    return {
        "requests": count,
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "mean_ms": round(sum(samples) / len(samples), 3),
        "other_cpu_pct": interference.pct(),
    }


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    rank = max(0, math.ceil(pct / 100 * len(ordered)) - 1)
    return ordered[rank]


# --- the profile --------------------------------------------------------------------------------

TOOLS_DIR = Path(tempfile.gettempdir()) / "gateway-bench-tools"
# py-spy pauses the process for each sample: a low rate keeps the slowdown small.
PROFILE_RATE = 200


def py_spy() -> str:
    """py-spy's path: on PATH, or installed from PyPI into a throwaway directory."""
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(TOOLS_DIR / "bin"))
    if found:
        return found
    log(f"installing py-spy into {TOOLS_DIR} (not a project dependency)")
    subprocess.run(  # noqa: S603
        [PYTHON, "-m", "pip", "install", "--quiet", "--target", str(TOOLS_DIR), "py-spy"],
        check=True,
    )
    found = shutil.which("py-spy", path=str(TOOLS_DIR / "bin"))
    if found is None:
        sys.exit("bench: py-spy could not be installed; run without --profile")
    return found


# Phases of one request, found by the innermost frame of the stack that one of these
# functions owns (file suffix, qualified name). Helpers are not listed: they count for the
# phase that called them (``Price.cost`` under admission or under settle).
PHASE_MARKERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("parse", "proxy/consumer.py", ("InferenceConsumer._read_body",)),
    ("parse", "proxy/openai_api.py", ("validate_chat", "wants_usage", "with_usage_requested")),
    ("parse", "proxy/chat.py", ("parse_json_object",)),
    ("auth", "proxy/auth.py", ("authenticate",)),
    ("auth", "proxy/snapshot.py", ("SnapshotStore.ensure_loaded", "SnapshotStore.find_key")),
    (
        "admission",
        "proxy/admission.py",
        ("admit", "check_access", "is_allowed", "limit_headers", "refusal"),
    ),
    ("admission", "proxy/snapshot.py", ("Snapshot.policy_levels", "Snapshot.price")),
    (
        "routing",
        "proxy/routing.py",
        ("deployments", "requested_fallbacks", "pick_key", "call_with_fallbacks"),
    ),
    ("routing", "proxy/snapshot.py", ("Snapshot.resolve_model",)),
    ("routing", "proxy/providers/openai.py", ("OpenAIAdapter.chat_request",)),
    (
        "relay (upstream call)",
        "proxy/streaming.py",
        ("forward", "read_limited", "relay_stream", "upstream_error"),
    ),
    ("relay (upstream call)", "proxy/translation.py", ("parse_json", "Passthrough.complete")),
    ("relay (upstream call)", "proxy/upstream.py", ("*",)),  # every frame of the client
    (
        "respond (ASGI send)",
        "proxy/consumer.py",
        (
            "InferenceConsumer.send_json",
            "InferenceConsumer.start_response",
            "InferenceConsumer.send_chunk",
            "InferenceConsumer.response_headers",
        ),
    ),
    ("settle", "proxy/admission.py", ("settle", "final_usage")),
    # Settlement runs shielded, in a task of its own: its stacks start in the backend.
    ("settle", "governance/limits.py", ("MemoryLimits.settle", "RedisLimits.settle")),
    ("admission", "governance/limits.py", ("MemoryLimits.admit", "RedisLimits.admit")),
    ("record (per request)", "proxy/consumer.py", ("InferenceConsumer.ledger_entry",)),
    ("record (per request)", "governance/ledger.py", ("Ledger.record",)),
    (
        "record (batched flush)",
        "governance/ledger.py",
        (
            "Ledger._run",
            "Ledger.flush",
            "RedisStreamSink.write",
            "DatabaseSink.write",
            "insert_records",
        ),
    ),
    (
        "config snapshot poll",
        "proxy/snapshot.py",
        ("SnapshotStore._poll", "SnapshotStore.refresh_if_changed", "SnapshotStore.load"),
    ),
    (
        "consumer glue (Channels base, request task)",
        "proxy/consumer.py",
        (
            "InferenceConsumer.__call__",
            "InferenceConsumer._serve",
            "InferenceConsumer._run_watching_disconnect",
            "watch",
        ),
    ),
    (
        "consumer glue (Channels base, request task)",
        "proxy/openai_api.py",
        ("ChatCompletionsConsumer.handle", "attempt"),
    ),
    (
        "consumer glue (Channels base, request task)",
        "proxy/endpoints.py",
        ("InferenceRouter.__call__",),
    ),
)
# Samples with none of the phases' frames: by the library that runs.
LIBRARY_PHASES = (
    ("redis/", "Redis client, unattributed (redis-py)"),
    ("aiohttp/", "relay (upstream call)"),
    ("uvicorn/", "HTTP server (uvicorn, httptools)"),
    ("httptools/", "HTTP server (uvicorn, httptools)"),
    ("channels/", "consumer glue (Channels base, request task)"),
    ("asgiref/", "thread hand-off (asgiref)"),
    ("django/db/", "record (batched flush)"),
    ("asyncio/", "event loop (uvloop, asyncio)"),
)
# Where a thread waits for work: not CPU (py-spy's idle detection misses some of these).
IDLE_LEAVES = (
    "_worker (concurrent/futures/thread.py)",
    "wait (threading.py)",
    "get (queue.py)",
    "select (selectors.py)",
)
PHASE_ORDER = (
    "parse",
    "auth",
    "admission",
    "routing",
    "relay (upstream call)",
    "respond (ASGI send)",
    "settle",
    "record (per request)",
    "record (batched flush)",
    "metrics",
    "Redis client, unattributed (redis-py)",
    "HTTP server (uvicorn, httptools)",
    "consumer glue (Channels base, request task)",
    "event loop (uvloop, asyncio)",
    "thread hand-off (asgiref)",
    "config snapshot poll",
    "other",
)


def _frame(frame: str) -> tuple[str, str]:
    """``("Qual.name", "path/file.py")`` from py-spy's ``Qual.name (path/file.py)``."""
    name, _, where = frame.rpartition(" (")
    return name, where.rstrip(")")


def phase_of(frames: list[str]) -> str:
    # Below the event loop's entry are uvicorn's start-up frames, in every sample.
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].startswith("Runner.run (asyncio/runners.py"):
            frames = frames[index + 1 :]
            break
    if not frames:
        return "event loop (uvloop, asyncio)"  # C code under the loop: sockets, callbacks
    for frame in reversed(frames):  # innermost first
        name, path = _frame(frame)
        for phase, suffix, names in PHASE_MARKERS:
            if path.endswith(suffix) and any(
                wanted in ("*", name) or name.endswith("." + wanted) for wanted in names
            ):
                return phase
    paths = [_frame(frame)[1] for frame in frames]
    for prefix, phase in LIBRARY_PHASES:
        if any(path.startswith(prefix) for path in paths):
            return phase
    return "other"


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid``."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            times[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return times


def analyse(raw: Path, run: dict[str, Any]) -> dict[str, Any]:
    """The CPU per request by phase: py-spy's shares of each thread's measured CPU time.

    ``run`` is a closed loop measured without the sampler (which slows the server down);
    its event-loop thread and its other threads (ledger inserts, snapshot reads) are
    weighed separately by their own CPU time from ``/proc``, because py-spy counts a thread
    waiting for the GIL or for the disk as busy.
    """
    by_thread: dict[str, dict[str, int]] = {"main": {}, "threads": {}}
    functions: dict[str, int] = {}
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [f for f in stack.split(";") if f and not f.startswith(("thread ", "process "))]
        if not frames or not count.isdigit():
            continue
        if frames[-1] in IDLE_LEAVES:
            idle += int(count)
            continue
        thread = "threads" if any(f.startswith("Thread._bootstrap") for f in frames) else "main"
        phase = phase_of(frames)
        by_thread[thread][phase] = by_thread[thread].get(phase, 0) + int(count)
        functions[frames[-1]] = functions.get(frames[-1], 0) + int(count)
    cpu_us = {
        "main": run["server_event_loop_thread_us_per_request"],
        "threads": run["server_other_threads_us_per_request"],
    }
    phases: dict[str, float] = {}
    for thread, counts in by_thread.items():
        total = sum(counts.values())
        for phase, count in counts.items():
            phases[phase] = phases.get(phase, 0.0) + cpu_us[thread] * count / max(total, 1)
    phases.setdefault("metrics", 0.0)  # nothing on the inference path records metrics yet
    total_us = sum(cpu_us.values())
    samples = sum(functions.values())
    return {
        "samples": samples,
        "idle_samples_dropped": idle,
        "cpu_us_per_request": round(total_us, 1),
        "event_loop_thread_us_per_request": round(cpu_us["main"], 1),
        "other_threads_us_per_request": round(cpu_us["threads"], 1),
        "phases": [
            {
                "phase": phase,
                "us_per_request": round(phases[phase], 1),
                "share_pct": round(100 * phases[phase] / total_us, 1),
            }
            for phase in sorted(
                phases, key=lambda p: PHASE_ORDER.index(p) if p in PHASE_ORDER else len(PHASE_ORDER)
            )
        ],
        "top_functions": [
            {"function": name, "self_pct": round(100 * count / max(samples, 1), 1)}
            for name, count in sorted(functions.items(), key=lambda item: -item[1])[:25]
        ],
    }


# --- the scenarios ----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pinning = Pinning(not args.no_pin)
        self.state = State(Path(args.state_dir).resolve(), args.redis_prefix, args.gateway_env)
        self.results: dict[str, Any] = {}
        self.failures: list[str] = []
        self.warnings: list[str] = []
        self.duration = args.duration
        self.warmup = 0.5 if args.quick else 2.0
        self.ttft_count = 20 if args.quick else args.ttft_requests
        self.governed_body = chat_body(GATEWAY_MODEL)

    def measure(self, label: str, measurement: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run ``measurement``; again (up to ``--retries`` times) while others load the machine.

        Keeps the run that shared the machine least.
        """
        best: dict[str, Any] | None = None
        for attempt in range(1, self.args.retries + 2):
            run = measurement()
            run["attempts"] = attempt
            if best is None or run["other_cpu_pct"] < best["other_cpu_pct"]:
                best = run
            if run["other_cpu_pct"] <= OTHER_CPU_WARNING_PCT or attempt > self.args.retries:
                break
            log(
                f"{label}: other processes used {run['other_cpu_pct']} % of a core; "
                f"again in {RETRY_WAIT_SECONDS} s"
            )
            time.sleep(RETRY_WAIT_SECONDS)
        assert best is not None
        return self.check(label, best)

    def check(self, label: str, run: dict[str, Any]) -> dict[str, Any]:
        if run.get("non2xx") or run.get("socket_errors"):
            self.failures.append(
                f"{label}: {run['non2xx']} non-2xx answers, {run['socket_errors']} socket errors"
            )
        if run.get("other_cpu_pct", 0) > OTHER_CPU_WARNING_PCT:
            self.warnings.append(
                f"{label}: other processes used {run['other_cpu_pct']} % of a core meanwhile"
            )
        if "target_rps" in run and run["rps"] < 0.97 * run["target_rps"]:
            shortfall = f"{label}: offered {run['rps']} requests/s of the {run['target_rps']} asked"
            if run.get("other_cpu_pct", 0) > OTHER_CPU_WARNING_PCT:
                # The load generator shared its core with something else: the
                # shortfall says nothing about the gateway.
                self.warnings.append(f"{shortfall} (the machine was shared)")
            else:
                self.failures.append(shortfall)
        return run

    def closed_loop(
        self,
        label: str,
        url: str,
        body: bytes,
        key: str | None,
        pids: list[int],
        wrk: Wrk | None = None,
    ) -> dict[str, Any]:
        wrk = wrk or self.wrk
        wrk.run(url, body=body, key=key, duration=self.warmup)
        log(f"{label}: closed loop, {CONNECTIONS} connections, {self.duration:g}s")
        return self.measure(
            label,
            lambda: wrk.run(url, body=body, key=key, duration=self.duration, server_pids=pids),
        )

    def fixed_rates(
        self, label: str, url: str, body: bytes, key: str | None, pids: list[int]
    ) -> dict[str, Any]:
        runs = {}
        for rate in self.args.rates:
            log(f"{label}: {rate} requests/s, {self.duration:g}s")
            runs[str(rate)] = self.measure(
                f"{label} @ {rate}/s",
                lambda rate=rate: self.wrk.run(
                    url, body=body, key=key, duration=self.duration, rate=rate, server_pids=pids
                ),
            )
        return runs

    def run(self) -> dict[str, Any]:
        wrk_path = ensure_wrk()
        self.pinning.pin_self(LOAD_CORES)
        self.state.wipe()
        self.wrk = Wrk(wrk_path, self.pinning, self.state.path, LOAD_CORES)
        scenarios = self.args.scenarios
        meta = self.meta()
        mock = Mock(self.pinning, self.state.path)
        try:
            log(f"mock provider on {mock.url}; preparing {self.state.path}")
            self.state.prepare(mock.url)
            mock_pid = [mock.process.pid]
            self.wrk.own_pids.append(mock.process.pid)
            if "direct" in scenarios:
                body = chat_body(MOCK_MODEL)
                self.results["direct"] = {
                    "closed_loop": self.closed_loop("direct", mock.url, body, None, mock_pid),
                    "fixed_rate": self.fixed_rates("direct", mock.url, body, None, mock_pid),
                    "ttft": self.measure(
                        "direct TTFT",
                        lambda: ttft(
                            mock.url, None, MOCK_MODEL, self.ttft_count, self.wrk.own_pids
                        ),
                    ),
                }
            if "embedded" in scenarios or "ungoverned" in scenarios:
                self.one_worker(
                    "embedded",
                    self.state.env(),
                    governed="embedded" in scenarios,
                    ungoverned="ungoverned" in scenarios,
                )
            if "cluster" in scenarios:
                self.cluster()
            if "workers2" in scenarios:
                self.two_workers("workers2", self.state.env())
                if "cluster" in self.results and "skipped" not in self.results["cluster"]:
                    with self.redis_scope() as env:
                        self.two_workers("cluster_workers2", env)
            if self.args.soak:
                self.soak()
        finally:
            mock.close()
        meta["loadavg_after"] = os.getloadavg()
        return {
            "meta": meta,
            **self.results,
            "added": self.added(),
            "targets": self.targets(),
            "failures": self.failures,
            "warnings": self.warnings,
        }

    def one_worker(
        self, name: str, env: dict[str, str], *, governed: bool = True, ungoverned: bool = False
    ) -> None:
        gateway = Gateway(name, env, self.pinning, workers=1, cores=GATEWAY_CORES)
        try:
            gateway.wait_until_serving(self.state.governed_key, self.governed_body)
            pids = gateway.server_pids()
            result: dict[str, Any] = {"rss_start_mb": rss_mb(pids[0])}
            if governed:
                key = self.state.governed_key
                result["closed_loop"] = self.closed_loop(
                    f"{name} governed", gateway.url, self.governed_body, key, pids
                )
                result["fixed_rate"] = self.fixed_rates(
                    f"{name} governed", gateway.url, self.governed_body, key, pids
                )
                result["ttft"] = self.measure(
                    f"{name} TTFT",
                    lambda: ttft(
                        gateway.url,
                        key,
                        GATEWAY_MODEL,
                        self.ttft_count,
                        [*self.wrk.own_pids, *pids],
                    ),
                )
            if ungoverned:
                result["ungoverned_closed_loop"] = self.closed_loop(
                    f"{name} ungoverned",
                    gateway.url,
                    self.governed_body,
                    self.state.ungoverned_key,
                    pids,
                )
            if self.args.profile and governed:
                result["profile"] = self.profile(name, gateway, pids[0], result["closed_loop"])
            result["rss_after_mb"] = rss_mb(pids[0])
            self.results[name] = result
        finally:
            gateway.close()

    @contextlib.contextmanager
    def redis_scope(self) -> Iterator[dict[str, str]]:
        """The cluster-mode environment; the bench's Redis keys are removed afterwards."""
        import redis

        client = redis.Redis.from_url(self.args.redis_url, socket_timeout=5)
        pattern = f"{self.state.redis_prefix}:*"
        try:
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
            yield self.state.env(REDIS_URL=self.args.redis_url)
        finally:
            # The usage stream has no Celery worker draining it here.
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
            client.close()

    def cluster(self) -> None:
        import redis

        try:
            redis.Redis.from_url(self.args.redis_url, socket_timeout=2).ping()
        except (redis.RedisError, OSError) as exc:
            log(f"cluster: skipped, Redis unreachable at {self.args.redis_url} ({exc})")
            self.results["cluster"] = {"skipped": f"Redis unreachable: {exc}"}
            return
        with self.redis_scope() as env:
            self.one_worker("cluster", env, governed=True, ungoverned=True)

    def two_workers(self, name: str, env: dict[str, str]) -> None:
        """``--workers 2`` over both cores; the mock and wrk stay on core 1 (see the docs)."""
        gateway = Gateway(name, env, self.pinning, workers=2, cores=BOTH_CORES)
        try:
            gateway.wait_until_serving(self.state.governed_key, self.governed_body)
            pids = gateway.server_pids()
            result = {
                "closed_loop": self.closed_loop(
                    f"{name} governed",
                    gateway.url,
                    self.governed_body,
                    self.state.governed_key,
                    pids,
                ),
            }
            result["rss_after_mb"] = gateway.rss()
            self.results[name] = result
        finally:
            gateway.close()

    def soak(self) -> None:
        """A long closed-loop run on one worker, sampling the RSS (leaks, fragmentation)."""
        seconds = self.args.soak
        gateway = Gateway("soak", self.state.env(), self.pinning, workers=1, cores=GATEWAY_CORES)
        try:
            gateway.wait_until_serving(self.state.governed_key, self.governed_body)
            pid = gateway.server_pids()[0]
            self.wrk.run(
                gateway.url,
                body=self.governed_body,
                key=self.state.governed_key,
                duration=self.warmup,
            )
            slices = max(2, min(20, int(seconds // 30)))
            samples = [{"requests": 0, "rss_mb": rss_mb(pid)}]
            total = 0
            for index in range(slices):
                log(f"soak: slice {index + 1}/{slices}")
                run = self.check(
                    "soak",
                    self.wrk.run(
                        gateway.url,
                        body=self.governed_body,
                        key=self.state.governed_key,
                        duration=seconds / slices,
                        server_pids=[pid],
                    ),
                )
                total += run["requests"]
                samples.append({"requests": total, "rss_mb": rss_mb(pid), "rps": run["rps"]})
            # Growth over the run, from the first sample taken under load.
            first, last = samples[1]["rss_mb"], samples[-1]["rss_mb"]
            self.results["soak"] = {
                "seconds": seconds,
                "requests": total,
                "samples": samples,
                "rss_growth_pct": round(100 * (last - first) / first, 1),
                "rss_end_mb": last,
            }
        finally:
            gateway.close()

    # --- profile -----------------------------------------------------------------------------

    def profile(
        self, label: str, gateway: Gateway, pid: int, unprofiled: dict[str, Any]
    ) -> dict[str, Any]:
        """py-spy over a governed closed loop (a run of its own: sampling slows the server);
        the shares it finds divide the CPU time measured in ``unprofiled``."""
        tool = py_spy()
        out = self.state.path / f"profile-{label}.txt"
        seconds = max(3, round(self.duration))
        log(f"{label}: profile, py-spy over the governed closed loop, {seconds}s")
        sampler = subprocess.Popen(  # noqa: S603
            [
                *self.pinning.prefix(LOAD_CORES),
                tool,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(PROFILE_RATE),
                "--format",
                "raw",
                "--nolineno",
                "--duration",
                str(seconds + 2),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # py-spy attaches
        run = self.wrk.run(
            gateway.url,
            body=self.governed_body,
            key=self.state.governed_key,
            duration=seconds,
            server_pids=[pid],
        )
        _, errors = sampler.communicate(timeout=60)
        if sampler.returncode != 0 or not out.exists():
            raise RuntimeError(f"py-spy failed: {errors.decode(errors='replace')[-1000:]}")
        return {"closed_loop_while_sampling": run, "raw": str(out), **analyse(out, unprofiled)}

    # --- summary -------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        commit = subprocess.run(  # noqa: S603
            [shutil.which("git") or "git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # Uncommitted changes to the served code make a run hard to reproduce: say so.
        dirty = subprocess.run(  # noqa: S603
            [shutil.which("git") or "git", "status", "--porcelain", "--", *SERVED_CODE],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        return {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": commit,
            "uncommitted_changes": dirty,
            "host": platform.node(),
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pinned": self.pinning.enabled,
            "duration_s": self.duration,
            "connections": CONNECTIONS,
            "quick": self.args.quick,
            "gateway_env": self.args.gateway_env,
            "loadavg_before": os.getloadavg(),
        }

    def added(self) -> dict[str, Any]:
        """Gateway minus direct, percentile by percentile, per scenario."""
        direct = self.results.get("direct")
        if not direct:
            return {}
        added: dict[str, Any] = {}
        for name in ("embedded", "cluster"):
            result = self.results.get(name, {})
            if "fixed_rate" not in result:
                continue
            added[name] = {
                "latency": {
                    rate: {
                        p: round(run[p] - direct["fixed_rate"][rate][p], 3)
                        for p in ("p50_ms", "p99_ms")
                    }
                    for rate, run in result["fixed_rate"].items()
                    if rate in direct["fixed_rate"]
                },
                "ttft": {
                    p: round(result["ttft"][p] - direct["ttft"][p], 3) for p in ("p50_ms", "p99_ms")
                },
            }
        return added

    def targets(self) -> list[dict[str, Any]]:
        """The issue's targets against what was measured (one core, governance on)."""
        embedded = self.results.get("embedded", {})
        added = self.added().get("embedded", {})
        rows = []

        def row(figure: str, target: str, measured: Any, met: bool | None) -> None:
            rows.append({"figure": figure, "target": target, "measured": measured, "met": met})

        if "closed_loop" in embedded:
            rps = embedded["closed_loop"]["rps"]
            row("closed-loop throughput", ">= 4,000 requests/s", rps, rps >= 4000)
        at500 = added.get("latency", {}).get("500")
        if at500:
            row("added latency @500/s p50", "<= 0.5 ms", at500["p50_ms"], at500["p50_ms"] <= 0.5)
            row("added latency @500/s p99", "<= 2 ms", at500["p99_ms"], at500["p99_ms"] <= 2)
        if "ttft" in added:
            value = added["ttft"]["p50_ms"]
            row("added TTFT p50", "<= 1 ms", value, value <= 1)
        if "rss_after_mb" in embedded:
            value = embedded["rss_after_mb"]
            row("RSS per worker after the run", "<= 120 MB", value, value <= 120)
        soak = self.results.get("soak")
        if soak:
            row(
                "RSS growth over the soak",
                "< 5 %",
                soak["rss_growth_pct"],
                soak["rss_growth_pct"] < 5,
            )
        two = self.results.get("workers2", {}).get("closed_loop")
        if two and "closed_loop" in embedded:
            ratio = round(two["rps"] / embedded["closed_loop"]["rps"], 2)
            row("2 workers / 1 worker", ">= 1.8", ratio, ratio >= 1.8)
        return rows


# --- output ----------------------------------------------------------------------------------


def _row(cells: tuple[Any, ...], widths: tuple[int, ...]) -> str:
    return "".join(
        str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )


def _pair(run: dict[str, Any] | None, sign: str = "") -> str:
    return f"{run['p50_ms']:{sign}.3f} / {run['p99_ms']:{sign}.3f}" if run else "-"


CLOSED_LOOP_ROWS = (
    ("direct: the mock alone", "direct", "closed_loop"),
    ("embedded, governed", "embedded", "closed_loop"),
    ("embedded, no governance", "embedded", "ungoverned_closed_loop"),
    ("cluster (Redis), governed", "cluster", "closed_loop"),
    ("cluster (Redis), no governance", "cluster", "ungoverned_closed_loop"),
    ("2 workers, embedded, governed", "workers2", "closed_loop"),
    ("2 workers, cluster, governed", "cluster_workers2", "closed_loop"),
)


def table(report: dict[str, Any]) -> str:
    """The report as plain-text tables."""
    lines = [f"Closed loop: wrk -t1 -c{CONNECTIONS}, {report['meta']['duration_s']:g} s per run"]
    widths = (32, 10, 9, 9, 12, 8, 8)
    lines.append(
        _row(("run", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors", "other%"), widths)
    )
    for label, scenario, key in CLOSED_LOOP_ROWS:
        run = report.get(scenario, {}).get(key)
        if run:
            lines.append(
                _row(
                    (
                        label,
                        f"{run['rps']:.0f}",
                        f"{run['p50_ms']:.3f}",
                        f"{run['p99_ms']:.3f}",
                        run.get("server_cpu_us_per_request", "-"),
                        run["non2xx"] + run["socket_errors"],
                        run.get("other_cpu_pct", "-"),
                    ),
                    widths,
                )
            )

    direct = report.get("direct", {}).get("fixed_rate", {})
    widths = (32, 10, 18, 18, 18)
    lines += ["", "Fixed rate: latency p50 / p99 in ms; added = through the gateway - direct"]
    lines.append(_row(("run", "achieved", "direct", "gateway", "added"), widths))
    for scenario in ("embedded", "cluster"):
        added = report.get("added", {}).get(scenario, {}).get("latency", {})
        for rate, run in report.get(scenario, {}).get("fixed_rate", {}).items():
            lines.append(
                _row(
                    (
                        f"{scenario}, governed, {rate}/s",
                        f"{run['rps']:.0f}",
                        _pair(direct.get(rate)),
                        _pair(run),
                        _pair(added.get(rate), "+"),
                    ),
                    widths,
                )
            )

    lines += ["", "Time to first token, streamed, sequential requests: p50 / p99 in ms"]
    lines.append(_row(("run", "", "measured", "", "added"), widths))
    for scenario in ("direct", "embedded", "cluster"):
        result = report.get(scenario, {}).get("ttft")
        if result:
            added = report.get("added", {}).get(scenario, {}).get("ttft")
            lines.append(_row((scenario, "", _pair(result), "", _pair(added, "+")), widths))

    lines += ["", "Memory: VmRSS of each serving process, MB"]
    for scenario in ("embedded", "cluster", "workers2", "cluster_workers2"):
        result = report.get(scenario, {})
        if "rss_after_mb" in result:
            start = f" (at start {result['rss_start_mb']})" if "rss_start_mb" in result else ""
            rss = result["rss_after_mb"]
            if isinstance(rss, dict):
                rss = " and ".join(map(str, rss["per_worker_mb"])) + " (one per worker)"
            lines.append(f"  {scenario:<30}after the runs {rss}{start}")
    soak = report.get("soak")
    if soak:
        lines.append(
            f"  soak: {soak['seconds']:g} s, {soak['requests']} requests, "
            f"{soak['samples'][1]['rss_mb']} -> {soak['rss_end_mb']} MB "
            f"({soak['rss_growth_pct']:+.1f} %)"
        )

    for scenario in ("embedded", "cluster"):
        profile = report.get(scenario, {}).get("profile")
        if not profile:
            continue
        lines += [
            "",
            (
                f"CPU per request by phase, {scenario} governed (py-spy, "
                f"{profile['samples']} samples; {profile['cpu_us_per_request']} us/request "
                "measured without the sampler)"
            ),
        ]
        for phase in profile["phases"]:
            lines.append(
                f"  {phase['phase']:<46}{phase['us_per_request']:>8.1f} us"
                f"{phase['share_pct']:>7.1f} %"
            )

    if report.get("targets"):
        lines += ["", "Targets (issue 12: one core, governance on)"]
        for target in report["targets"]:
            verdict = {True: "met", False: "NOT met", None: "-"}[target["met"]]
            lines.append(
                f"  {target['figure']:<32}{target['target']:>20}"
                f"{target['measured']!s:>12}   {verdict}"
            )
    for title, items in (
        ("WARNINGS", report.get("warnings")),
        ("FAILURES", report.get("failures")),
    ):
        if items:
            lines += ["", title, *(f"  {item}" for item in items)]
    return "\n".join(lines)


SCENARIOS = ("direct", "embedded", "ungoverned", "cluster", "workers2")


# A chat prompt of about 2 KB: prose, code, numbers and dates, nothing to find.
GUARDRAIL_PROMPT = (
    "I am preparing the quarterly report for the platform team and need help with the "
    "summary. Revenue grew 12.5% to 4.2 million, churn fell from 3.1% to 2.4%, and the "
    "median latency of the API dropped from 180 ms to 95 ms after the migration on "
    "2024-03-15. Please rewrite the paragraph below so that it reads well for executives, "
    "keeps every figure, and ends with three bullet points of next steps.\n\n"
    "def percentile(values: list[float], q: float) -> float:\n"
    "    ordered = sorted(values)\n"
    "    return ordered[int(q * (len(ordered) - 1))]\n\n"
)
GUARDRAIL_PROMPT = (GUARDRAIL_PROMPT * 5)[:2048]
GUARDRAIL_FINDINGS = (
    " Contact jane.doe@example.com, key AKIAIOSFODNN7EXAMPLE, card 4111111111111111."
)


def guardrail_costs(repeat: int = 2000) -> dict[str, float]:
    """Detection time in microseconds, every detector on (no processes needed):
    a 2 KB prompt, the same with three findings to redact, and per delta of a
    2 KB answer streamed in 4-character deltas through the response check."""
    import timeit

    from governance.guardrails import DETECTORS, Rule, Scanner
    from proxy.guarding import OPENAI_CHAT, Recorder, ResponseGuard
    from proxy.usage import OpenAIStreamScanner

    scanner = Scanner(detectors={d.name: Rule("redact") for d in DETECTORS})
    with_findings = GUARDRAIL_PROMPT[: 2048 - len(GUARDRAIL_FINDINGS)] + GUARDRAIL_FINDINGS

    def best(call: Any, number: int) -> float:
        return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6

    deltas = [GUARDRAIL_PROMPT[i : i + 4] for i in range(0, len(GUARDRAIL_PROMPT), 4)]
    events = [
        b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
        + json.dumps({"content": delta}).encode()
        + b',"finish_reason":null}]}\n\n'
        for delta in deltas
    ]

    def stream() -> None:
        relay = ResponseGuard(scanner, OPENAI_CHAT, Recorder({})).stream(
            OpenAIStreamScanner(drop_usage_event=False)
        )
        for event in events:
            relay.feed(event)
        relay.flush()

    return {
        "prompt_2kb_us": round(best(lambda: scanner.scan(GUARDRAIL_PROMPT), repeat), 1),
        "prompt_2kb_3_findings_us": round(best(lambda: scanner.scan(with_findings), repeat), 1),
        "stream_per_delta_us": round(best(stream, max(1, repeat // 200)) / len(events), 1),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per measured run (default 10)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1-second runs and 20 streamed requests (the smoke test)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, among {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--rates",
        default=",".join(map(str, RATES)),
        help="fixed rates in requests/s (default 100,500,1000)",
    )
    parser.add_argument("--ttft-requests", type=int, default=200)
    parser.add_argument(
        "--guardrails",
        action="store_true",
        help="measure guardrail detection alone (a 2 KB prompt, every detector on) and stop",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0,
        help="also run a closed-loop soak of this many seconds, sampling RSS",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the governed closed loop with py-spy (installed on demand "
        "into the state dir) and break the CPU down by phase",
    )
    parser.add_argument("--output", default=str(ROOT / "var" / "bench.json"))
    parser.add_argument("--state-dir", default=str(Path(tempfile.gettempdir()) / "gateway-bench"))
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--redis-prefix", default="gwbench")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument(
        "--retries",
        type=int,
        default=None,
        help="measure a run again, up to this many times, while other processes use more than "
        f"{OTHER_CPU_WARNING_PCT} %% of a core (default 2; 0 with --quick)",
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the gateway processes, to try its effect (repeatable)",
    )
    args = parser.parse_args(argv)
    args.scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    unknown = args.scenarios - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    args.rates = [int(r) for r in args.rates.split(",") if r.strip()]
    if any("=" not in item for item in args.gateway_env):
        parser.error("--gateway-env takes NAME=VALUE")
    args.gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    if args.retries is None:
        args.retries = 0 if args.quick else 2
    if args.quick:
        args.duration = 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.guardrails:
        costs = guardrail_costs(200 if args.quick else 2000)
        for name, value in costs.items():
            print(f"{name:28} {value:10.1f}")
        return 0
    report = Bench(args).run()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print(f"\nJSON: {output}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
