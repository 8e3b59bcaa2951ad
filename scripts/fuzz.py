"""``make fuzz``: each atheris harness of ``tests/fuzz/`` for a bounded time.

    .venv/bin/python scripts/fuzz.py [--seconds N] [harness ...]

Harnesses are ``tests/fuzz/fuzz_<name>.py``. Each runs in a process of its
own from a corpus in ``var/fuzz/<name>/``, seeded with well-formed inputs
(the corpus grows across runs: what libFuzzer found stays); an input that
fails is saved as ``var/fuzz/<name>-crash-*``. With
``GATEWAY_RELIABILITY_REPORT`` set (``make reliability RELIABILITY_ARGS="--atheris
SECONDS"``) each harness adds a row to the report. atheris is not part of
``make install``; ``make fuzz`` installs it. The exit status is 1 when a
harness failed, 2 when atheris is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HARNESSES = ROOT / "tests" / "fuzz"
CORPORA = ROOT / "var" / "fuzz"
DONE = re.compile(rb"#(\d+)\s+DONE\s+cov: (\d+)")
PROGRESS = re.compile(rb"#(\d+)\s+\w+\s+cov: (\d+)")
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def _sse_seeds() -> list[bytes]:
    openai = b"".join(
        b"data: " + json.dumps(chunk).encode() + b"\n\n"
        for chunk in (
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}},
        )
    )
    anthropic = (
        b'event: message_start\ndata: {"type": "message_start"}\n\n'
        b": keep-alive\n\n"
        b'event: content_block_delta\r\ndata: {"type": "content_block_delta",\r\n'
        b'data:  "delta": {"text": "hi"}}\r\n\r\n'
        b"event: message_stop\rdata: {}\r\r"
    )
    return [b"\x00\x10" + openai + b"data: [DONE]\n\n", b"\x00\x30" + anthropic]


def _eventstream_seeds() -> list[bytes]:
    from proxy.mock_provider import bedrock

    stream = b"".join(
        [
            bedrock.event("messageStart", {"role": "assistant"}),
            bedrock.event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "hi"}}),
            bedrock.event("messageStop", {"stopReason": "end_turn"}),
            bedrock.exception("throttlingException", "slow down"),
        ]
    )
    return [b"\x00\x40" + stream, b"\x01\x00" + stream[:200]]


def _request_seeds() -> list[bytes]:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    bodies = [
        CHAT,
        {**CHAT, "stream": True, "stop": ["x"], "temperature": 0.5, "tools": [tool]},
        {
            **CHAT,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, image]},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {}}},
        },
        {
            "model": "m",
            "max_tokens": 4,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}],
                },
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "thinking": {"type": "enabled", "budget_tokens": 1024},
        },
        {"model": "m", "prompt": ["hi"], "max_tokens": 4, "stream": True},
    ]
    return [json.dumps(body).encode() for body in bodies]


def _guardrail_seeds() -> list[bytes]:
    return [
        b"card 4111 1111 1111 1111, mail ops@example.com, key AKIAIOSFODNN7EXAMPLE",
        b'{"card": 4111111111111111, "to": "ops@example.com", "n": -1.5e3}',
        b'{"body": "the key is\\nAKIAIOSFODNN7EXAMPLE \\u0041", "list": [1, "x"]}',
        b"IBAN DE89 3704 0044 0532 0130 00, phone +1 415 555 0100, SSN 078-05-1120",
    ]


SEEDS = {
    "sse": _sse_seeds,
    "eventstream": _eventstream_seeds,
    "request_fields": _request_seeds,
    "guardrail_scanner": _guardrail_seeds,
}


def harnesses() -> dict[str, Path]:
    return {path.stem.removeprefix("fuzz_"): path for path in sorted(HARNESSES.glob("fuzz_*.py"))}


def describe(path: Path) -> str:
    """The first sentence of a harness's docstring, as its row names it."""
    text = path.read_text(encoding="utf-8")
    doc = text.split('"""', 2)[1]
    return " ".join(doc.split(":")[0].split()).replace("``", "`") if doc else path.stem


def seeded(name: str) -> Path:
    corpus = CORPORA / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in SEEDS.get(name, lambda: [])():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()[:12]}").write_bytes(seed)  # noqa: S324
    return corpus


def run(name: str, path: Path, seconds: int) -> dict:
    corpus = seeded(name)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "gateway_project.settings",
        "DATABASE_URL": f"sqlite:///{CORPORA / 'unused.sqlite3'}",
    }
    env.pop("REDIS_URL", None)
    command = [
        sys.executable,
        str(path),
        str(corpus),
        f"-max_total_time={seconds}",
        "-rss_limit_mb=2048",
        "-timeout=10",
        f"-artifact_prefix={CORPORA / name}-",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=seconds + 120)  # noqa: S603
    elapsed = time.monotonic() - started
    output = done.stderr + done.stdout
    found = DONE.findall(output) or PROGRESS.findall(output)
    runs, cover = (int(found[-1][0]), int(found[-1][1])) if found else (0, 0)
    failure = None
    if done.returncode != 0:
        lines = output.decode("utf-8", "replace").splitlines()
        errors = [line for line in lines if re.match(r"^\w*(Error|Exception)\b", line)]
        failure = errors[0] if errors else f"exit status {done.returncode}"
        crashes = sorted(CORPORA.glob(f"{name}-crash-*"), key=lambda p: p.stat().st_mtime)
        if crashes:
            failure += f" (input saved as {crashes[-1].relative_to(ROOT)})"
    return {"runs": runs, "coverage": cover, "seconds": elapsed, "failure": failure}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=60, help="time per harness")
    parser.add_argument("names", nargs="*", help="harnesses to run (default: all)")
    args = parser.parse_args()
    if importlib.util.find_spec("atheris") is None:
        print("atheris is not installed: `make fuzz` installs it (pip install atheris)")
        return 2
    from tests.reliability_report import add_row

    known = harnesses()
    unknown = set(args.names) - set(known)
    if unknown:
        parser.error(f"no harness {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    failed = []
    for name, path in known.items():
        if args.names and name not in args.names:
            continue
        print(f"== {name}: {args.seconds} s", flush=True)
        result = run(name, path, args.seconds)
        verdict = result["failure"] or "no failure"
        print(
            f"   {result['runs']:,} inputs, coverage {result['coverage']} "
            f"in {result['seconds']:.0f} s: {verdict}"
        )
        if result["failure"]:
            failed.append(name)
        add_row(
            "Bad input",
            f"atheris: {describe(path)} (`tests/fuzz/{path.name}`, {args.seconds} s)",
            requests=result["runs"],
            client_saw=f"(parser) {result['runs']:,} inputs, {result['coverage']} coverage "
            f"counters; {verdict}",
            lost="nothing" if not result["failure"] else "a failing input",
            mode="any",
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
