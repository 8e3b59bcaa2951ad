"""``make reliability``: the fault, bad-input and security suites (and the
soak, by flag), then docs/reliability.md written from what they measured.

    .venv/bin/python scripts/reliability.py [--examples N] [--soak SECONDS] [--rate N]
                                            [--atheris SECONDS]

Each suite runs in embedded mode (SQLite in ``var/``, no Redis) and, when
``RELIABILITY_DATABASE_URL`` (PostgreSQL) and ``RELIABILITY_REDIS_URL`` are
set, in cluster mode too; tests that need the other mode skip. The tests
append their rows to a JSON-lines file (``tests.reliability_report``), the
suite's older fault tests are turned into rows by ``tests.reliability_plugin``,
and the gateway logs of the run are searched for the secrets the tests used.
``--atheris SECONDS`` runs the atheris harnesses too (``scripts/fuzz.py``,
each that long; atheris must be installed: ``make fuzz`` does it). The exit
status is 1 when a test failed; the page is written either way,
with the failures in it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.reliability_report import load_rows, render  # noqa: E402

SUITES = [
    # faults
    "tests/test_redis_outage.py",
    "tests/test_database_outage.py",
    "tests/test_gateway_killed.py",
    "tests/test_usage_ledger.py",
    "tests/test_worker_redis_outage.py",
    "tests/test_drain.py",
    "tests/test_upstream_errors.py",
    "tests/test_upstream_stream_faults.py",
    "tests/test_fallbacks_and_retries.py",
    "tests/test_circuit_breaker.py",
    "tests/test_timeouts_and_keepalive.py",
    "tests/test_cancellation.py",
    "tests/test_slow_clients.py",
    # bad input
    "tests/test_bad_input.py",
    "tests/test_fuzz_inference.py",
    "tests/test_fuzz_upstream_answers.py",
    "tests/test_api_schema.py",
    # security
    "tests/test_authentication.py",
    "tests/test_key_guessing.py",
    "tests/test_private_base_urls.py",
    "tests/test_dns_rebinding.py",
    "tests/test_refusal_records.py",
]
# Full virtual keys, and the provider keys the fixtures store.
SECRET_PATTERNS = [
    re.compile(rb"sk-gw-[a-z0-9]{8}[A-Za-z0-9]{40}"),
    re.compile(rb"sk-mock-[a-z]+-\d{4}|sk-ant-mock-\d{4}|azure-key-\d{4}"),
]


def run_pass(
    mode: str, env: dict[str, str], rows: Path, args: argparse.Namespace, *, soak: bool
) -> int:
    tests = [] if args.soak_only else list(SUITES)
    extra = {
        "GATEWAY_RELIABILITY_REPORT": str(rows),
        "GATEWAY_FUZZ_EXAMPLES": str(args.examples),
    }
    if soak:
        tests.append("tests/test_soak.py")
        extra |= {"GATEWAY_SOAK_SECONDS": str(args.soak), "GATEWAY_SOAK_RATE": str(args.rate)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "tests.reliability_plugin",
        "-p",
        "no:cacheprovider",
        *tests,
    ]
    print(f"\n== {mode}: {' '.join(command[3:])}", flush=True)
    return subprocess.call(command, cwd=ROOT, env={**env, **extra})  # noqa: S603


def secrets_in_logs(since: float) -> tuple[int, int]:
    """(log files of this run searched, secrets found in them)."""
    files = [
        path for path in (ROOT / "var").glob("gateway-test-*.log") if path.stat().st_mtime >= since
    ]
    found = 0
    for path in files:
        data = path.read_bytes()
        found += sum(len(pattern.findall(data)) for pattern in SECRET_PATTERNS)
    return len(files), found


def commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
            cwd=ROOT,
            text=True,
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--examples", type=int, default=300, help="hypothesis examples per fuzz test"
    )
    parser.add_argument("--soak", type=float, default=0, help="soak seconds (0: no soak)")
    parser.add_argument(
        "--atheris",
        type=int,
        default=0,
        metavar="SECONDS",
        help="run each atheris harness (scripts/fuzz.py) this long (0: not run)",
    )
    parser.add_argument("--rate", type=int, default=1000, help="soak requests a second")
    parser.add_argument(
        "--soak-only",
        action="store_true",
        help="run only the soak, adding its rows to those of the last run",
    )
    parser.add_argument("--output", default=str(ROOT / "docs" / "reliability.md"))
    parser.add_argument("--rows", default=str(ROOT / "var" / "reliability-rows.jsonl"))
    args = parser.parse_args()

    rows = Path(args.rows)
    rows.parent.mkdir(exist_ok=True)
    started = time.time()
    if args.soak_only:
        if not args.soak:
            parser.error("--soak-only needs --soak SECONDS")
        previous = [row for row in load_rows(rows) if row["area"] != "Soak"]
        rows.write_text("".join(json.dumps(row) + "\n" for row in previous), encoding="utf-8")
    else:
        rows.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    passes = [("embedded", {**base, "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'rel.sqlite3'}"})]
    database, redis = (
        os.environ.get("RELIABILITY_DATABASE_URL"),
        os.environ.get("RELIABILITY_REDIS_URL"),
    )
    if database and redis:
        passes.append(("cluster", {**base, "DATABASE_URL": database, "REDIS_URL": redis}))
    else:
        print("RELIABILITY_DATABASE_URL / RELIABILITY_REDIS_URL unset: embedded mode only")
    failed = []
    # The soak runs once, in the last (the most complete) mode.
    for index, (mode, env) in enumerate(passes):
        soak = bool(args.soak) and index == len(passes) - 1
        if (args.soak_only and not soak) or run_pass(mode, env, rows, args, soak=soak) == 0:
            continue
        failed.append(mode)
    if args.atheris and not args.soak_only:
        fuzzed = subprocess.call(  # noqa: S603
            [sys.executable, str(ROOT / "scripts" / "fuzz.py"), "--seconds", str(args.atheris)],
            cwd=ROOT,
            env={**os.environ, "GATEWAY_RELIABILITY_REPORT": str(rows)},
        )
        if fuzzed:
            failed.append("atheris" if fuzzed == 1 else "atheris (not installed)")
    searched, found = secrets_in_logs(started)
    from tests.reliability_report import add_row

    os.environ["GATEWAY_RELIABILITY_REPORT"] = str(rows)
    if not args.soak_only:  # (the full run's search stays in its rows)
        add_row(
            "Security",
            f"the gateway logs of this run ({searched} files) searched for the virtual and "
            "provider keys the tests used",
            requests=None,
            client_saw="(logs)",
            lost=f"{found} secrets found" if found else "none found",
            mode="all",
        )
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "modes": ", ".join(mode for mode, _ in passes),
        "examples": args.examples,
        "soak": args.soak,
        "minutes": (time.time() - started) / 60,
        "failed": failed,
        "argv": " ".join(sys.argv[1:]),
    }
    saved = rows.with_suffix(".meta.json")
    if args.soak_only and saved.exists():
        # The page describes the full run; the soak adds its row and flag.
        previous_meta = json.loads(saved.read_text(encoding="utf-8"))
        meta = {
            **previous_meta,
            "soak": args.soak,
            "failed": sorted({*previous_meta["failed"], *(f"soak ({m})" for m in failed)}),
        }
    saved.write_text(json.dumps(meta), encoding="utf-8")
    Path(args.output).write_text(render(load_rows(rows), meta), encoding="utf-8")
    print(f"\nwrote {args.output}" + (f"; failures in: {', '.join(failed)}" if failed else ""))
    return 1 if failed or found else 0


if __name__ == "__main__":
    sys.exit(main())
