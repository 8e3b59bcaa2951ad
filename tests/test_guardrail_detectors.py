"""Each guardrail detector finds what it is for, and leaves look-alikes alone."""

from __future__ import annotations

import pytest

from governance.guardrails import (
    BY_NAME,
    DETECTORS,
    CustomPattern,
    Rule,
    Scanner,
    iban_valid,
    luhn_valid,
    redact,
)

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)
EVERY_DETECTOR = Scanner(detectors={d.name: Rule("redact") for d in DETECTORS})

# (detector, text holding one match, the match)
TRUE_POSITIVES = [
    (
        "openai_key",
        "use sk-proj-abc123DEF456ghi789JKL012mno please",
        "sk-proj-abc123DEF456ghi789JKL012mno",
    ),
    (
        "openai_key",
        "key=sk-4f9aB2cD8eF1gH3iJ5kL7mN9oP0qR2sT4uV6wX8yZ0aB1cD",
        "sk-4f9aB2cD8eF1gH3iJ5kL7mN9oP0qR2sT4uV6wX8yZ0aB1cD",
    ),
    (
        "anthropic_key",
        "export KEY sk-ant-api03-Zx9_Yw8vUt7sRq6pOn5mLk4jIh3gFe2dCb1a-AA",
        "sk-ant-api03-Zx9_Yw8vUt7sRq6pOn5mLk4jIh3gFe2dCb1a-AA",
    ),
    (
        "google_api_key",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q is it",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    ),
    (
        "huggingface_token",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789 here",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ),
    (
        "stripe_key",
        "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc ok",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    ),
    ("aws_access_key", "id AKIAIOSFODNN7EXAMPLE and", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "temporary ASIAY34FZKBOKMUTVV7A.", "ASIAY34FZKBOKMUTVV7A"),
    (
        "aws_secret_key",
        'aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "github_token",
        "token ghp_16C7e42F292c6912E7710c838347Ae178B4a here",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    ),
    (
        "github_token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    ),
    ("gitlab_token", "use glpat-xR4nd0mT0k3nV4lu3zz1 for CI", "glpat-xR4nd0mT0k3nV4lu3zz1"),
    ("slack_token", "bot xoxb-2048-4096-AbCdEfGhIjKlMnOp works", "xoxb-2048-4096-AbCdEfGhIjKlMnOp"),
    (
        "slack_webhook",
        "post to https://hooks.slack.com/services/T0ABC1234/B0DEF5678/XyZ123abcDEF456ghi now",
        "https://hooks.slack.com/services/T0ABC1234/B0DEF5678/XyZ123abcDEF456ghi",
    ),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----",
    ),
    (
        "private_key",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=",
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=",
    ),
    (
        "jwt",
        "Bearer " + JWT,
        JWT,
    ),
    ("generic_credential", "db password: Xk9#mP2$vL7q!", "Xk9#mP2$vL7q!"),
    ("generic_credential", 'client_secret="q8R2-fT5yU1wE4zX7cV0"', "q8R2-fT5yU1wE4zX7cV0"),
    ("card_number", "card 4111 1111 1111 1111 exp 12/29", "4111 1111 1111 1111"),
    ("card_number", "amex 378282246310005.", "378282246310005"),
    ("card_number", "mc 5555-5555-5555-4444", "5555-5555-5555-4444"),
    ("iban", "pay to DE89 3704 0044 0532 0130 00 today", "DE89 3704 0044 0532 0130 00"),
    ("iban", "IBAN GB82WEST12345698765432", "GB82WEST12345698765432"),
    ("us_ssn", "SSN 536-22-1234 on file", "536-22-1234"),
    (
        "email",
        "write to jane.doe+news@mail.example.co.uk today",
        "jane.doe+news@mail.example.co.uk",
    ),
    ("phone", "call +1 415 555 2671 now", "+1 415 555 2671"),
    ("phone", "call (415) 555-2671 now", "(415) 555-2671"),
    ("phone", "call 415-555-2671 now", "415-555-2671"),
    ("phone", "ring +44 20 7946 0958 today", "+44 20 7946 0958"),
]

# (detector, text that must not be a finding of it)
FALSE_POSITIVES = [
    ("openai_key", "a task-management-system-for-everyone and risk-assessment-framework"),
    ("openai_key", "sk-learn-is-the-name-people-use-for-it"),
    ("aws_access_key", "AKIA is a prefix, AKIAIOSFODNN7 is too short"),
    (
        "aws_secret_key",
        "the secret key is forty chars of nothing: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ),
    ("jwt", "eyJhbGciOi.eyJzdWIiOiIx.not-base64-json-at-all"),
    ("jwt", "eyJub3QganNvbiBhdCBhbGwgaGVyZQ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijklmn"),
    ("generic_credential", "the token: placeholder, password: hunter, secret = ${DB_SECRET}"),
    ("generic_credential", "Use a token = abcdefghijkl when testing"),
    ("card_number", "card 4111 1111 1111 1112 fails the Luhn check"),
    ("card_number", "zeros 0000 0000 0000 0000 and order 1234 5678 9012"),
    ("card_number", "the id 12345678901234567890123 is too long"),
    ("iban", "DE89 3704 0044 0532 0130 02 fails mod-97"),
    ("iban", "GB82WEST1234569876543 has the wrong length"),
    ("us_ssn", "000-12-3456, 666-12-3456, 912-34-5678, 536-00-1234 and 123-45-6789"),
    ("email", "a decorator @property and user@localhost"),
    ("phone", "on 2024-01-15 at 10:30, version 1.2.3, ip 192.168.1.100, 10.000.000 units"),
    ("phone", "the number 123-456-7890 has an impossible area code"),
]

ORDINARY = [
    "The quick brown fox jumps over the lazy dog.",
    "Please summarise the meeting notes from 2024-01-15 and list the action items.",
    "Request 123e4567-e89b-12d3-a456-426614174000 failed with status 502 after 3 retries.",
    "def add(a: int, b: int) -> int:\n    return a + b  # token counting helper",
    "Our API key rotation policy requires a new key every 90 days.",
    "SHA-256 of the file: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
]


@pytest.mark.parametrize(("name", "text", "match"), TRUE_POSITIVES)
def test_a_detector_finds_its_kind_of_value(name, text, match):
    findings = Scanner(detectors={name: Rule("redact")}).scan(text)
    assert [(f.rule, text[f.start : f.end]) for f in findings] == [(name, match)]


@pytest.mark.parametrize(("name", "text", "match"), TRUE_POSITIVES)
def test_with_every_detector_on_a_value_is_found_once_and_by_its_own_detector(name, text, match):
    findings = EVERY_DETECTOR.scan(text)
    assert [(f.rule, text[f.start : f.end]) for f in findings] == [(name, match)]


@pytest.mark.parametrize(("name", "text"), FALSE_POSITIVES)
def test_a_look_alike_is_not_a_finding(name, text):
    assert Scanner(detectors={name: Rule("block")}).scan(text) == []


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_has_no_findings_with_every_detector_on(text):
    assert EVERY_DETECTOR.scan(text) == []


def test_every_detector_has_a_true_and_a_false_positive_case():
    covered = {name for name, _, _ in TRUE_POSITIVES}
    assert covered == set(BY_NAME)
    checked = {name for name, _ in FALSE_POSITIVES}
    # Detectors with a literal prefix and a fixed shape are covered by ORDINARY text.
    assert checked >= {"openai_key", "aws_access_key", "jwt", "generic_credential", "card_number"}
    assert checked >= {"iban", "us_ssn", "email", "phone", "aws_secret_key"}


def test_redaction_puts_a_typed_placeholder_in_place_of_each_match():
    text = "mail jane@example.com, key AKIAIOSFODNN7EXAMPLE, card 4111111111111111"
    assert redact(text, EVERY_DETECTOR.scan(text)) == (
        "mail [EMAIL], key [SECRET:aws_access_key], card [CARD_NUMBER]"
    )


def test_a_credential_keeps_its_name_and_loses_its_value():
    text = "password=Xk9#mP2$vL7q and nothing else"
    assert redact(text, EVERY_DETECTOR.scan(text)) == (
        "password=[SECRET:generic_credential] and nothing else"
    )


def test_a_custom_deny_pattern_is_found_with_its_own_name_and_placeholder():
    scanner = Scanner(
        detectors={}, custom=((CustomPattern("project", r"Project [A-Z]{4}", "redact"), ()),)
    )
    text = "about Project ORCA and Project X"
    findings = scanner.scan(text)
    assert [f.rule for f in findings] == ["custom:project"]
    assert redact(text, findings) == "about [REDACTED:project] and Project X"


def test_an_allow_pattern_exempts_the_matches_it_matches_whole():
    scanner = Scanner(detectors={"email": Rule("redact", allow=(r".*@example\.com",))})
    text = "support@example.com or jane@corp.io"
    assert [text[f.start : f.end] for f in scanner.scan(text)] == ["jane@corp.io"]


def test_the_checksums_are_the_published_ones():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert iban_valid("FR1420041010050500013M02606")
    assert not iban_valid("FR1420041010050500013M02607")
