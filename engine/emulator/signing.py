"""The emulator's AK/SK verifier (``SDK-HMAC-SHA256``), written from the API fact sheet alone.

It deliberately does not import the client's signer: the two meet only on the wire, so a test
that passes proves both read the algorithm the same way. What it checks, in this order:

1. ``Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<a;b>, Signature=<hex>``;
2. the AK is known (one per account) and not locked;
3. every header named in ``SignedHeaders`` is present, ``X-Sdk-Date`` among them, and the date
   (``YYYYMMDDTHHMMSSZ``) is within 15 minutes of the emulator's wall clock;
4. the signature: hex HMAC-SHA256(SK, ``SDK-HMAC-SHA256\\n<date>\\n<hex sha256(canonical)>``),
   where the canonical request is the method, the canonical URI (the path percent-decoded, each
   segment re-encoded keeping only unreserved characters, with a trailing ``/``), the canonical
   query (sorted ``k=v``, encoded the same way), ``name:trimmed-value\\n`` per signed header, the
   signed-header list, and the hex SHA-256 of the body (or the value of a signed
   ``X-Sdk-Content-Sha256`` header, which is how the SDK marks an ``UNSIGNED-PAYLOAD``).

More than ``LOCK_AFTER_FAILURES`` consecutive failures for one AK lock it for ``LOCK_S`` seconds
on the fleet clock; while locked even a correct signature is refused. A success resets the count.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

Clock = Callable[[], float]

ALGORITHM = "SDK-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
LOCK_AFTER_FAILURES = 5
LOCK_S = 5 * 60

_AUTHORIZATION = re.compile(
    rf"{ALGORITHM}\s+Access=(?P<ak>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<signature>[0-9a-fA-F]+)\s*"
)


class SignatureError(Exception):
    """A request's AK/SK signature was refused; ``reason`` says why (for ``error_msg``).
    ``clock_skew``: refused for its ``X-Sdk-Date`` alone (``APIGW.0303``, where every other
    AK/SK failure is ``APIGW.0301``, as Huawei's FAQs have it)."""

    def __init__(self, reason: str, *, clock_skew: bool = False) -> None:
        self.reason = reason
        self.clock_skew = clock_skew
        super().__init__(reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedRequest:
    """What the verifier needs from an HTTP request, as received."""

    method: str
    raw_path: str  # path and query exactly as on the request line
    headers: Mapping[str, str]  # case-insensitive lookups are done here, not by the caller
    body: bytes


def is_signed(authorization: str | None) -> bool:
    """Whether an ``Authorization`` header claims AK/SK signing."""
    return authorization is not None and authorization.lstrip().startswith(ALGORITHM)


def _encode(text: str) -> str:
    # unreserved only: letters, digits and - _ . ~
    return quote(text, safe="~")


def _canonical_uri(path: str) -> str:
    uri = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _canonical_query(query: str) -> str:
    pairs = []
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        pairs.append(f"{_encode(unquote(key))}={_encode(unquote(value))}")
    return "&".join(sorted(pairs))


def canonical_request(request: SignedRequest, signed: list[str]) -> str:
    """The canonical request over the ``signed`` header names (lower-case, all present)."""
    lowered = {name.lower(): value for name, value in request.headers.items()}
    path, _, query = request.raw_path.partition("?")
    payload_hash = lowered.get("x-sdk-content-sha256") if "x-sdk-content-sha256" in signed else None
    if payload_hash is None:
        payload_hash = hashlib.sha256(request.body).hexdigest()
    canonical_headers = "".join(f"{name}:{lowered[name].strip()}\n" for name in signed)
    return "\n".join(
        (
            request.method.upper(),
            _canonical_uri(path),
            _canonical_query(query),
            canonical_headers,
            ";".join(signed),
            payload_hash,
        )
    )


def expected_signature(request: SignedRequest, signed: list[str], date: str, sk: str) -> str:
    """The hex signature a correct signer computes for this request."""
    digest = hashlib.sha256(canonical_request(request, signed).encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(sk.encode(), to_sign.encode(), hashlib.sha256).hexdigest()


class AkSkVerifier:
    """Verifies signatures for the known AK/SK pairs (one per account) and keeps each AK's
    lockout state."""

    def __init__(self, *, keys: Mapping[str, str], clock: Clock, wall_clock: Clock) -> None:
        self._keys = dict(keys)  # AK -> SK
        self._clock = clock
        self._wall_clock = wall_clock
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}

    def verify(self, request: SignedRequest) -> str:
        """The verified AK, or SignatureError (which also counts towards the AK's lockout)."""
        authorization = next(
            (v for k, v in request.headers.items() if k.lower() == "authorization"), ""
        )
        match = _AUTHORIZATION.fullmatch(authorization.strip())
        if match is None:
            raise SignatureError("the Authorization header is not SDK-HMAC-SHA256 Access=...")
        ak = match["ak"]
        now = self._clock()
        locked_until = self._locked_until.get(ak)
        if locked_until is not None:
            if now < locked_until:
                raise SignatureError(
                    f"the access key is locked for {LOCK_S // 60} minutes after more than "
                    f"{LOCK_AFTER_FAILURES} consecutive signature failures"
                )
            del self._locked_until[ak]
        try:
            self._check(request, ak, match["signed"], match["signature"].lower())
        except SignatureError:
            failures = self._failures.get(ak, 0) + 1
            self._failures[ak] = failures
            if failures > LOCK_AFTER_FAILURES:
                self._locked_until[ak] = now + LOCK_S
                self._failures[ak] = 0
            raise
        self._failures.pop(ak, None)
        return ak

    def _check(self, request: SignedRequest, ak: str, signed_list: str, signature: str) -> None:
        sk = self._keys.get(ak)
        if sk is None:
            raise SignatureError("the access key does not exist")
        signed = signed_list.lower().split(";")
        present = {name.lower() for name in request.headers}
        missing = [name for name in signed if name not in present]
        if missing:
            raise SignatureError(f"signed header {missing[0]} is missing from the request")
        if "x-sdk-date" not in signed:
            raise SignatureError("X-Sdk-Date must be signed")
        date = next(v for k, v in request.headers.items() if k.lower() == "x-sdk-date").strip()
        try:
            moment = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise SignatureError(f"X-Sdk-Date {date!r} is not YYYYMMDDTHHMMSSZ") from None
        if abs(moment.timestamp() - self._wall_clock()) > MAX_SKEW_S:
            raise SignatureError(
                f"X-Sdk-Date {date} is more than 15 minutes off the server time", clock_skew=True
            )
        wanted = expected_signature(request, signed, date, sk)
        if not hmac.compare_digest(wanted, signature):
            raise SignatureError("the signature does not match")
