"""Guardrails: finding secrets, personal data and forbidden text, and what to do about it.

Plain Python over precompiled regular expressions; no ORM. The built-in
detectors of a rule set are joined into one alternation and scanned in one
pass; a candidate that fails its check (Luhn, mod-97, the SSN ranges, a
JWT's header, a credential's entropy) is dropped and the scan resumes one
character later. Custom deny patterns are compiled one by one (a user's
pattern may carry its own groups and flags).

Policies attach globally, per customer, per team and per key; every one that
applies to a request is in force (:func:`resolve`). Where two policies turn
on the same rule, the strictest action wins (block over redact over flag); a
match is exempt from a rule only when every policy turning that rule on
allows it (allow patterns narrow, never widen, what a policy above
decided); the limits take the lowest value set.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

BLOCK = "block"
REDACT = "redact"
FLAG = "flag"
ACTIONS = (BLOCK, REDACT, FLAG)
# Higher is stricter.
STRICTNESS = {FLAG: 1, REDACT: 2, BLOCK: 3}

REQUEST = "request"
RESPONSE = "response"
BOTH = "both"

# A policy's rules, as stored (``GuardrailPolicy``) and read into the snapshot.
RULE_FIELDS = (
    "direction",
    "detectors",
    "deny_patterns",
    "allow_patterns",
    "max_input_tokens",
    "max_messages",
)
# Rules that are not text detectors: a request over them is refused.
LIMIT_RULES = ("max_input_tokens", "max_messages")
CUSTOM_PREFIX = "custom:"


# --- checks of candidates ---------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card(text: str) -> bool:
    digits = text.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    # Issuers' ranges start with 2 to 6 (Mastercard, Visa, Amex, Discover, UnionPay…).
    return digits[0] in "23456" and luhn_valid(digits)


# Lengths of the IBANs of the countries most often seen; others are checked by mod-97 only.
IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21,
    "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21,
    "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24,
    "SI": 19, "SK": 24, "SM": 27, "TR": 26,
}  # fmt: skip


def iban_valid(text: str) -> bool:
    """ISO 13616: the country's length and the mod-97 check."""
    iban = text.replace(" ", "")
    expected = IBAN_LENGTHS.get(iban[:2])
    if not 15 <= len(iban) <= 34 or (expected is not None and len(iban) != expected):
        return False
    moved = iban[4:] + iban[:4]
    number = "".join(str(int(char, 36)) for char in moved)
    return int(number) % 97 == 1


# Numbers the Social Security Administration never issued or voided after misuse.
SSN_VOID = frozenset({"078-05-1120", "219-09-9999", "123-45-6789"})


def _ssn(text: str) -> bool:
    area, group, serial = text.split("-")
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        and text not in SSN_VOID
    )


def _phone(text: str) -> bool:
    digits = sum(char.isdigit() for char in text)
    if text.startswith("+"):
        return 8 <= digits <= 15
    # North American numbers: area code and exchange do not start with 0 or 1.
    plain = [char for char in text if char.isdigit()]
    return digits == 10 and plain[0] not in "01" and plain[3] not in "01"


