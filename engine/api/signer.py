"""AK/SK request signing (``SDK-HMAC-SHA256``), byte for byte as ``huaweicloudsdkcore`` signs.

The algorithm follows ``huaweicloudsdkcore/signer/signer.py`` (``Signer.sign``, version 3.1.219):

1. add ``X-Sdk-Date`` (UTC, ``YYYYMMDDTHHMMSSZ``) and ``Host`` unless the request has them;
   a request whose ``Content-Type`` is neither JSON nor BSON gets
   ``X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD``;
2. signed headers: every header whose name has no ``_``, lower-cased, sorted, joined by ``;``;
3. canonical request: method, canonical URI (the path percent-*decoded*, split on ``/``, each
   segment encoded keeping only unreserved characters, with a trailing ``/``), canonical query
   (sorted ``k=v``, encoded the same way), canonical headers (``name:trimmed-value\\n``), the
   signed-header list and the hex SHA-256 of the body, joined by ``\\n``;
4. string to sign: ``SDK-HMAC-SHA256\\n<X-Sdk-Date>\\n<hex sha256 of the canonical request>``;
5. ``Authorization: SDK-HMAC-SHA256 Access=<AK>, SignedHeaders=<list>, Signature=<hex HMAC>``.

This module is pure: no clock, no network, no credentials lookup. ``AkSkAuth`` (in ``auth``) adds
``X-Project-Id`` / ``X-Security-Token`` and the time, then calls ``sign``. Query strings are
decoded with ``%XX`` only (``+`` stays ``+``), as the SDK sends ``%20`` for a space.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

from engine.api.transport import HttpRequest

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
CONTENT_SHA256_HEADER = "X-Sdk-Content-Sha256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sdk_date(moment: datetime) -> str:
    """``moment`` as an ``X-Sdk-Date`` value; a naive datetime is refused (it would skew)."""
    if moment.tzinfo is None:
        raise ValueError("sdk_date needs an aware datetime, got a naive one")
    return moment.astimezone(UTC).strftime(DATE_FORMAT)


def sign(request: HttpRequest, *, ak: str, sk: str, at: datetime | None = None) -> HttpRequest:
    """A copy of ``request`` with ``X-Sdk-Date``, ``Host`` and ``Authorization`` added.

    An ``X-Sdk-Date`` already on the request is kept and signed (that is how the SDK, and the
    test vectors, fix the date); otherwise ``at`` is required. Header values are trimmed, as the
    SDK trims what it sends.
    """
    if not ak or not sk:
        raise ValueError("ak and sk must both be non-empty")
    headers = {name: value.strip() for name, value in request.headers.items()}
    content_type = _header(headers, "Content-Type")
    if content_type and not content_type.startswith(("application/json", "application/bson")):
        headers[CONTENT_SHA256_HEADER] = UNSIGNED_PAYLOAD
    date = _header(headers, DATE_HEADER)
    if date is None:
        if at is None:
            raise ValueError(f"sign needs 'at' or an {DATE_HEADER} header")
        date = headers[DATE_HEADER] = sdk_date(at)
    if _header(headers, "Host") is None:
        headers["Host"] = urlsplit(request.url).netloc
    signed = signed_header_names(headers)
    canonical = canonical_request(replace(request, headers=headers), signed)
    signature = hmac.new(
        sk.encode(), string_to_sign(canonical, date).encode(), hashlib.sha256
    ).hexdigest()
    headers["Authorization"] = (
        f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return replace(request, headers=headers)


def signed_header_names(headers: Mapping[str, str]) -> list[str]:
    """Lower-cased, sorted names of the headers that are signed: those without ``_``."""
    return sorted({name.lower() for name in headers if "_" not in name})


def canonical_request(request: HttpRequest, signed: list[str]) -> str:
    """The six ``\\n``-joined lines that are hashed into the string to sign."""
    parts = urlsplit(request.url)
    values = {name.lower(): value.strip() for name, value in request.headers.items()}
    canonical_headers = "".join(f"{name}:{values[name]}\n" for name in signed)
    return "\n".join(
        (
            request.method.upper(),
            canonical_uri(parts.path),
            canonical_query(parts.query),
            canonical_headers,
            ";".join(signed),
            _payload_hash(request, values),
        )
    )


def canonical_uri(path: str) -> str:
    """Each decoded path segment re-encoded (unreserved characters kept), with a trailing ``/``."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: str) -> str:
    """``k=v`` pairs sorted by key then value, each side encoded like a path segment."""
    pairs = []
    for item in query.split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return "&".join(f"{_encode(key)}={_encode(value)}" for key, value in sorted(pairs))


def string_to_sign(canonical: str, date: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{date}\n{digest}"


def _payload_hash(request: HttpRequest, lower_headers: Mapping[str, str]) -> str:
    if not request.body:
        return EMPTY_BODY_SHA256
    declared = lower_headers.get(CONTENT_SHA256_HEADER.lower())
    return declared or hashlib.sha256(request.body).hexdigest()


def _encode(text: str) -> str:
    # quote() never escapes A-Z a-z 0-9 _ . - ~; with safe="~" nothing else survives, not even "/".
    return quote(text, safe="~")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)
