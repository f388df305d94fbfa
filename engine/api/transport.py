"""The network seam: one ``send`` method between the DRS client and the wire, as httpx draws it.

``Transport`` is what the client and the IAM authenticator call; ``AiohttpTransport`` is the real
one and tests pass a fake. A transport moves bytes and nothing else: it does not retry, back off,
authenticate or interpret status codes. The only error it raises is ``TransportError`` (the
request did not complete); every HTTP answer, 5xx included, is returned as an ``HttpResponse``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import aiohttp

from engine.errors import TransportError

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 30.0
_MAX_ERROR_TEXT = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One request; ``headers`` and ``body`` stay out of ``repr`` (tokens, passwords)."""

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    """One answer of any status; ``headers`` stay out of ``repr`` (``X-Subject-Token``)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    body: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def request_id(self) -> str | None:
        return self.header("X-Request-Id")

    def header(self, name: str) -> str | None:
        """The value of a header, matching its name case-insensitively as HTTP does."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class Transport(Protocol):
    """Sends one request and returns its answer; raises ``TransportError`` if none came."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...


class AiohttpTransport:
    """The real transport: an async context manager owning one ``aiohttp.ClientSession``.

    TLS certificates are always verified. Timeouts bound connecting and each socket read, not
    the whole call: a caller that needs a deadline wraps the call in ``asyncio.timeout``.
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("AiohttpTransport is already open")
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self._session is None:
            raise RuntimeError("AiohttpTransport.send() called outside 'async with'")
        try:
            async with self._session.request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=request.body,
                ssl=True,
            ) as answer:
                body = await answer.read()
                return HttpResponse(status=answer.status, headers=dict(answer.headers), body=body)
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise TransportError(_describe_failure(request, exc)) from exc


def _describe_failure(request: HttpRequest, exc: BaseException) -> str:
    """One line naming the call and the cause; never headers, bodies or query strings."""
    parts = urlsplit(request.url)
    what = str(exc) or ("timed out" if isinstance(exc, TimeoutError) else "no answer")
    return f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}: {what}"


def error_fields(response: HttpResponse) -> tuple[str, str]:
    """``(error_code, error_msg)`` of an error answer, whatever shape its body has.

    DRS and the API gateway send ``{"error_code", "error_msg"}``; IAM sends
    ``{"error": {"code", "message"}}``. Anything else (an HTML page from a proxy, an empty
    body) yields ``HTTP_<status>`` and the start of the body as text.
    """
    raw = _json_or_none(response.body)
    if isinstance(raw, dict):
        nested = raw.get("error")
        source: dict[str, Any] = nested if isinstance(nested, dict) else raw
        code = source.get("error_code") or source.get("code")
        message = source.get("error_msg") or source.get("message")
        if isinstance(code, int):
            code = f"IAM.{code}"  # IAM's numeric code repeats the HTTP status; say whose it is
        if code:
            return str(code), _clip(str(message or ""))
    return f"HTTP_{response.status}", _clip(response.body.decode("utf-8", "replace")) or "(empty)"


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_ERROR_TEXT else flat[: _MAX_ERROR_TEXT - 3] + "..."
