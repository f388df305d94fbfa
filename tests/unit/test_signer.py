"""AK/SK signing against vectors produced by the official SDK's own signer.

How the vectors were produced (2025, huaweicloudsdkcore==3.1.219 from PyPI, in a scratch venv;
the SDK is NOT a dependency of this project)::

    python -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install huaweicloudsdkcore==3.1.219
    /tmp/sdkvenv/bin/python gen_vectors.py

where the heart of ``gen_vectors.py`` is, for each case below::

    from urllib.parse import parse_qsl, urlsplit
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest

    parts = urlsplit(case["url"])
    headers = dict(case["headers"]) | {"X-Sdk-Date": "20250102T030405Z"}  # fixes the date:
    # Signer._process_header_time parses an X-Sdk-Date it finds instead of reading the clock
    request = SdkRequest(method=case["method"], schema=parts.scheme, host=parts.netloc,
                         resource_path=parts.path,
                         query_params=parse_qsl(parts.query, keep_blank_values=True),
                         header_params=headers, body=case["body"].encode("utf-8"))
    credentials = BasicCredentials(AK, SK, PROJECT)     # adds X-Project-Id, like the SDK clients
    if case["security_token"]:
        credentials.security_token = case["security_token"]  # adds X-Security-Token
    signed = credentials.sign_request(request)          # -> Signer(credentials).sign(request)
    print(signed.header_params)

The Authorization values below are copied from that output, unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine.api.auth import AkSkAuth
from engine.api.signer import (
    EMPTY_BODY_SHA256,
    canonical_query,
    canonical_request,
    canonical_uri,
    sdk_date,
    sign,
    signed_header_names,
    string_to_sign,
)
from engine.api.transport import HttpRequest

AK = "HPUAEXAMPLEAK0000001"
SK = "sk/EXAMPLE+secret0000000000000000000000a"
PROJECT = "0123456789abcdef0123456789abcdef"
DATE = "20250102T030405Z"
AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
DRS = "https://drs.cn-north-4.myhuaweicloud.com"
SIGNED_ALL = "content-type;host;x-language;x-project-id;x-sdk-date"


@dataclass(frozen=True)
class Vector:
    name: str
    method: str
    url: str
    headers: dict[str, str]
    body: str
    security_token: str | None
    authorization: str

    def request(self) -> HttpRequest:
        return HttpRequest(
            method=self.method,
            url=self.url,
            headers=self.headers,
            body=self.body.encode("utf-8"),
        )


def _auth(signed: str, signature: str) -> str:
    return f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed}, Signature={signature}"


VECTORS = [
    Vector(
        name="post_json_batch_status",
        method="POST",
        url=f"{DRS}/v3/{PROJECT}/jobs/batch-status",
        headers={"Content-Type": "application/json", "X-Language": "en-us"},
        body='{"jobs":["a","b"],"page_req":{"cur_page":1,"per_page":2}}',
        security_token=None,
        authorization=_auth(
            SIGNED_ALL, "b59cb9ebba8a9b13e469a860f1c1a8f8143f68288ac092f8538ceb79edcd2494"
        ),
    ),
    Vector(
        name="path_needing_encoding",
        method="POST",
        url=f"{DRS}/v3/{PROJECT}/jobs/na%20me/caf%C3%A9~x(1)*!'",
        headers={"Content-Type": "application/json", "X-Language": "zh-cn"},
        body="{}",
        security_token=None,
        authorization=_auth(
            SIGNED_ALL, "a01529ddb11ed6e4b0c58cff14b069791cd756e8e8b55218230d427487bd0ef0"
        ),
    ),
    Vector(
        name="get_with_query_and_port",
        method="GET",
        url="https://127.0.0.1:8443/v3/p/jobs?offset=0&limit=10&name=a%20b%2Fc&flag=true&name=a",
        headers={"Content-Type": "application/json", "X_Ignored_Header": "not signed"},
        body="",
        security_token=None,
        authorization=_auth(
            "content-type;host;x-project-id;x-sdk-date",
            "75bf14e94df2f6b7d3726c01c2b58c0d2e118e55859d679c505d6aebe4fd4d1b",
        ),
    ),
    Vector(
        name="temporary_credentials_with_security_token",
        method="POST",
        url=f"{DRS}/v3/{PROJECT}/jobs/batch-retry-task",
        headers={"Content-Type": "application/json;charset=UTF-8", "X-Language": "en-us"},
        body='{"jobs":[{"job_id":"j\u00f6b-1","is_sync_re_edit":true}]}',
        security_token="temporary-security-token-EXAMPLE==",
        authorization=_auth(
            SIGNED_ALL + ";x-security-token",
            "7605a630fb2d5261639b0148112f1be63e7947913cf98dc5cb2ccb58cc76c571",
        ),
    ),
    Vector(
        name="non_json_body_is_unsigned_payload",
        method="PUT",
        url=f"{DRS}/v3/{PROJECT}/objects/",
        headers={"Content-Type": "application/octet-stream"},
        body="raw bytes",
        security_token=None,
        authorization=_auth(
            "content-type;host;x-project-id;x-sdk-content-sha256;x-sdk-date",
            "b3c8c5f8c25f0d2a6217fe3a27d52ff28a7b3ca6cb180aa3849553b2b4940b74",
        ),
    ),
    Vector(
        name="header_values_are_trimmed",
        method="POST",
        url=f"{DRS}/v3/{PROJECT}/jobs",
        headers={"Content-Type": "application/json", "X-Language": "  en-us \t"},
        body='{"cur_page":1,"per_page":100,"db_use_type":"migration"}',
        security_token=None,
        authorization=_auth(
            SIGNED_ALL, "dac5e7c70298dd05bf896f8b4434f3b6b3da13a32aae09bbe5c691e0f71d4a36"
        ),
    ),
]


def ak_sk(security_token: str | None = None) -> AkSkAuth:
    return AkSkAuth(AK, SK, PROJECT, security_token, clock=lambda: AT)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
async def test_authorization_matches_the_sdk_vector(vector: Vector) -> None:
    added = await ak_sk(vector.security_token).auth_headers(vector.request())
    assert added["Authorization"] == vector.authorization


async def test_added_headers_are_those_the_sdk_adds() -> None:
    vector = VECTORS[3]
    added = await ak_sk(vector.security_token).auth_headers(vector.request())
    assert added == {
        "X-Sdk-Date": DATE,
        "X-Project-Id": PROJECT,
        "X-Security-Token": "temporary-security-token-EXAMPLE==",
        "Host": "drs.cn-north-4.myhuaweicloud.com",
        "Authorization": vector.authorization,
    }


async def test_trimmed_header_values_are_sent_trimmed() -> None:
    added = await ak_sk().auth_headers(VECTORS[5].request())
    assert added["X-Language"] == "en-us"


def test_sign_keeps_an_x_sdk_date_already_on_the_request() -> None:
    vector = VECTORS[0]
    headers = vector.headers | {"X-Sdk-Date": DATE, "X-Project-Id": PROJECT}
    request = HttpRequest(
        method=vector.method, url=vector.url, headers=headers, body=vector.body.encode()
    )
    signed = sign(request, ak=AK, sk=SK)
    assert signed.headers["Authorization"] == vector.authorization


def test_sign_without_a_date_or_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="X-Sdk-Date"):
        sign(VECTORS[0].request(), ak=AK, sk=SK)


def test_sdk_date_is_utc_and_refuses_naive_datetimes() -> None:
    beijing = timezone(timedelta(hours=8))
    assert sdk_date(datetime(2025, 1, 2, 11, 4, 5, tzinfo=beijing)) == DATE
    with pytest.raises(ValueError, match="naive"):
        sdk_date(datetime(2025, 1, 2, 3, 4, 5))  # naive on purpose


# --- properties of the algorithm (independent of the SDK) ---------------------------------------


def _signature(request: HttpRequest) -> str:
    return sign(request, ak=AK, sk=SK, at=AT).headers["Authorization"].rsplit("=", 1)[1]


def test_changing_one_byte_of_the_body_changes_the_signature() -> None:
    request = VECTORS[0].request()
    body = bytearray(request.body)
    body[-2] ^= 0x01
    changed = HttpRequest(
        method=request.method, url=request.url, headers=request.headers, body=bytes(body)
    )
    assert _signature(changed) != _signature(request)


def test_changing_one_byte_of_a_signed_header_changes_the_signature() -> None:
    request = VECTORS[0].request()
    changed = HttpRequest(
        method=request.method,
        url=request.url,
        headers={**request.headers, "X-Language": "en-ut"},
        body=request.body,
    )
    assert _signature(changed) != _signature(request)


def test_a_header_with_an_underscore_is_not_signed() -> None:
    request = VECTORS[0].request()
    extra = HttpRequest(
        method=request.method,
        url=request.url,
        headers={**request.headers, "X_Trace_Id": "anything"},
        body=request.body,
    )
    assert _signature(extra) == _signature(request)
    assert signed_header_names({"X_Trace_Id": "x", "B": "y", "a": "z"}) == ["a", "b"]


def test_signature_is_hmac_sha256_of_the_string_to_sign() -> None:
    request = VECTORS[0].request()
    signed = sign(request, ak=AK, sk=SK, at=AT)
    names = signed_header_names(signed.headers)
    names.remove("authorization")
    expected = hmac.new(
        SK.encode(),
        string_to_sign(canonical_request(signed, names), DATE).encode(),
        hashlib.sha256,
    ).hexdigest()
    assert signed.headers["Authorization"].endswith(f"Signature={expected}")


def test_canonical_uri_encodes_each_segment_and_ends_with_a_slash() -> None:
    assert canonical_uri("/v3/p/jobs") == "/v3/p/jobs/"
    assert canonical_uri("/v3/p/jobs/") == "/v3/p/jobs/"
    assert canonical_uri("/a%20b/caf%C3%A9~x(1)*!'") == "/a%20b/caf%C3%A9~x%281%29%2A%21%27/"


def test_canonical_query_is_sorted_and_encoded() -> None:
    assert canonical_query("b=2&a=x%20y&a=1&c") == "a=1&a=x%20y&b=2&c="
    assert canonical_query("") == ""


def test_canonical_request_layout_for_an_empty_body() -> None:
    request = HttpRequest(
        method="get", url="https://h/x?b=1", headers={"Host": "h", "X-A": " v "}, body=b""
    )
    assert canonical_request(request, ["host", "x-a"]) == (
        f"GET\n/x/\nb=1\nhost:h\nx-a:v\n\nhost;x-a\n{EMPTY_BODY_SHA256}"
    )


def test_empty_body_hash_is_sha256_of_nothing() -> None:
    assert hashlib.sha256(b"").hexdigest() == EMPTY_BODY_SHA256


# --- AkSkAuth -----------------------------------------------------------------------------------


async def test_ak_sk_auth_cannot_refresh_and_needs_the_request() -> None:
    auth = ak_sk()
    assert await auth.refresh() is False
    with pytest.raises(TypeError, match="needs the request"):
        await auth.auth_headers()


def test_ak_sk_auth_repr_hides_sk_and_security_token() -> None:
    text = repr(ak_sk("temporary-security-token-EXAMPLE=="))
    assert SK not in text
    assert "temporary-security-token" not in text
    assert AK not in text
    assert PROJECT in text


@pytest.mark.parametrize(("ak", "sk", "project"), [("", SK, PROJECT), (AK, "", PROJECT)])
def test_ak_sk_auth_refuses_empty_values(ak: str, sk: str, project: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        AkSkAuth(ak, sk, project)
