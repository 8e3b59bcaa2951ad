"""Slow and oversized requests (slowloris) are cut off by limits, over raw
sockets against a real gateway, and do not keep others from being served."""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from keys import selectors
from tests.conftest import gateway_env
from tests.processes import GatewayProcess
from tests.reliability_report import add_row

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_HEADER_BYTES = 8192
CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture
def limited(demo):
    server = GatewayProcess(
        gateway_env(
            GATEWAY_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
            GATEWAY_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
            GATEWAY_MAX_HEADER_BYTES=str(MAX_HEADER_BYTES),
            GATEWAY_MAX_BODY_BYTES="65536",
        )
    )
    server.wait_for_revision(selectors.config_revision())
    yield server
    server.close()


def connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def read_response(sock: socket.socket) -> bytes:
    """One whole response: its head, then as many body bytes as it declares
    (the server may send them in separate segments, and keep the connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def body_of(response: bytes) -> dict:
    return orjson.loads(response.split(b"\r\n\r\n", 1)[1])


def request_head(server, key: str, path: str = "/v1/chat/completions", length: int = 0) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{server.port}\r\n"
        f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
        f"content-length: {length}\r\n\r\n"
    ).encode()


def test_a_connection_that_sends_nothing_is_closed_with_a_408(limited):
    sock = connect(limited)
    started = time.monotonic()
    response = read_all(sock)
    elapsed = time.monotonic() - started
    assert status_of(response) == 408
    assert body_of(response)["error"]["code"] == "request_timeout"
    assert HEADER_TIMEOUT * 0.8 <= elapsed < HEADER_TIMEOUT + 2


def test_headers_sent_a_byte_at_a_time_are_cut_off(demo, limited):
    sock = connect(limited)
    head = request_head(limited, demo.key, length=len(CHAT))
    started = time.monotonic()
    try:
        for byte in head:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
            if time.monotonic() - started > HEADER_TIMEOUT + 3:
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = read_all(sock)
    assert status_of(response) == 408
    assert time.monotonic() - started < HEADER_TIMEOUT + 3


def test_oversized_headers_get_a_431(demo, limited):
    sock = connect(limited)
    padding = "x" * (MAX_HEADER_BYTES * 2)
    head = request_head(limited, demo.key, length=len(CHAT)).replace(
        b"\r\n\r\n", f"\r\nx-padding: {padding}\r\n\r\n".encode()
    )
    try:
        sock.sendall(head + CHAT)
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = read_all(sock)
    assert status_of(response) == 431
    assert body_of(response)["error"]["code"] == "headers_too_large"


@pytest.mark.parametrize(
    ("path", "envelope"),
    [("/v1/chat/completions", "openai"), ("/anthropic/v1/messages", "anthropic")],
)
def test_a_body_trickling_in_gets_a_408_in_the_clients_envelope(demo, limited, path, envelope):
    sock = connect(limited)
    sock.sendall(request_head(limited, demo.key, path, length=len(CHAT)))
    started = time.monotonic()
    sent = 0
    sock.settimeout(0.3)
    response = b""
    while sent < len(CHAT) - 1 and time.monotonic() - started < BODY_TIMEOUT + 3:
        try:
            sock.sendall(CHAT[sent : sent + 1])
            sent += 1
            response += sock.recv(65536)
            if response:
                break
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.settimeout(15)
    response += read_all(sock)
    elapsed = time.monotonic() - started
    assert status_of(response) == 408
    body = body_of(response)
    if envelope == "openai":
        assert body["error"]["code"] == "request_timeout"
    else:
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert BODY_TIMEOUT * 0.8 <= elapsed < BODY_TIMEOUT + 3


def test_a_declared_oversized_body_is_refused_before_it_is_sent(demo, limited):
    sock = connect(limited)
    sock.sendall(request_head(limited, demo.key, length=10_000_000))
    sock.settimeout(5)
    response = read_response(sock)
    assert status_of(response) == 413
    assert body_of(response)["error"]["code"] == "request_too_large"


def test_a_slow_body_on_the_management_api_is_cut_off_too(limited):
    sock = connect(limited)
    head = (
        b"POST /api/v1/customers/ HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    sock.sendall(head + b'{"na')
    started = time.monotonic()
    read_all(sock)
    assert time.monotonic() - started < BODY_TIMEOUT + 8


def test_hundreds_of_slow_clients_do_not_keep_others_from_being_served(demo, limited):
    held = []
    for _ in range(300):
        sock = connect(limited)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        held.append(sock)
    try:
        timings = []
        with httpx.Client(base_url=limited.url, timeout=10) as client:
            for _ in range(20):
                started = time.monotonic()
                response = client.post(
                    "/v1/chat/completions",
                    content=CHAT,
                    headers={"authorization": f"Bearer {demo.key}"},
                )
                timings.append(time.monotonic() - started)
                assert response.status_code == 200
        assert max(timings) < 1.0
        # And all of them are let go once their time is up.
        deadline = time.monotonic() + HEADER_TIMEOUT + 5
        closed = 0
        for sock in held:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                response = read_all(sock)
            except TimeoutError:
                continue
            closed += status_of(response) == 408
        assert closed == len(held)
    finally:
        for sock in held:
            sock.close()
    add_row(
        "Slow clients",
        f"300 connections holding half-sent headers (header deadline {HEADER_TIMEOUT:g} s)",
        requests=320,
        client_saw=f"all 300 cut off with 408; 20 normal requests meanwhile served, "
        f"slowest {max(timings):.2f} s",
        lost="nothing",
    )
