"""Signature Version 4 as the Bedrock adapter computes it, checked against
botocore's ``SigV4Auth`` (AWS's own implementation) on the same requests."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from proxy.providers import sigv4

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
BASE = "https://bedrock-runtime.us-east-1.amazonaws.com"


def _botocore_authorization(
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: sigv4.Credentials,
    region: str,
    method: str = "POST",
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    auth = SigV4Auth(
        BotoCredentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        "bedrock",
        region,
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        auth.add_auth(request)
    return request


CASES = [
    pytest.param(
        f"{BASE}/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse",
        sigv4.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        "us-east-1",
        id="model-id-with-colon",
    ),
    pytest.param(
        f"{BASE}/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1234%3Ainference-profile%2Fus.x/"
        "converse-stream",
        sigv4.Credentials("ASIAEXAMPLE", "secret/with+signs=", "FwoGZXIvYXdz//token+/=="),
        "us-east-1",
        id="arn-and-session-token",
    ),
    pytest.param(
        "http://127.0.0.1:8123/bedrock/model/mock-claude/converse",
        sigv4.Credentials("AKIAMOCK", "mock-secret"),
        "eu-central-1",
        id="non-default-port",
    ),
    pytest.param(
        f"{BASE}/model/m/converse?b=2&a=1&a=0&space=x%20y&tilde=~",
        sigv4.Credentials("AKIDEXAMPLE", "secret"),
        "us-east-1",
        id="query-string",
    ),
]


@pytest.mark.parametrize(("url", "credentials", "region"), CASES)
def test_its_signatures_equal_botocore_s(
    url: str, credentials: sigv4.Credentials, region: str
) -> None:
    body = b'{"messages":[{"role":"user","content":[{"text":"Hi \xc3\xa9"}]}]}'
    headers = {"content-type": "application/json", "accept": "application/json"}
    ours = sigv4.sign(
        method="POST",
        url=url,
        headers=headers,
        body=body,
        credentials=credentials,
        region=region,
        service="bedrock",
        now=NOW,
    )
    # botocore signs the headers it is given; hand it the same set.
    theirs = _botocore_authorization(
        url,
        {**headers, "x-amz-content-sha256": ours["x-amz-content-sha256"]},
        body,
        credentials,
        region,
    )
    assert ours["authorization"] == theirs.headers["Authorization"]
    assert ours["x-amz-date"] == theirs.headers["X-Amz-Date"] == "20260314T150926Z"
    if credentials.session_token:
        assert ours["x-amz-security-token"] == theirs.headers["X-Amz-Security-Token"]


def test_a_different_body_secret_or_date_changes_the_signature() -> None:
    url = f"{BASE}/model/m/converse"
    credentials = sigv4.Credentials("AKID", "secret")

    def signed(body: bytes = b"{}", secret: str = "secret", now: datetime = NOW) -> str:
        return sigv4.sign(
            method="POST",
            url=url,
            headers={},
            body=body,
            credentials=sigv4.Credentials(credentials.access_key_id, secret),
            region="us-east-1",
            service="bedrock",
            now=now,
        )["authorization"]

    reference = signed()
    assert signed(body=b"{ }") != reference
    assert signed(secret="secreT") != reference
    assert signed(now=NOW.replace(second=27)) != reference


def test_headers_a_client_may_rewrite_are_not_signed() -> None:
    headers = sigv4.sign(
        method="POST",
        url=f"{BASE}/model/m/converse",
        headers={"content-type": "application/json", "user-agent": "x", "content-length": "2"},
        body=b"{}",
        credentials=sigv4.Credentials("AKID", "secret"),
        region="us-east-1",
        service="bedrock",
        now=NOW,
    )
    signed = sigv4.parse_authorization(headers["authorization"])
    assert signed is not None
    assert signed.signed_headers == ["content-type", "host", "x-amz-content-sha256", "x-amz-date"]
    assert (signed.access_key_id, signed.region, signed.service, signed.date) == (
        "AKID",
        "us-east-1",
        "bedrock",
        "20260314",
    )


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        ("AKID:SECRET", sigv4.Credentials("AKID", "SECRET")),
        ("AKID:SE/CR+ET:TOKEN==", sigv4.Credentials("AKID", "SE/CR+ET", "TOKEN==")),
        (" AKID:SECRET\n", sigv4.Credentials("AKID", "SECRET")),
        ("ABSKbm90LWEta2V5", None),
        ("AKID:", None),
        ("a:b:c:d", None),
    ],
)
def test_it_reads_access_keys_from_the_provider_key(
    secret: str, expected: sigv4.Credentials | None
) -> None:
    assert sigv4.parse_credentials(secret) == expected


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "https://Bedrock-Runtime.us-east-1.amazonaws.com/x",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        ("https://h.example:443/x", "h.example"),
        ("http://h.example:80/x", "h.example"),
        ("http://127.0.0.1:9100/x", "127.0.0.1:9100"),
        ("http://[::1]:9100/x", "[::1]:9100"),
    ],
)
def test_the_signed_host_is_the_one_http_clients_send(url: str, host: str) -> None:
    assert sigv4.host_of(url) == host


@pytest.mark.parametrize(
    "value",
    [
        "Bearer ABSK",
        "AWS4-HMAC-SHA256 Credential=AKID/20260314/us-east-1/bedrock, SignedHeaders=host, "
        "Signature=" + "0" * 64,
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "0" * 64,
    ],
)
def test_it_rejects_authorization_headers_that_are_not_sigv4(value: str) -> None:
    assert sigv4.parse_authorization(value) is None
