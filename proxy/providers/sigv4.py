"""AWS Signature Version 4, as AWS services other than S3 expect it.

Used to sign requests to Amazon Bedrock (service ``bedrock``) with an access
key pair, and by the mock provider to check such signatures. Only the
``Authorization`` header form is implemented (no presigned URLs); the payload
is always hashed (``x-amz-content-sha256``).

The steps, as AWS documents them: a *canonical request* (method, URI-encoded
path, sorted query, the signed headers lower-cased and trimmed, the payload's
SHA-256), a *string to sign* (algorithm, timestamp, credential scope and the
canonical request's hash), a *signing key* derived from the secret through
the date, region, service and ``aws4_request``, and the HMAC-SHA256 of the
string to sign under that key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

from proxy.upstream import host_of

ALGORITHM = "AWS4-HMAC-SHA256"
# Headers a proxy or the HTTP client may add or rewrite on the way: never signed.
UNSIGNED_HEADERS = frozenset(
    {"authorization", "user-agent", "expect", "x-amzn-trace-id", "content-length", "connection"}
)
_SPACES = re.compile(r"\s+")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """An AWS access key pair, with the session token of temporary credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def parse_credentials(secret: str) -> Credentials | None:
    """``ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]`` as credentials, else None.

    Neither access key ids, secret keys nor (base64) session tokens contain a
    colon, so the split is unambiguous.
    """
    parts = secret.strip().split(":")
    if len(parts) not in (2, 3) or not all(parts):
        return None
    return Credentials(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def amz_date(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC, the form of ``x-amz-date``."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_uri(raw_path: str) -> str:
    """The path as signed by every service but S3: dot segments removed, then
    URI-encoded once more (so an already encoded ``%3A`` is signed as ``%253A``)."""
    segments: list[str] = []
    for segment in (raw_path or "/").split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment not in (".", ""):
            segments.append(segment)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """Query parameters decoded, re-encoded strictly (RFC 3986) and sorted."""
    if not raw_query:
        return ""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append(
            (quote(unquote(key), safe="-_.~"), quote(unquote(value.replace("+", " ")), safe="-_.~"))
        )
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload_hash: str,
) -> str:
    """The canonical request over ``signed_headers`` (lower-case names, sorted)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    canonical_headers = "".join(
        f"{name}:{_SPACES.sub(' ', lowered.get(name, '').strip())}\n" for name in signed_headers
    )
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers,
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def credential_scope(date: str, region: str, service: str) -> str:
    return f"{date}/{region}/{service}/aws4_request"


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, timestamp, scope, sha256_hex(canonical.encode())])


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret_access_key: str, scope: str, to_sign: str) -> str:
    """The hex signature of ``to_sign`` for the credential ``scope`` (date/region/service/...)."""
    date, region, service, _ = scope.split("/")
    key = signing_key(secret_access_key, date, region, service)
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def sign(
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """``headers`` plus ``x-amz-date``, ``x-amz-content-sha256``, the session token
    when there is one, and the ``authorization`` header signing all of them and ``host``.

    ``host`` itself is not returned: the HTTP client derives the same value from the URL.
    """
    moment = now or datetime.now(UTC)
    timestamp = amz_date(moment)
    payload_hash = sha256_hex(body)
    signed: dict[str, str] = {
        name.lower(): value
        for name, value in headers.items()
        if name.lower() not in UNSIGNED_HEADERS
    }
    signed["host"] = host_of(url)  # what proxy.upstream sends
    signed["x-amz-date"] = timestamp
    signed["x-amz-content-sha256"] = payload_hash
    if credentials.session_token:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    parts = urlsplit(url)
    canonical = canonical_request(method, parts.path, parts.query, signed, names, payload_hash)
    scope = credential_scope(timestamp[:8], region, service)
    hex_signature = signature(
        credentials.secret_access_key, scope, string_to_sign(timestamp, scope, canonical)
    )
    result = {**headers, **{k: v for k, v in signed.items() if k != "host"}}
    result["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={hex_signature}"
    )
    return result


@dataclass(frozen=True, slots=True)
class Authorization:
    """The parts of a SigV4 ``Authorization`` header."""

    access_key_id: str
    scope: str
    signed_headers: list[str]
    signature: str

    @property
    def date(self) -> str:
        return self.scope.split("/")[0]

    @property
    def region(self) -> str:
        return self.scope.split("/")[1]

    @property
    def service(self) -> str:
        return self.scope.split("/")[2]


def parse_authorization(value: str) -> Authorization | None:
    """A SigV4 ``Authorization`` header's parts, or None when it is not one."""
    match = _AUTHORIZATION.match(value.strip())
    if match is None:
        return None
    access_key_id, _, scope = match["credential"].partition("/")
    if scope.count("/") != 3 or not scope.endswith("/aws4_request"):
        return None
    return Authorization(
        access_key_id=access_key_id,
        scope=scope,
        signed_headers=match["signed"].split(";"),
        signature=match["signature"],
    )
