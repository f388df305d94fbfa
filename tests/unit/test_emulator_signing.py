"""The emulator's AK/SK verifier and its gateway parts (faults, throttle), without sockets.

The verifier's canonical request is checked against strings written by hand from the fact
sheet; the signature as a whole is checked on the wire, against an independent signer, in
``tests/integration/test_emulator_faults.py``.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from fakes import FakeClock

from engine.emulator.faults import (
    NO_FAULTS,
    FaultConfig,
    FaultInjector,
    FaultRoll,
)
from engine.emulator.signing import (
    AkSkVerifier,
    SignatureError,
    SignedRequest,
    canonical_request,
    expected_signature,
    is_signed,
)
from engine.emulator.throttle import RateMeter, Throttle
from engine.units import parse_duration, parse_rate

AK = "EMUTESTAK00000000001"
SK = "s" * 40
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
DATE = "20260301T120000Z"
BODY = b'{"jobs": ["a"]}'


def request(*, body: bytes = BODY, date: str = DATE, signature: str | None = None) -> SignedRequest:
    headers = {
        "Host": "127.0.0.1:8080",
        "Content-Type": "application/json",
        "X-Sdk-Date": date,
        "X-Project-Id": "a" * 32,
    }
    signed = ["content-type", "host", "x-project-id", "x-sdk-date"]
    unsigned = SignedRequest(
        method="POST", raw_path="/v3/p/jobs/batch-status", headers=headers, body=body
    )
    sig = signature or expected_signature(unsigned, signed, date, SK)
    headers["Authorization"] = (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    )
    return SignedRequest(method="POST", raw_path=unsigned.raw_path, headers=headers, body=body)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(100.0)


@pytest.fixture
def verifier(clock: FakeClock) -> AkSkVerifier:
    return AkSkVerifier(keys={AK: SK}, clock=clock, wall_clock=NOW.timestamp)


# --------------------------------------------------------------------------- canonical request


def test_canonical_request_follows_the_fact_sheet_byte_for_byte() -> None:
    signed = SignedRequest(
        method="post",
        raw_path="/v3/p%20q/jobs~x/a%2Bb?b=2&a=x%20y&a=1",
        headers={"Host": "h:1", "X-Sdk-Date": f"  {DATE} ", "Content-Type": "application/json"},
        body=b"",
    )
    assert canonical_request(signed, ["content-type", "host", "x-sdk-date"]) == (
        "POST\n"
        "/v3/p%20q/jobs~x/a%2Bb/\n"
        "a=1&a=x%20y&b=2\n"
        "content-type:application/json\nhost:h:1\nx-sdk-date:20260301T120000Z\n\n"
        "content-type;host;x-sdk-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_canonical_request_hashes_the_body_unless_an_unsigned_payload_is_signed() -> None:
    signed = SignedRequest(
        method="POST",
        raw_path="/v3/",
        headers={"X-Sdk-Content-Sha256": "UNSIGNED-PAYLOAD"},
        body=BODY,
    )
    assert canonical_request(signed, []).endswith(hashlib.sha256(BODY).hexdigest())
    assert canonical_request(signed, ["x-sdk-content-sha256"]).endswith("\nUNSIGNED-PAYLOAD")


def test_is_signed_recognises_only_the_sdk_algorithm() -> None:
    assert is_signed("SDK-HMAC-SHA256 Access=a, SignedHeaders=host, Signature=00")
    assert not is_signed("Bearer x")
    assert not is_signed(None)


# --------------------------------------------------------------------------- verification


def test_a_correct_signature_is_accepted(verifier: AkSkVerifier) -> None:
    assert verifier.verify(request()) == AK


def test_one_changed_body_byte_is_refused(verifier: AkSkVerifier) -> None:
    good = request()
    tampered = SignedRequest(
        method="POST", raw_path=good.raw_path, headers=good.headers, body=BODY.replace(b"a", b"b")
    )
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(tampered)


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        ("20260301T121600Z", "more than 15 minutes off"),
        ("20260301T114400Z", "more than 15 minutes off"),
        ("2026-03-01T12:00:00Z", "is not YYYYMMDDTHHMMSSZ"),
    ],
)
def test_a_skewed_or_malformed_date_is_refused(
    verifier: AkSkVerifier, date: str, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verifier.verify(request(date=date))


def test_a_date_within_fifteen_minutes_is_accepted(verifier: AkSkVerifier) -> None:
    assert verifier.verify(request(date="20260301T121500Z")) == AK


def test_changed_signed_header_missing_header_and_wrong_ak_are_refused(
    verifier: AkSkVerifier,
) -> None:
    good = request()
    changed = dict(good.headers, **{"X-Project-Id": "b" * 32})
    with pytest.raises(SignatureError, match="does not match"):
        verifier.verify(
            SignedRequest(method="POST", raw_path=good.raw_path, headers=changed, body=BODY)
        )
    missing = {k: v for k, v in good.headers.items() if k != "X-Project-Id"}
    with pytest.raises(SignatureError, match="x-project-id is missing"):
        verifier.verify(
            SignedRequest(method="POST", raw_path=good.raw_path, headers=missing, body=BODY)
        )
    wrong_ak = dict(good.headers, Authorization=good.headers["Authorization"].replace(AK, "X" * 20))
    with pytest.raises(SignatureError, match="access key does not exist"):
        verifier.verify(
            SignedRequest(method="POST", raw_path=good.raw_path, headers=wrong_ak, body=BODY)
        )
    garbled = dict(good.headers, Authorization="SDK-HMAC-SHA256 nonsense")
    with pytest.raises(SignatureError, match="not SDK-HMAC-SHA256"):
        verifier.verify(
            SignedRequest(method="POST", raw_path=good.raw_path, headers=garbled, body=BODY)
        )


def test_more_than_five_failures_lock_the_ak_for_five_minutes(
    verifier: AkSkVerifier, clock: FakeClock
) -> None:
    bad = request(signature="0" * 64)
    for _ in range(5):
        with pytest.raises(SignatureError, match="does not match"):
            verifier.verify(bad)
    assert verifier.verify(request()) == AK  # a success resets the count
    for _ in range(6):
        with pytest.raises(SignatureError, match="does not match"):
            verifier.verify(bad)
    with pytest.raises(SignatureError, match="locked"):
        verifier.verify(request())
    clock.now += 299
    with pytest.raises(SignatureError, match="locked"):
        verifier.verify(request())
    clock.now += 1
    assert verifier.verify(request()) == AK


# --------------------------------------------------------------------------- fault config


def test_fault_config_parses_the_cli_form() -> None:
    parsed = FaultConfig.parse(
        "latency=50ms, error_rate=0.05,reset_rate=0.02,lost_response_rate=0.02,"
        "slow_rate=0.01,slow=3s"
    )
    assert parsed == FaultConfig(
        latency_s=0.05,
        error_rate=0.05,
        reset_rate=0.02,
        lost_response_rate=0.02,
        slow_rate=0.01,
        slow_s=3.0,
    )
    assert FaultConfig.parse("") == FaultConfig()
    assert not FaultConfig().enabled
    assert parsed.enabled
    assert FaultConfig.parse(parsed.describe()) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jitter=5ms", "unknown fault 'jitter'; known faults are latency, error_rate"),
        ("latency", "fault 'latency' needs a value"),
        ("latency=", "fault 'latency' needs a value"),
        ("latency=50", "fault 'latency' must be a duration such as 50ms or 2s, got '50'"),
        ("slow=fast", "fault 'slow' must be a duration"),
        ("error_rate=1.5", "fault 'error_rate' must be a number from 0 to 1, got '1.5'"),
        ("reset_rate=-0.1", "fault 'reset_rate' must be a number from 0 to 1"),
        ("slow_rate=often", "fault 'slow_rate' must be a number from 0 to 1, got 'often'"),
        ("error_rate=0.1,error_rate=0.2", "fault 'error_rate' is given twice"),
    ],
)
def test_fault_config_parse_names_the_bad_key(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        FaultConfig.parse(text)


def test_fault_config_refuses_out_of_range_values_when_built_directly() -> None:
    with pytest.raises(ValueError, match="error_rate must be between 0 and 1"):
        FaultConfig(error_rate=2.0)
    with pytest.raises(ValueError, match="latency_s must be >= 0"):
        FaultConfig(latency_s=-1.0)


def test_durations_and_rates() -> None:
    assert parse_duration("50ms") == pytest.approx(0.05)
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("10m") == 600.0
    assert parse_duration("24h") == 86400.0
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration("1d")
    assert parse_rate("20/s") == 20.0
    assert parse_rate("30/m") == 0.5
    # The emulator reads its options with the runbook's grammar: 300/h is a rate in both.
    assert parse_rate("300/h") == pytest.approx(300 / 3600)
    assert FaultConfig.parse("latency=1.5s").latency_s == 1.5
    for bad in ("20", "x/s", "0/s", "-1/s"):
        with pytest.raises(ValueError, match="expected a rate"):
            parse_rate(bad)


def test_same_seed_same_fault_sequence_and_another_seed_differs() -> None:
    config = FaultConfig(error_rate=0.3, reset_rate=0.2, slow_rate=0.2, lost_response_rate=0.2)

    def sequence(seed: int) -> list[FaultRoll]:
        injector = FaultInjector(config, seed)
        return [injector.roll() for _ in range(50)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)
    assert any(r.reset for r in sequence(1)) and any(r.error for r in sequence(1))  # noqa: PT018


def test_no_faults_draws_nothing() -> None:
    injector = FaultInjector(FaultConfig(), 0)
    assert {injector.roll() for _ in range(10)} == {NO_FAULTS}


# --------------------------------------------------------------------------- throttle, meter


def test_throttle_admits_limit_per_sliding_second_per_identity_and_route(clock: FakeClock) -> None:
    throttle = Throttle(3.0, clock)
    assert [throttle.admit("u", "r") for _ in range(4)] == [True, True, True, False]
    assert throttle.admit("u", "other route")
    assert throttle.admit("other user", "r")
    clock.now += 0.5
    assert not throttle.admit("u", "r")  # the first three are still inside the window
    clock.now += 0.5
    assert throttle.admit("u", "r")
    assert throttle.retry_after_s == 1


def test_slow_rate_becomes_one_request_per_longer_window(clock: FakeClock) -> None:
    throttle = Throttle(0.5, clock)
    assert (throttle.limit, throttle.window_s, throttle.retry_after_s) == (1, 2.0, 2)
    assert throttle.admit("u", "r")
    clock.now += 1.9
    assert not throttle.admit("u", "r")
    clock.now += 0.1
    assert throttle.admit("u", "r")


def test_rate_meter_reports_the_busiest_second(clock: FakeClock) -> None:
    meter = RateMeter(clock)
    for step in (0.0, 0.1, 0.2, 0.9, 1.5, 1.6):
        clock.now = 100.0 + step
        meter.record("a")
    meter.record("b")
    assert meter.peak == {"a": 4, "b": 1}
    assert meter.peak_all == 4
