"""Credentials for DRS calls: a fixed IAM token, a token from IAM with a password, or AK/SK.

An ``Auth`` hands out the headers that authenticate one request and, after the gateway said the
token expired, may fetch new ones. A token is the same for every request; an AK/SK signature
covers the request's method, URL, headers and body, so ``auth_headers`` is given the request
(every other header already set) and is called again for every send, retries included. An
``Auth`` never appears in logs or messages: ``repr`` and every error name the user, domain and
project, never the password, token, secret key or security token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from engine.api.resilience import Resilience
from engine.api.signer import sign
from engine.api.transport import HttpRequest, HttpResponse, Transport, error_fields, json_body
from engine.errors import AuthError
from engine.redact import keep_secret

logger = logging.getLogger(__name__)

TOKEN_HEADER = "X-Auth-Token"
SUBJECT_TOKEN_HEADER = "X-Subject-Token"
PROJECT_ID_HEADER = "X-Project-Id"
SECURITY_TOKEN_HEADER = "X-Security-Token"
# Fetch a new token this long before IAM says the current one expires.
REFRESH_MARGIN = timedelta(minutes=5)


class Auth(Protocol):
    """What the client needs from credentials."""

    async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
        """Headers to add to ``request`` so it is authenticated, e.g. ``{"X-Auth-Token": ...}``.

        Token auths ignore ``request``; a signing auth needs it and refuses ``None``.
        """
        ...

    async def refresh(self) -> bool:
        """Called once after a 401 token-expired answer; True if the request may be replayed."""
        ...


class StaticTokenAuth:
    """A token given from outside (an environment variable); it cannot be renewed."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
        keep_secret(token)
        self._token = token

    def __repr__(self) -> str:
        return "StaticTokenAuth(token=<redacted>)"

    async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
        return {TOKEN_HEADER: self._token}

    async def refresh(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"_Token(<redacted>, expires_at={self.expires_at.isoformat()})"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IamPasswordAuth:
    """A project-scoped IAM token from ``POST {iam}/v3/auth/tokens`` with user and password.

    The token is cached until ``REFRESH_MARGIN`` before its ``expires_at``. Concurrent callers
    share one in-flight request to IAM. Transient IAM failures (429, 5xx, no answer) are retried
    by ``resilience`` (asking for a token is safe to repeat); a call that still fails raises
    ``AuthError`` (or ``TransportError``) to every caller waiting on it.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        iam_endpoint: str,
        user: str,
        password: str,
        domain: str,
        project_id: str | None,
        clock: Callable[[], datetime] = _utc_now,
        resilience: Resilience | None = None,
    ) -> None:
        if not (user and password and domain and (project_id is None or project_id)):
            raise ValueError("user, password, domain and project_id must all be non-empty")
        keep_secret(password)
        self._transport = transport
        self._url = f"{iam_endpoint.rstrip('/')}/v3/auth/tokens"
        self._user = user
        self._password = password
        self._domain = domain
        self._project_id = project_id
        self._clock = clock
        self._resilience = resilience or Resilience()
        self._lock = asyncio.Lock()
        self._token: _Token | None = None

    def __repr__(self) -> str:
        return (
            f"IamPasswordAuth(user={self._user!r}, domain={self._domain!r}, "
            f"project_id={self._project_id!r}, url={self._url!r})"
        )

    async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
        async with self._lock:
            token = self._token
            if token is None or self._clock() >= token.expires_at - REFRESH_MARGIN:
                token = self._token = await self._request_token()
        return {TOKEN_HEADER: token.value}

    async def refresh(self) -> bool:
        rejected = self._token
        async with self._lock:
            # Several requests may see the same expired token at once: one new token serves all.
            if self._token is rejected:
                self._token = await self._request_token()
        return True

    async def _request_token(self) -> _Token:
        request = HttpRequest(
            method="POST",
            url=self._url,
            headers={"Content-Type": "application/json"},
            body=json.dumps(self._password_body(), separators=(",", ":")).encode(),
        )
        response = await self._resilience.call(
            "iam token", lambda: self._transport.send(request), replayable=True
        )
        logger.debug(
            "POST %s -> %d (request id %s)", self._url, response.status, response.request_id
        )
        if not response.ok:
            code, message = error_fields(response)
            message = message.replace(self._password, "<redacted>")  # should IAM ever echo it
            rid = f", request id {response.request_id}" if response.request_id else ""
            raise AuthError(
                f"{self._who()} were rejected: HTTP {response.status} {code}: {message}{rid}"
            )
        return self._parse_token(response)

    def _password_body(self) -> dict[str, Any]:
        user = {"name": self._user, "password": self._password, "domain": {"name": self._domain}}
        return {
            "auth": {
                "identity": {"methods": ["password"], "password": {"user": user}},
                "scope": {"project": {"id": self._project_id}}
                if self._project_id is not None
                else {"domain": {"name": self._domain}},  # IAM's own calls: project discovery
            }
        }

    def _parse_token(self, response: HttpResponse) -> _Token:
        value = response.header(SUBJECT_TOKEN_HEADER)
        if not value:
            raise AuthError(f"{self._who()}: IAM answered without an {SUBJECT_TOKEN_HEADER} header")
        expires_at = _expires_at(response.body)
        if expires_at is None:
            raise AuthError(f"{self._who()}: IAM answered without a valid token.expires_at")
        keep_secret(value)  # before anything can show it: a server may echo it back
        return _Token(value, expires_at)

    def _who(self) -> str:
        return f"IAM credentials of user {self._user!r} in domain {self._domain!r} " + (
            f"for project {self._project_id}" if self._project_id else "for the domain"
        )


class AkSkAuth:
    """Signs every request with an access key and secret key (``SDK-HMAC-SHA256``).

    Like the SDK's ``BasicCredentials`` it adds ``X-Project-Id`` and, for temporary credentials,
    ``X-Security-Token``, then signs at the clock's current time; each send is signed afresh, so a
    retry after a long backoff carries a fresh ``X-Sdk-Date``. It cannot be renewed: a 401
    ``APIGW.0301`` (bad signature, unknown AK) or ``APIGW.0303`` (clock skew) is final. Not an
    STS client: temporary credentials are taken as given and are not refreshed before they
    expire.
    """

    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str | None,
        security_token: str | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if not (ak and sk and (project_id is None or project_id)):
            raise ValueError("ak, sk and project_id must all be non-empty")
        for secret in (ak, sk, security_token):
            keep_secret(secret)
        self._ak = ak
        self._sk = sk
        self._project_id = project_id
        self._security_token = security_token or None
        self._clock = clock

    def __repr__(self) -> str:
        temporary = ", security_token=<redacted>" if self._security_token else ""
        return (
            f"AkSkAuth(ak={_mask(self._ak)!r}, sk=<redacted>{temporary}, "
            f"project_id={self._project_id!r})"
        )

    async def auth_headers(self, request: HttpRequest | None = None) -> dict[str, str]:
        if request is None:
            raise TypeError("AkSkAuth.auth_headers needs the request: the signature covers it")
        headers = dict(request.headers)
        if self._project_id is not None:  # None: a global (IAM) call, signed without it
            headers[PROJECT_ID_HEADER] = self._project_id
        if self._security_token:
            headers[SECURITY_TOKEN_HEADER] = self._security_token
        signed = sign(replace(request, headers=headers), ak=self._ak, sk=self._sk, at=self._clock())
        return {k: v for k, v in signed.headers.items() if request.headers.get(k) != v}

    async def refresh(self) -> bool:
        return False


def _mask(ak: str) -> str:
    """Enough of an access key id to tell two apart in a log, not enough to use it."""
    return ak[:4] + "***" if len(ak) > 8 else "***"


def _expires_at(body: bytes) -> datetime | None:
    """``token.expires_at`` of an IAM answer as an aware UTC datetime, or None."""
    try:
        raw = json_body(body)["token"]["expires_at"]
        parsed = datetime.fromisoformat(str(raw))
    except (ValueError, KeyError, TypeError):
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
