"""The product's AK/SK signer against the official SDK's, on generated requests.

``test_signer`` pins six vectors copied from the SDK; this module asks the SDK itself
(``huaweicloudsdkcore``, a test extra: skipped when it is not installed) about a few hundred
seeded requests. Each request is built twice from one description: as the SDK's client builds
an ``SdkRequest`` (path parameters quoted with ``safe=""``, query parameters as tuples, the body
a JSON string, ``BasicCredentials`` adding ``X-Project-Id`` / ``X-Security-Token``) and as the
product sends it (one URL, bytes, ``AkSkAuth`` or ``sign``). Both are signed at one fixed
``X-Sdk-Date``; the Authorization header, the canonical request and every header sent must be
the same. The mutation tests break the product's signer on purpose and expect disagreements, so
a generator that stopped exercising a feature would be noticed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import pytest

import engine.api.signer as product_signer
from engine.api.auth import AkSkAuth
from engine.api.transport import HttpRequest

sdk_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")
sdk_signer = pytest.importorskip("huaweicloudsdkcore.signer.signer")

AK = "HPUAEXAMPLEAK0000001"
SK = "sk/EXAMPLE+secret0000000000000000000000a"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20250102T030405Z"
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
SEED = 15
CASES = 300

METHODS = ("POST", "GET", "DELETE")
HOSTS = ("drs.cn-north-4.myhuaweicloud.com", "127.0.0.1:8443", "DRS.AP-Southeast-1.example.COM")
PATHS = (
    "/v3/{project_id}/jobs",
    "/v3/{project_id}/jobs/batch-status",
    "/v3/{project_id}/jobs/{job_id}",
    "/v3/{project_id}/jobs/{job_id}/",
    "/v5/{project_id}/jobs/{job_id}/detail",
    "/",
)
PATH_PROJECTS = (PROJECT, "proj ect", "caf\u00e9~1", "a/b", "%41", "p+q=r&s")
# Characters that need percent-encoding in a path or a query, next to the unreserved ones.
ODD = " ~-._!*'()+,;=&?#%/:@$[]\u00e9\u00fc\u4e2d\U0001f600"
PLAIN = "abcXYZ019"
QUERY_KEYS = ("name", "Name", "a b", "~k", "\u043a\u043b\u044e\u0447", "x=y", "", "offset_id")
CONTENT_TYPES = (
    "application/json",
    "application/json;charset=UTF-8",
    "application/json ",  # a trailing blank is trimmed by both; see _content_type for a leading
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
)
EXTRA_HEADERS = (
    "X-Language",
    "X-Trace-Id",
    "Accept",
    "X-Request-Tag",
    "X_Custom_Id",  # names with "_" are sent but not signed
    "x_forwarded_for",
    "User-Agent",
)
HEADER_VALUES = ("en-us", "  padded\t", " zh-cn ", "caf\u00e9", "a,b; c=d", "", "\u4e2d\u6587 ")
SECURITY_TOKEN = "temporary-security-token-EXAMPLE+/=="

QueryValue = str | int | bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One request, as a description both sides build their own request from."""

    number: int
    method: str
    host: str
    resource_path: str  # path parameters already quoted, as the SDK's client does
    query: tuple[tuple[str, QueryValue], ...]
    headers: tuple[tuple[str, str], ...]
    body: str | None  # the SDK's client hands the signer a JSON string, or None
    project_id: str | None  # None: no X-Project-Id (the product signs with sign(), not AkSkAuth)
    # Never "": AkSkAuth takes an empty token for none, BasicCredentials sends an empty
    # X-Security-Token (and signs it). Temporary credentials always have a token.
    security_token: str | None
    # The name the fixed date is sent under (both sides look it up ignoring case); None: the
    # product takes it from AkSkAuth's clock and the SDK, as it would add it, as "X-Sdk-Date".
    date_header: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Signed:
    headers: dict[str, str]
    canonical_request: str


def _text(rng: random.Random, alphabet: str, longest: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, longest)))


def _mixed_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in name)


