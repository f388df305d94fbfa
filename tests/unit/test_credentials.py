"""Credential resolution: the documented order, partial sets, and no secret in any message."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from engine.api.auth import AkSkAuth, IamPasswordAuth, StaticTokenAuth
from engine.api.credentials import (
    NO_CREDENTIALS,
    CredentialSettings,
    describe_source,
    resolve_credentials,
)
from engine.api.transport import HttpRequest, HttpResponse
from engine.errors import UsageError

PROJECT = "0123456789abcdef0123456789abcdef"
SECRETS = {
    "explicit-sk": "EXPLICIT-SK-SECRET",
    "explicit-token": "EXPLICIT-TOKEN-SECRET",
    "sdk-sk": "SDK-SK-SECRET",
    "sdk-security": "SDK-SECURITY-TOKEN-SECRET",
    "env-token": "ENV-TOKEN-SECRET",
    "password": "IAM-PASSWORD-SECRET",
}
SDK_ENV = {"HUAWEICLOUD_SDK_AK": "SDKAKEXAMPLE01", "HUAWEICLOUD_SDK_SK": SECRETS["sdk-sk"]}
TOKEN_ENV = {"DRS_AUTH_TOKEN": SECRETS["env-token"]}
IAM_ENV = {
    "DRS_IAM_USER": "ops-bot",
    "DRS_IAM_PASSWORD": SECRETS["password"],
    "DRS_IAM_DOMAIN": "acme",
}
EXPLICIT_KEYS = CredentialSettings(
    ak="EXPLICITAK0001", sk=SECRETS["explicit-sk"], origin="runbook credentials"
)
EXPLICIT_TOKEN = CredentialSettings(token=SECRETS["explicit-token"], origin="--token")


class NoNetwork:
    async def send(self, request: HttpRequest) -> HttpResponse:
        raise AssertionError("resolving credentials must not call the network")


def resolve(
    env: dict[str, str],
    explicit: CredentialSettings | None = None,
    **kw: Any,
) -> Any:
    return resolve_credentials(
        explicit=explicit,
        env=env,
        project_id=kw.get("project_id", PROJECT),
        region=kw.get("region", "cn-north-4"),
        iam_endpoint=kw.get("iam_endpoint"),
        transport=NoNetwork(),
    )


def assert_no_secret(text: str) -> None:
    for secret in SECRETS.values():
        assert secret not in text


# --- the order: each level wins over the next ---------------------------------------------------


def test_explicit_ak_sk_wins_over_every_variable() -> None:
    auth = resolve(SDK_ENV | TOKEN_ENV | IAM_ENV, EXPLICIT_KEYS)
    assert isinstance(auth, AkSkAuth)
    assert "EXPL" in repr(auth)
    label = describe_source(explicit=EXPLICIT_KEYS, env=SDK_ENV)
    assert label == "AK/SK from runbook credentials"


def test_explicit_token_wins_over_every_variable() -> None:
    auth = resolve(SDK_ENV | TOKEN_ENV | IAM_ENV, EXPLICIT_TOKEN)
    assert isinstance(auth, StaticTokenAuth)
    assert describe_source(explicit=EXPLICIT_TOKEN, env=SDK_ENV) == "token from --token"


async def test_explicit_token_is_the_one_sent() -> None:
    auth = resolve(TOKEN_ENV, EXPLICIT_TOKEN)
    assert await auth.auth_headers() == {"X-Auth-Token": SECRETS["explicit-token"]}


def test_empty_explicit_settings_fall_through_to_the_environment() -> None:
    auth = resolve(TOKEN_ENV, CredentialSettings())
    assert isinstance(auth, StaticTokenAuth)


def test_sdk_ak_sk_wins_over_token_and_iam_password() -> None:
    assert isinstance(resolve(SDK_ENV | TOKEN_ENV | IAM_ENV), AkSkAuth)
    assert describe_source(explicit=None, env=SDK_ENV | TOKEN_ENV) == (
        "AK/SK from HUAWEICLOUD_SDK_AK"
    )


async def test_sdk_security_token_makes_temporary_credentials() -> None:
    env = SDK_ENV | {"HUAWEICLOUD_SDK_SECURITY_TOKEN": SECRETS["sdk-security"]}
    auth = resolve(env)
    request = HttpRequest(
        method="POST", url="https://drs.example/v3/p/jobs", headers={}, body=b"{}"
    )
    headers = await auth.auth_headers(request)
    assert headers["X-Security-Token"] == SECRETS["sdk-security"]
    assert headers["X-Project-Id"] == PROJECT
    assert describe_source(explicit=None, env=env) == "temporary AK/SK from HUAWEICLOUD_SDK_AK"


def test_token_variable_wins_over_iam_password() -> None:
    assert isinstance(resolve(TOKEN_ENV | IAM_ENV), StaticTokenAuth)
    assert describe_source(explicit=None, env=TOKEN_ENV | IAM_ENV) == "token from DRS_AUTH_TOKEN"


def test_iam_password_is_the_last_resort() -> None:
    auth = resolve(IAM_ENV)
    assert isinstance(auth, IamPasswordAuth)
    assert "https://iam.cn-north-4.myhuaweicloud.com/v3/auth/tokens" in repr(auth)
    assert describe_source(explicit=None, env=IAM_ENV) == (
        "IAM password of user 'ops-bot' from DRS_IAM_USER"
    )


@pytest.mark.parametrize(
    ("extra", "given", "expected"),
    [
        ({"DRS_IAM_ENDPOINT": "https://iam.a"}, "https://iam.c", "https://iam.a"),
        ({"HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.b"}, "https://iam.c", "https://iam.b"),
        (
            {"DRS_IAM_ENDPOINT": "https://iam.a", "HUAWEICLOUD_SDK_IAM_ENDPOINT": "https://iam.b"},
            None,
            "https://iam.a",
        ),
        ({}, "https://iam.c", "https://iam.c"),
    ],
)
def test_iam_endpoint_order(extra: dict[str, str], given: str | None, expected: str) -> None:
    auth = resolve(IAM_ENV | extra, iam_endpoint=given)
    assert f"url='{expected}/v3/auth/tokens'" in repr(auth)


def test_iam_password_without_any_endpoint_or_region_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="IAM endpoint"):
        resolve(IAM_ENV, region=None)


# --- nothing, or partial sets -------------------------------------------------------------------


def test_no_credentials_names_every_option() -> None:
    with pytest.raises(UsageError) as info:
        resolve({"DRS_IAM_ENDPOINT": "https://iam.a", "HUAWEICLOUD_SDK_AK": ""})
    assert str(info.value) == NO_CREDENTIALS
    for name in ("DRS_AUTH_TOKEN", "HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "DRS_IAM_USER"):
        assert name in str(info.value)
    # kept compatible with the CLI's historical message
    assert str(info.value).startswith("no credentials: set DRS_AUTH_TOKEN")


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"HUAWEICLOUD_SDK_AK": "AK1"}, "HUAWEICLOUD_SDK_SK missing (HUAWEICLOUD_SDK_AK set)"),
        (
            {"HUAWEICLOUD_SDK_SK": SECRETS["sdk-sk"]},
            "HUAWEICLOUD_SDK_AK missing (HUAWEICLOUD_SDK_SK set)",
        ),
        (
            {"HUAWEICLOUD_SDK_SECURITY_TOKEN": SECRETS["sdk-security"]},
            "HUAWEICLOUD_SDK_AK and HUAWEICLOUD_SDK_SK missing "
            "(HUAWEICLOUD_SDK_SECURITY_TOKEN set)",
        ),
        (
            {"DRS_IAM_USER": "ops-bot"},
            "DRS_IAM_PASSWORD and DRS_IAM_DOMAIN missing (DRS_IAM_USER set)",
        ),
        (
            {"DRS_IAM_USER": "ops-bot", "DRS_IAM_PASSWORD": SECRETS["password"]},
            "DRS_IAM_DOMAIN missing (DRS_IAM_USER, DRS_IAM_PASSWORD set)",
        ),
        (
            {"DRS_IAM_PASSWORD": SECRETS["password"], "DRS_IAM_DOMAIN": "acme"},
            "DRS_IAM_USER missing (DRS_IAM_PASSWORD, DRS_IAM_DOMAIN set)",
        ),
    ],
)
def test_a_partial_set_names_what_is_missing_and_no_secret(
    env: dict[str, str], missing: str
) -> None:
    with pytest.raises(UsageError) as info:
        resolve(env)
    assert str(info.value) == f"incomplete credentials in the environment: {missing}"
    assert_no_secret(str(info.value))


def test_a_partial_set_is_an_error_even_when_a_later_source_is_complete() -> None:
    with pytest.raises(UsageError, match="HUAWEICLOUD_SDK_SK missing"):
        resolve({"HUAWEICLOUD_SDK_AK": "AK1"} | TOKEN_ENV)


def test_a_partial_set_after_the_chosen_source_is_not_examined() -> None:
    assert isinstance(resolve(TOKEN_ENV | {"DRS_IAM_USER": "ops-bot"}), StaticTokenAuth)


@pytest.mark.parametrize(
    ("env", "explicit", "message"),
    [
        # A variable's bytes that are not UTF-8, as Python reads them (surrogateescape)
        ({"DRS_AUTH_TOKEN": "ENV-TOKEN-\udcff"}, None, "token from DRS_AUTH_TOKEN: the token"),
        (
            {**SDK_ENV, "HUAWEICLOUD_SDK_SK": "SDK-SK-\udce9"},
            None,
            "AK/SK from HUAWEICLOUD_SDK_AK: the SK",
        ),
        (
            {**IAM_ENV, "DRS_IAM_USER": "ops-\udcff"},
            None,
            "IAM password of user 'ops-\\udcff' from DRS_IAM_USER: the user",  # its repr
        ),
        # A credentials file's "\ud800" escape, as YAML reads it
        ({}, CredentialSettings(token="TOKEN-\ud800", origin="credentials file c.yaml"), None),
    ],
)
def test_a_secret_that_is_not_utf8_text_is_refused_naming_only_where_it_is(
    env: dict[str, str], explicit: CredentialSettings | None, message: str | None
) -> None:
    with pytest.raises(UsageError) as info:
        resolve(env, explicit)  # before: UnicodeEncodeError from the redaction, a traceback
    said = message or "token from credentials file c.yaml: the token"
    assert str(info.value) == f"{said} is not UTF-8 text; set it again as UTF-8"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (CredentialSettings(ak="AK1", origin="--ak"), "in --ak: sk missing (ak set)"),
        (
            CredentialSettings(sk=SECRETS["explicit-sk"], origin="runbook"),
            "in runbook: ak missing (sk set)",
        ),
        (
            CredentialSettings(security_token=SECRETS["sdk-security"], origin="runbook"),
            "in runbook: ak and sk missing (security_token set)",
        ),
        (
            CredentialSettings(ak="AK1", sk=SECRETS["explicit-sk"], token=SECRETS["env-token"]),
            "either an AK/SK pair or a token, not both",
        ),
    ],
)
def test_partial_or_conflicting_explicit_settings_are_usage_errors(
    settings: CredentialSettings, message: str
) -> None:
    with pytest.raises(UsageError) as info:
        resolve(TOKEN_ENV, settings)
    assert message in str(info.value)
    assert_no_secret(str(info.value))


# --- project id and secrets ---------------------------------------------------------------------


async def test_sdk_project_id_different_from_the_target_warns_and_the_target_wins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = SDK_ENV | {"HUAWEICLOUD_SDK_PROJECT_ID": "f" * 32}
    with caplog.at_level(logging.WARNING, logger="engine.api.credentials"):
        auth = resolve(env)
    request = HttpRequest(method="POST", url="https://drs.example/v3/x", headers={}, body=b"")
    assert (await auth.auth_headers(request))["X-Project-Id"] == PROJECT
    assert "HUAWEICLOUD_SDK_PROJECT_ID" in caplog.text
    assert "using the target's project" in caplog.text
    assert_no_secret(caplog.text)


def test_sdk_project_id_equal_to_the_target_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="engine.api.credentials"):
        resolve(SDK_ENV | {"HUAWEICLOUD_SDK_PROJECT_ID": PROJECT})
    assert caplog.text == ""


@pytest.mark.parametrize(
    ("env", "explicit"),
    [
        (SDK_ENV | {"HUAWEICLOUD_SDK_SECURITY_TOKEN": SECRETS["sdk-security"]}, None),
        (TOKEN_ENV, None),
        (IAM_ENV, None),
        ({}, EXPLICIT_KEYS),
        ({}, EXPLICIT_TOKEN),
    ],
)
def test_no_secret_in_auth_repr_or_label(
    env: dict[str, str], explicit: CredentialSettings | None
) -> None:
    assert_no_secret(repr(resolve(env, explicit)))
    assert_no_secret(describe_source(explicit=explicit, env=env))


def test_settings_repr_hides_secrets() -> None:
    text = repr(
        CredentialSettings(
            ak="AK1",
            sk=SECRETS["explicit-sk"],
            security_token=SECRETS["sdk-security"],
            token=SECRETS["explicit-token"],
        )
    )
    assert_no_secret(text)
