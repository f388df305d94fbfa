"""The network seam: one ``send`` method between the DRS client and the wire, as httpx draws it.

``Transport`` is what the client and the IAM authenticator call; ``AiohttpTransport`` is the real
one and tests pass a fake. A transport moves bytes and nothing else: it does not retry, back off,
authenticate or interpret status codes. The only error it raises is ``TransportError`` (the
request did not complete); every HTTP answer, 5xx included, is returned as an ``HttpResponse``.

It trusts no server: a redirect is returned as the 3xx it is, never followed (the request
carries a token or a signature, and ``Location`` may name any host); every request has a total
deadline, however slowly the bytes drip; and an answer larger than ``max_answer_bytes`` is not
read at all.

Its text is writable whatever the server sent: a lone surrogate (``engine.surrogates``) in a
JSON body (``json_body``) or in a header value becomes U+FFFD here, the one place answers enter,
so that no report, journal line or log written from them fails to encode.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import aiohttp
import orjson

from engine.api.bounds import (
    CONNECT_TIMEOUT_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    MAX_ANSWER_BYTES,
    READ_TIMEOUT_S,
)
from engine.errors import TransportError
from engine.redact import redact, redact_optional
from engine.surrogates import replace_lone_surrogate_escapes, replace_lone_surrogates

logger = logging.getLogger(__name__)

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
        return redact_optional(self.header("X-Request-Id"))

    def header(self, name: str) -> str | None:
        """The value of a header, matching its name case-insensitively as HTTP does."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


class Transport(Protocol):
    """Sends one request and returns its answer; raises ``TransportError`` if none came."""

    async def send(self, request: HttpRequest) -> HttpResponse: ...


class AiohttpTransport:
    """The real transport: an async context manager owning one ``aiohttp.ClientSession``.

    TLS certificates are always verified and redirects never followed. Timeouts bound
    connecting, each socket read, and the whole request (``request_timeout_s``).
    """

    def __init__(
        self,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        read_timeout_s: float = READ_TIMEOUT_S,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(connect=connect_timeout_s, sock_read=read_timeout_s)
        self._deadline_s = request_timeout_s
        self._max_answer = max_answer_bytes
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
        deadline = asyncio.timeout(self._deadline_s)
        try:
            async with (
                deadline,
                self._session.request(
                    request.method,
                    request.url,
                    headers=dict(request.headers),
                    data=request.body,
                    ssl=True,
                    allow_redirects=False,
                ) as answer,
            ):
                body = await self._read(answer, request)
                headers = dict(answer.headers)
                for name, value in headers.items():
                    if not value.isascii():  # bytes that are not UTF-8 come as lone surrogates
                        headers[name] = replace_lone_surrogates(value)
                return HttpResponse(status=answer.status, headers=headers, body=body)
        except TimeoutError as exc:
            if deadline.expired():
                what = f"no complete answer within {self._deadline_s:g}s"
            else:  # aiohttp's connect or read timeout
                what = str(exc) or f"{type(exc).__name__}: no answer in time"
            raise TransportError(_describe_failure(request, what)) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise TransportError(_describe_failure(request, str(exc) or "no answer")) from exc

    async def _read(self, answer: aiohttp.ClientResponse, request: HttpRequest) -> bytes:
        """The body, or a ``TransportError`` once it is known to exceed the cap."""
        too_long = f"the answer is larger than {self._max_answer // 1024 // 1024} MiB; not read"
        declared = answer.content_length
        if declared is not None and declared > self._max_answer:
            raise TransportError(_describe_failure(request, too_long))
        if declared is not None and "Content-Encoding" not in answer.headers:
            return await answer.read()  # its length is known and within the cap: one read
        chunks: list[bytes] = []
        size = 0
        while chunk := await answer.content.read(min(1 << 20, self._max_answer + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > self._max_answer:
                raise TransportError(_describe_failure(request, too_long))
        return b"".join(chunks)


def _describe_failure(request: HttpRequest, what: str) -> str:
    """One line naming the call and the cause; never headers, bodies or query strings."""
    parts = urlsplit(request.url)
    return redact(f"{request.method} {parts.scheme}://{parts.netloc}{parts.path}: {what}")


def error_fields(response: HttpResponse) -> tuple[str, str]:
    """``(error_code, error_msg)`` of an error answer, whatever shape its body has.

    DRS and the API gateway send ``{"error_code", "error_msg"}``; IAM sends
    ``{"error": {"code", "message"}}``. Anything else (an HTML page from a proxy, an empty
    body) yields ``HTTP_<status>`` and the start of the body as text; a redirect names only the
    host it pointed at.
    """
    if 300 <= response.status < 400:
        location = urlsplit(response.header("Location") or "")
        # The host as the server wrote it (urlsplit would lower-case it), without any user
        # info or port, redacted and short: these are the server's words.
        host = _clip(re.sub(r":[0-9]*$", "", location.netloc.rpartition("@")[2]))[:80]
        target = host or ("the same host" if location.path else "nowhere named")
        return f"HTTP_{response.status}", (
            f"redirected to {target}, not followed (credentials go to the endpoint given "
            "and nowhere else); check the endpoint URL and any proxy in the way"
        )
    raw = _json_or_none(response.body)
    if isinstance(raw, dict):
        nested = raw.get("error")
        source: dict[str, Any] = nested if isinstance(nested, dict) else raw
        code = source.get("error_code") or source.get("code")
        message = source.get("error_msg") or source.get("message")
        if isinstance(code, int):
            code = f"IAM.{code}"  # IAM's numeric code repeats the HTTP status; say whose it is
        if code:
            return _clip(str(code))[:64], _clip(str(message or ""))
    return f"HTTP_{response.status}", _clip(response.body.decode("utf-8", "replace")) or "(empty)"


def json_body(body: bytes) -> Any:
    """The JSON document of an answer's body, each lone surrogate it escapes (``"\\ud800"``)
    read as U+FFFD; raises ``ValueError`` if the body is not JSON.

    orjson refuses such an escape, so a body it reads has none and costs nothing more; only a
    body it refuses is searched for one, rewritten and read again.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        replaced = replace_lone_surrogate_escapes(body)
        if replaced == body:
            raise
    return orjson.loads(replaced)


def _json_or_none(body: bytes) -> Any:
    try:
        return json_body(body)
    except ValueError:
        return None


def _clip(text: str) -> str:
    """A server's words, made safe to show: its reflection of our secrets redacted first (a
    secret cut in two by the clip would escape), then flattened and cut."""
    flat = " ".join(redact(text).split())
    return flat if len(flat) <= _MAX_ERROR_TEXT else flat[: _MAX_ERROR_TEXT - 3] + "..."
