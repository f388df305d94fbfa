"""The run's secrets are redacted in every form a reflection takes (issue 14, item 7)."""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote, quote_plus

import pytest

from engine.api.transport import HttpResponse, error_fields
from engine.api.types import BatchActionResult, JobInfo, StatusResult
from engine.redact import REDACTED, RedactingFilter, keep_secret, redact

SECRET = "sk/Very+Secret=value-2026"


@pytest.fixture(autouse=True)
def _kept() -> None:
    keep_secret(SECRET)


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
        base64.b64encode(SECRET.encode()).decode(),
        base64.urlsafe_b64encode(SECRET.encode()).decode(),
    ],
)
def test_every_form_is_redacted(form: str) -> None:
    said = redact(f"the server said: {form}!")
    assert said == f"the server said: {REDACTED}!"


@pytest.mark.parametrize("before", [b"", b"u", b"us", b"user:"])
@pytest.mark.parametrize("after", [b"", b"x", b"xy", b"-tail"])
def test_base64_inside_a_longer_text_at_any_alignment(before: bytes, after: bytes) -> None:
    basic = base64.b64encode(before + SECRET.encode() + after).decode()
    said = redact(f"Authorization: Basic {basic}")
    assert REDACTED in said
    # What is left of the encoding cannot spell the secret again.
    assert base64.b64encode(SECRET.encode()[3:-3]).decode()[:8] not in said


def test_short_values_are_not_kept_they_would_match_words() -> None:
    keep_secret("abc")
    assert redact("abc abcdef") == "abc abcdef"


def test_error_texts_of_a_server_are_redacted_where_they_enter() -> None:
    echo = f'{{"error_code": "DRS.X", "error_msg": "got X-Auth-Token: {SECRET}"}}'
    code, message = error_fields(HttpResponse(status=400, body=echo.encode()))
    assert (code, message) == ("DRS.X", f"got X-Auth-Token: {REDACTED}")
    html = f"<html><pre>X-Auth-Token: {SECRET}</pre></html>".encode()
    assert SECRET not in error_fields(HttpResponse(status=502, body=html))[1]
    answer = HttpResponse(status=500, headers={"X-Request-Id": SECRET})
    assert answer.request_id == REDACTED


def test_the_free_texts_of_wire_types_are_redacted() -> None:
    job = JobInfo.from_wire({"id": "j1", "name": f"n-{SECRET}", "error_msg": SECRET})
    assert (job.id, job.name, job.error_msg) == ("j1", f"n-{REDACTED}", REDACTED)
    result = BatchActionResult.from_wire({"id": "j1", "status": "failed", "error_msg": SECRET})
    assert result.error_msg == REDACTED


def test_the_logging_filter_redacts_the_formatted_line() -> None:
    record = logging.LogRecord("engine", logging.WARNING, __file__, 1, "echo %s", (SECRET,), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == f"echo {REDACTED}"


def test_a_secret_is_redacted_before_any_text_is_cut() -> None:
    long_secret = "L0ng-secret-value-that-is-forty-chars-xx"
    keep_secret(long_secret)
    result = BatchActionResult.from_wire({"id": "j1", "status": long_secret})
    assert result.said is not None
    assert long_secret[:12] not in result.said
    status = StatusResult.from_wire({"id": "j1", "status": long_secret})
    assert status.status == REDACTED


def test_signatures_and_lowercase_escapes_are_redacted() -> None:
    signature = "Signature=" + "ab" * 32
    assert redact(f"Authorization: SDK-HMAC-SHA256 Access=x, {signature}") == (
        f"Authorization: SDK-HMAC-SHA256 Access=x, {REDACTED}"
    )
    lowered = quote(SECRET, safe="").replace("%2F", "%2f").replace("%2B", "%2b")
    assert redact(lowered) == REDACTED