def _query(rng: random.Random) -> tuple[tuple[str, QueryValue], ...]:
    pairs: list[tuple[str, QueryValue]] = [
        (rng.choice(QUERY_KEYS), _text(rng, PLAIN + ODD, 6)) for _ in range(rng.randint(0, 5))
    ]
    # A number or a boolean (the SDK lower-cases it) only once per key: the SDK sorts the raw
    # values, not the strings sent, so a repeated integer key signs as "offset=9&offset=10"
    # where the product (and the fact sheet's "sorted k=v" of what is sent) has
    # "offset=10&offset=9"; mixed types under one key would not sort at all. The product's
    # client sends no query, so this is a quirk of the SDK to know, not a bug to fix.
    if rng.random() < 0.3:
        pairs.append(("limit", rng.randint(0, 1000)))
    if rng.random() < 0.3:
        pairs.append(("refresh", rng.random() < 0.5))
    rng.shuffle(pairs)
    return tuple(pairs)


def _content_type(rng: random.Random, method: str) -> str | None:
    if method == "GET" and rng.random() < 0.3:
        return None  # the SDK's client drops Content-Type from a GET without a body
    # Never a leading blank: the SDK tests the untrimmed value for "application/json" and so
    # treats " application/json" as not JSON (X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD), while
    # the product trims first. A known disagreement, reported to the signer's owner.
    return rng.choice(CONTENT_TYPES)


def _headers(rng: random.Random, content_type: str | None) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    if content_type is not None:
        # Spelt so by the SDK's client (it looks the name up case-sensitively) and by ours.
        headers.append(("Content-Type", content_type))
    for name in rng.sample(EXTRA_HEADERS, rng.randint(0, 4)):
        headers.append((_mixed_case(rng, name), rng.choice(HEADER_VALUES)))
    if rng.random() < 0.2:
        headers.append((rng.choice(("Host", "host", "HOST")), "signed.example:443"))
    # No two names that differ only in case: the SDK lists such a name twice in SignedHeaders
    # ("x-foo;x-foo"), the product once. A known disagreement, reported to the signer's owner.
    return tuple(headers)


def _body(rng: random.Random, content_type: str | None) -> str | None:
    choice = rng.randrange(4)
    if choice == 0:
        return rng.choice((None, ""))
    if content_type is not None and "json" not in content_type:
        return _text(rng, PLAIN + ODD, 40)
    document = {"jobs": [_text(rng, PLAIN + ODD, 8) for _ in range(rng.randint(0, 3))]}
    if choice == 1:
        return json.dumps(document)  # as the SDK's client: ASCII escapes, ", " and ": "
    if choice == 2:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"))  # as ours
    return json.dumps({"note": "gr\u00fc\u00dfe \u4e2d\u6587 \U0001f600"}, ensure_ascii=False)


def generate_cases(seed: int = SEED, count: int = CASES) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        method = rng.choice(METHODS)
        template = rng.choice(PATHS)
        resource_path = template.replace(
            "{project_id}", quote(rng.choice(PATH_PROJECTS), safe="")
        ).replace("{job_id}", quote(_text(rng, PLAIN + ODD, 10) or "j", safe=""))
        content_type = _content_type(rng, method)
        project_id = PROJECT if rng.random() < 0.7 else None
        dates = ("X-Sdk-Date", "x-sdk-date", None) if project_id else ("X-Sdk-Date", "x-sdk-date")
        cases.append(
            Case(
                number=number,
                method=method,
                host=rng.choice(HOSTS),
                resource_path=resource_path,
                query=_query(rng),
                headers=_headers(rng, content_type),
                body=_body(rng, content_type),
                project_id=project_id,
                security_token=SECURITY_TOKEN if rng.random() < 0.3 else None,
                date_header=rng.choice(dates),
            )
        )
    return cases


def _dated(case: Case) -> dict[str, str]:
    return dict(case.headers) | {case.date_header or "X-Sdk-Date": DATE}


def _wire(value: QueryValue) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


async def sign_as_the_product(case: Case) -> Signed:
    query = "&".join(
        f"{quote(key, safe='~')}={quote(_wire(value), safe='~')}" for key, value in case.query
    )
    url = f"https://{case.host}{case.resource_path}" + (f"?{query}" if query else "")
    body = (case.body or "").encode("utf-8")
    if case.project_id is not None:
        headers = _dated(case) if case.date_header else dict(case.headers)
        request = HttpRequest(method=case.method, url=url, headers=headers, body=body)
        auth = AkSkAuth(AK, SK, case.project_id, case.security_token, clock=lambda: AT)
        sent = headers | await auth.auth_headers(request)
    else:
        headers = _dated(case)
        if case.security_token is not None:
            headers["X-Security-Token"] = case.security_token
        request = HttpRequest(method=case.method, url=url, headers=headers, body=body)
        sent = dict(product_signer.sign(request, ak=AK, sk=SK).headers)
    unsigned = {name: value for name, value in sent.items() if name != "Authorization"}
    canonical = product_signer.canonical_request(
        replace(request, headers=unsigned), product_signer.signed_header_names(unsigned)
    )
    return Signed(headers=sent, canonical_request=canonical)


