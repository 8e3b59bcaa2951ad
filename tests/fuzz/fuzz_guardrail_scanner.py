"""The guardrail scanners (``governance.guardrails``, ``proxy.guarding``): any
text gives findings in order, inside the text and not overlapping; in a JSON
text whose findings all redact, the redacted text is still JSON (the promise
``json_findings`` makes for tool-call arguments)."""

from __future__ import annotations

import os
import sys

import atheris

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

with atheris.instrument_imports(include=["governance.guardrails", "proxy.guarding"]):
    import django

    django.setup()
    import orjson

    from governance.guardrails import BLOCK, DETECTORS, REDACT, Rule, Scanner, redact
    from proxy.guarding import json_findings

SCANNER = Scanner(detectors={detector.name: Rule(REDACT) for detector in DETECTORS})


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    findings = SCANNER.scan(text)
    reach = 0
    for finding in findings:
        assert reach <= finding.start < finding.end <= len(text), (text, finding)
        reach = finding.end
    redact(text, findings)
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    found = json_findings(SCANNER, text)
    if found and all(finding.action != BLOCK for finding in found):
        redacted = redact(text, found)
        try:
            orjson.loads(redacted)
        except orjson.JSONDecodeError:
            raise AssertionError((text, redacted)) from None


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