def _jwt(text: str) -> bool:
    header = text.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        return isinstance(orjson.loads(decoded), dict)
    except (binascii.Error, ValueError):
        return False


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``."""
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    size = len(text)
    return -sum(n / size * math.log2(n / size) for n in counts.values())


def _credential(value: str) -> bool:
    """A value assigned to a credential-like name that looks generated, not a word."""
    if value[0] in "$<{%[(" or value.lower() in ("password", "changeme", "redacted"):
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    return classes >= 3 and shannon_entropy(value) >= 3.0


# --- the detectors ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detector:
    """One built-in detector: its pattern, the check of a candidate, its placeholder.

    Patterns start with a literal or a character class wherever they can, so
    that the regular expression engine skips ahead at C speed; a word boundary
    before the match (``bounded``) and the name a credential is assigned to
    (``context``: what the text just before the match must end with) are
    tested only on candidates. A group named ``v`` is the part that is the
    finding (a credential's value, not the name it is assigned to).
    """

    name: str
    category: str  # "secret" or "personal_data"
    pattern: str
    check: Callable[[str], bool] | None = None
    bounded: bool = False
    context: str | None = None
    # Only texts holding one of these (lower-cased) need the pattern at all.
    needs: tuple[str, ...] = ()
    # Searched only inside runs of digits and separators (see NUMERIC_RUN).
    numeric: bool = False
    # Found by this function instead of by searching the pattern from every position.
    finder: Callable[[str], Iterable[tuple[int, int]]] | None = None

    @property
    def placeholder(self) -> str:
        if self.category == "secret":
            return f"[SECRET:{self.name}]"
        return f"[{self.name.upper()}]"


_CREDENTIAL_NAMES = (
    r"password|passwd|pwd|passphrase|secret|client[_-]?secret|token|auth[_-]?token|"
    r"access[_-]?token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
)
# Where card numbers, SSNs and phone numbers can be: nine or more digits and
# separators. Found in one pass, so that the detectors starting with a digit
# (which the regular expression engine cannot skip ahead to) search only there.
NUMERIC_RUN = re.compile(r"\d[\d ().-]{7,}\d")
# How far before a candidate its context (a credential's name) is looked for.
CONTEXT_CHARS = 48

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "private_key",
        "secret",
        r"-----BEGIN [A-Z0-9 ]{0,20}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:[\s\S]*?-----END [A-Z0-9 ]{0,20}PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s]*)",
    ),
    Detector("anthropic_key", "secret", r"sk-ant-[a-z]{3,8}\d{2}-[A-Za-z0-9_-]{20,}", bounded=True),
    Detector(
        "openai_key",
        "secret",
        r"sk-(?:proj-|svcacct-|admin-|None-)?(?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}",
        bounded=True,
    ),
    Detector("google_api_key", "secret", r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", bounded=True),
    Detector("huggingface_token", "secret", r"hf_[A-Za-z0-9]{34,}\b", bounded=True),
    Detector(
        "stripe_key", "secret", r"[sr]k_live_[0-9A-Za-z]{24,}\b", bounded=True, needs=("_live_",)
    ),
    Detector("aws_access_key", "secret", r"A[KSBC][IC]A[0-9A-Z]{16}\b", bounded=True),
    Detector(
        "aws_secret_key",
        "secret",
        r"[:=]\s*[\"']?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
        lambda value: shannon_entropy(value) >= 3.5,
        context=r"(?i:aws[_\-. ]?secret[_\-. ]?(?:access[_\-. ]?)?key)[\"']?\s*\Z",
        needs=("aws",),
    ),
    Detector(
        "github_token",
        "secret",
        r"gh[pousr]_[A-Za-z0-9]{36,255}\b|github_pat_[A-Za-z0-9_]{22,255}\b",
        bounded=True,
    ),
    Detector("gitlab_token", "secret", r"gl(?:pat|dt|rt|ptt)-[A-Za-z0-9_-]{20,}", bounded=True),
    Detector("slack_token", "secret", r"xox[abposr]-[A-Za-z0-9-]{10,}", bounded=True),
    Detector(
        "slack_webhook",
        "secret",
        r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+",
    ),
    Detector(
        "jwt",
        "secret",
        r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{10,}",
        _jwt,
        bounded=True,
    ),
    Detector(
        "generic_credential",
        "secret",
        r"[:=][ \t]*[\"']?(?P<v>[^\s\"'`,;]{8,})",
        _credential,
        needs=("pass", "pwd", "secret", "token", "key"),
        context=rf"(?i:\b(?:{_CREDENTIAL_NAMES}))[\"']?[ \t]*\Z",
    ),
    Detector(
        "card_number",
        "personal_data",
        r"\d(?:[ -]?+\d){12,18}+\b",
        _card,
        bounded=True,
        numeric=True,
    ),
    Detector(
        "iban",
        "personal_data",
        r"[A-Z][A-Z]\d\d(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        iban_valid,
        bounded=True,
    ),
    Detector(
        "us_ssn", "personal_data", r"\d\d\d-\d\d-\d\d\d\d\b", _ssn, bounded=True, numeric=True
    ),
    Detector(
        "email",
        "personal_data",
        r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b",
        needs=("@",),
        finder=lambda text: _emails(text),
    ),
    Detector(
        "phone",
        "personal_data",
        r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}(?!\w)"
        r"|\(\d\d\d\) ?\d\d\d[ .-]\d{4}\b"
        r"|\d\d\d[.-]\d\d\d[.-]\d{4}\b",
        _phone,
        bounded=True,
        numeric=True,
    ),
)
BY_NAME = {detector.name: detector for detector in DETECTORS}
VALUED = frozenset(d.name for d in DETECTORS if "(?P<v>" in d.pattern)
# Names a policy's rules may use for a whole category at once.
CATEGORIES = {
    "secrets": tuple(d.name for d in DETECTORS if d.category == "secret"),
    "personal_data": tuple(d.name for d in DETECTORS if d.category == "personal_data"),
}


def detector_names(names: Iterable[str]) -> list[str]:
    """Detector names with categories expanded; raises ``ValueError`` on an unknown one."""
    out: list[str] = []
    for name in names:
        if name in CATEGORIES:
            out.extend(CATEGORIES[name])
        elif name in BY_NAME:
            out.append(name)
        else:
            raise ValueError(f"unknown detector {name!r}")
    return out


# --- scanning -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Finding:
    """A match of a rule in a text: where, which rule, what to do, what replaces it."""

    start: int
    end: int
    rule: str
    action: str
    placeholder: str


@dataclass(frozen=True, slots=True)
class CustomPattern:
    name: str
    pattern: str
    action: str


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class _Compiled:
    detector: Detector
    regex: re.Pattern[str]
    context: re.Pattern[str] | None
    valued: bool
    order: int


COMPILED = {
    detector.name: _Compiled(
        detector,
        re.compile(detector.pattern),
        re.compile(detector.context) if detector.context else None,
        "(?P<v>" in detector.pattern,
        order,
    )
    for order, detector in enumerate(DETECTORS)
}


_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9._%+-]{1,64}\Z")
_EMAIL_DOMAIN = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"\.[A-Za-z]{2,24}\b"
)


def _emails(text: str) -> Iterable[tuple[int, int]]:
    """Emails found from each ``@`` outwards: searching the local part from every
    position costs several times more."""
    at = text.find("@")
    while at >= 0:
        local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1) if local else None
        if local is not None and domain is not None:
            yield local.start(), domain.end()
            at = text.find("@", domain.end())
        else:
            at = text.find("@", at + 1)


def _numeric_runs(text: str) -> list[tuple[int, int]]:
    """Spans of :data:`NUMERIC_RUN`, each with the ``+`` or ``(`` opening it."""
    runs = []
    for match in NUMERIC_RUN.finditer(text):
        start = match.start()
        if start and text[start - 1] in "+(":
            start -= 1
        runs.append((start, match.end()))
    return runs


def _word_before(text: str, start: int) -> bool:
    if not start:
        return False
    char = text[start - 1]
    return char.isalnum() or char == "_"


def _candidates(
    compiled: _Compiled, text: str, begin: int = 0, end: int | None = None
) -> Iterable[tuple[int, int]]:
    """Spans of ``compiled``'s findings in ``text``; a rejected candidate lets the
    search resume one character later (a shorter match may start inside it)."""
    detector, search, context = compiled.detector, compiled.regex.search, compiled.context
    position = begin
    end = len(text) if end is None else end
    while True:
        match = search(text, position, end)
        if match is None:
            return
        start = match.start()
        position = start + 1
        if detector.bounded and _word_before(text, start):
            continue
        if context is not None and not context.search(text, max(0, start - CONTEXT_CHARS), start):
            continue
        span = match.span("v") if compiled.valued else match.span()
        if detector.check is not None and not detector.check(text[span[0] : span[1]]):
            continue
        yield span
        position = match.end()


@dataclass(frozen=True, slots=True)
class Rule:
    action: str
    allow: tuple[str, ...] = ()  # patterns whose full match exempts a finding


@dataclass(frozen=True)
class Scanner:
    """The text rules of one direction of one resolved policy."""

    detectors: dict[str, Rule]
    custom: tuple[tuple[CustomPattern, tuple[str, ...]], ...] = ()
    _compiled: tuple[_Compiled, ...] = field(init=False, default=(), repr=False)

    def __post_init__(self) -> None:
        chosen = tuple(COMPILED[d.name] for d in DETECTORS if d.name in self.detectors)
        object.__setattr__(self, "_compiled", chosen)

    def __bool__(self) -> bool:
        return bool(self.detectors or self.custom)

    def scan(self, text: str) -> list[Finding]:
        """The findings in ``text`` by position; of overlapping matches, the
        leftmost (then longest, then first detector) is the one kept."""
        found: list[tuple[int, int, int, Finding]] = []
        lowered: str | None = None
        runs: list[tuple[int, int]] | None = None
        for compiled in self._compiled:
            detector = compiled.detector
            if detector.needs:
                if lowered is None:
                    lowered = text.lower()
                if not any(need in lowered for need in detector.needs):
                    continue
            rule = self.detectors[detector.name]
            if detector.finder is not None:
                spans = list(detector.finder(text))
            elif detector.numeric:
                if runs is None:
                    runs = _numeric_runs(text)
                spans = [span for run in runs for span in _candidates(compiled, text, *run)]
            else:
                spans = list(_candidates(compiled, text))
            for start, end in spans:
                if rule.allow and _allowed(rule.allow, text[start:end]):
                    continue
                finding = Finding(start, end, detector.name, rule.action, detector.placeholder)
                found.append((start, start - end, compiled.order, finding))
        for order, (pattern, allow) in enumerate(self.custom, start=len(DETECTORS)):
            for match in _compiled(pattern.pattern).finditer(text):
                if match.end() == match.start() or _allowed(allow, match.group()):
                    continue
                finding = Finding(
                    match.start(),
                    match.end(),
                    CUSTOM_PREFIX + pattern.name,
                    pattern.action,
                    f"[REDACTED:{pattern.name}]",
                )
                found.append((match.start(), match.start() - match.end(), order, finding))
        if not found:
            return []
        found.sort(key=lambda item: item[:3])
        findings: list[Finding] = []
        reach = -1
        for _, _, _, finding in found:
            if finding.start >= reach:
                findings.append(finding)
                reach = finding.end
        return findings


def _allowed(allow: tuple[str, ...], text: str) -> bool:
    return any(_compiled(pattern).fullmatch(text) for pattern in allow)


def redact(text: str, findings: list[Finding]) -> str:
    """``text`` with the redacting findings replaced by their placeholders
    (of overlapping findings, the first one's span wins)."""
    out: list[str] = []
    position = 0
    for finding in findings:
        if finding.action != REDACT or finding.start < position:
            continue
        out.append(text[position : finding.start])
        out.append(finding.placeholder)
        position = finding.end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


# --- policies and their resolution --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyRow:
    """One guardrail policy as the snapshot reads it (see ``GuardrailPolicy``)."""

    id: int
    direction: str
    detectors: dict[str, str]
    deny: tuple[CustomPattern, ...]
    allow: tuple[str, ...]
    max_input_tokens: int | None
    max_messages: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PolicyRow:
        detectors: dict[str, str] = {}
        for name, action in (row["detectors"] or {}).items():
            for detector in detector_names([name]):
                detectors[detector] = _stricter(detectors.get(detector), action)
        return cls(
            id=row["id"],
            direction=row["direction"],
            detectors=detectors,
            deny=tuple(
                CustomPattern(item["name"], item["pattern"], item.get("action") or BLOCK)
                for item in row["deny_patterns"] or ()
            ),
            allow=tuple(row["allow_patterns"] or ()),
            max_input_tokens=row["max_input_tokens"],
            max_messages=row["max_messages"],
        )

    def applies_to(self, direction: str) -> bool:
        return self.direction in (direction, BOTH)


def _stricter(current: str | None, action: str) -> str:
    if current is None or STRICTNESS[action] > STRICTNESS[current]:
        return action
    return current


def _lowest(values: Iterable[int | None]) -> int | None:
    present = [value for value in values if value is not None]
    return min(present) if present else None


@dataclass(frozen=True)
class Guardrails:
    """Everything in force for a key, by direction; ``None`` where nothing applies."""

    request: Scanner | None
    response: Scanner | None
    max_input_tokens: int | None = None
    max_messages: int | None = None

    @property
    def checks_request(self) -> bool:
        return bool(self.request) or self.max_input_tokens is not None or bool(self.max_messages)


def _scanner(policies: list[PolicyRow]) -> Scanner | None:
    actions: dict[str, str] = {}
    allows: dict[str, set[str] | None] = {}
    for policy in policies:
        for name, action in policy.detectors.items():
            actions[name] = _stricter(actions.get(name), action)
            # Exempt only what every policy turning the rule on allows.
            previous = allows.get(name)
            mine = set(policy.allow)
            allows[name] = mine if previous is None else previous & mine
    custom: dict[tuple[str, str], tuple[CustomPattern, set[str]]] = {}
    for policy in policies:
        for pattern in policy.deny:
            key = (pattern.name, pattern.pattern)
            seen = custom.get(key)
            if seen is None:
                custom[key] = (pattern, set(policy.allow))
            else:
                stricter = _stricter(seen[0].action, pattern.action)
                custom[key] = (
                    CustomPattern(pattern.name, pattern.pattern, stricter),
                    seen[1] & set(policy.allow),
                )
    if not actions and not custom:
        return None
    return Scanner(
        detectors={
            name: Rule(action, tuple(sorted(allows.get(name) or ())))
            for name, action in actions.items()
        },
        custom=tuple((pattern, tuple(sorted(allow))) for pattern, allow in custom.values()),
    )


def resolve(policies: list[PolicyRow]) -> Guardrails | None:
    """The guardrails of a request under ``policies`` (global, customer, team, key)."""
    if not policies:
        return None
    inbound = [policy for policy in policies if policy.applies_to(REQUEST)]
    outbound = [policy for policy in policies if policy.applies_to(RESPONSE)]
    guardrails = Guardrails(
        request=_scanner(inbound),
        response=_scanner(outbound),
        max_input_tokens=_lowest(p.max_input_tokens for p in inbound),
        max_messages=_lowest(p.max_messages for p in inbound),
    )
    if not guardrails.checks_request and guardrails.response is None:
        return None
    return guardrails


def validate_rules(detectors: Any, deny_patterns: Any, allow_patterns: Any) -> dict[str, str]:
    """Errors of a policy's rules by field (empty when they are valid)."""
    errors: dict[str, str] = {}
    if not isinstance(detectors, dict):
        errors["detectors"] = "a mapping of detector (or category) name to action"
    else:
        try:
            detector_names(detectors)
        except ValueError as exc:
            errors["detectors"] = f"{exc}; known: {', '.join([*CATEGORIES, *BY_NAME])}"
        else:
            wrong = [name for name, action in detectors.items() if action not in ACTIONS]
            if wrong:
                errors["detectors"] = f"the action of {wrong[0]} must be one of {ACTIONS}"
    if not isinstance(deny_patterns, list):
        errors["deny_patterns"] = "a list of {name, pattern, action}"
    else:
        for item in deny_patterns:
            problem = _deny_problem(item)
            if problem:
                errors["deny_patterns"] = problem
                break
    if not isinstance(allow_patterns, list) or not all(
        isinstance(item, str) for item in allow_patterns
    ):
        errors["allow_patterns"] = "a list of regular expressions"
    else:
        for pattern in allow_patterns:
            problem = _regex_problem(pattern)
            if problem:
                errors["allow_patterns"] = problem
                break
    return errors


def _deny_problem(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        return "each deny pattern needs a name"
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", item["name"]):
        return f"the name {item['name']!r} may hold letters, digits, '_', '.' and '-' only"
    if item.get("action", BLOCK) not in ACTIONS:
        return f"the action of {item['name']} must be one of {ACTIONS}"
    if not isinstance(item.get("pattern"), str) or not item["pattern"]:
        return f"the deny pattern {item['name']} needs a pattern"
    return _regex_problem(item["pattern"])


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"{pattern!r} is not a valid regular expression: {exc}"
    return None