def sign_as_the_sdk(case: Case) -> Signed:
    request = sdk_request.SdkRequest(
        method=case.method,
        schema="https",
        host=case.host,
        resource_path=case.resource_path,
        query_params=list(case.query),
        header_params=_dated(case),
        body=case.body,
    )
    credentials = sdk_credentials.BasicCredentials(AK, SK, case.project_id)
    if case.security_token is not None:
        credentials.security_token = case.security_token
    # The SDK's own path (BasicCredentials.sign_request picks the signer for the request's
    # algorithm), with the signer's canonical request recorded on the way.
    signer = sdk_signer.Signer(credentials)
    recorded: list[str] = []
    build = signer._process_canonical_request

    def record(request: Any, signed_headers: list[str]) -> str:
        text: str = build(request, signed_headers)
        recorded.append(text)
        return text

    signer._process_canonical_request = record
    credentials._SIGNER_CASE = {request.signing_algorithm: lambda _credentials: signer}
    credentials.sign_request(request)
    header_params: Mapping[str, str] = request.header_params
    # The SDK hands the HTTP library each value as its UTF-8 bytes read as ISO-8859-1.
    sent = {
        name: value.encode("iso-8859-1").decode("utf-8") for name, value in header_params.items()
    }
    (canonical,) = recorded
    return Signed(headers=sent, canonical_request=canonical)


async def disagreements(cases: list[Case]) -> list[str]:
    found = []
    for case in cases:
        ours, theirs = await sign_as_the_product(case), sign_as_the_sdk(case)
        for what, mine, sdk in (
            ("Authorization", ours.headers["Authorization"], theirs.headers["Authorization"]),
            ("canonical request", ours.canonical_request, theirs.canonical_request),
            ("headers sent", ours.headers, theirs.headers),
        ):
            if mine != sdk:
                found.append(f"{case}\n  {what}:\n    product {mine!r}\n    sdk     {sdk!r}")
    return found


def test_the_generator_is_seeded_and_varied() -> None:
    cases = generate_cases()
    assert cases == generate_cases()
    assert len(cases) == CASES
    assert {case.method for case in cases} == set(METHODS)
    assert any("%" in case.resource_path for case in cases)
    assert any(len({key for key, _ in case.query}) < len(case.query) for case in cases)
    assert any(any("_" in name for name, _ in case.headers) for case in cases)
    assert any(any(v != v.strip() for _, v in case.headers) for case in cases)
    assert {case.project_id is None for case in cases} == {True, False}
    assert {case.security_token is None for case in cases} == {True, False}
    assert {bool(case.body) for case in cases} == {True, False}
    assert {case.date_header for case in cases} == {"X-Sdk-Date", "x-sdk-date", None}
    spelt_as_listed = {*EXTRA_HEADERS, "Content-Type", "Host"}
    assert any(any(n not in spelt_as_listed for n, _ in case.headers) for case in cases)


async def test_product_signs_every_generated_request_as_the_sdk_does() -> None:
    found = await disagreements(generate_cases())
    assert not found, f"{len(found)} disagreements, the first:\n" + "\n".join(found[:3])


def _without_trailing_slash(path: str) -> str:
    return "/".join(quote(segment, safe="~") for segment in path.split("/"))


def _signing_underscores(headers: Mapping[str, str]) -> list[str]:
    return sorted({name.lower() for name in headers})


def _unsorted_query(query: str) -> str:
    return "&".join(
        f"{quote(unquote(key), safe='~')}={quote(unquote(value), safe='~')}"
        for key, _, value in (item.partition("=") for item in query.split("&") if item)
    )


@pytest.mark.parametrize(
    ("name", "broken"),
    [
        ("canonical_uri", _without_trailing_slash),
        ("signed_header_names", _signing_underscores),
        ("canonical_query", _unsorted_query),
    ],
    ids=["uri-without-trailing-slash", "headers-with-underscore-signed", "query-unsorted"],
)
async def test_a_broken_product_signer_is_caught(
    name: str, broken: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(product_signer, name, broken)
    assert await disagreements(generate_cases())
