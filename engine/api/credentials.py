"""Which credentials a run uses: explicit settings, then the environment, in a documented order.

``resolve_credentials`` takes the first source that is set, from the most to the least specific:

1. explicit settings (runbook or command line): an AK/SK pair (with an optional security token)
   or an IAM token;
2. the official SDK's variables ``HUAWEICLOUD_SDK_AK`` + ``HUAWEICLOUD_SDK_SK`` (+
   ``HUAWEICLOUD_SDK_SECURITY_TOKEN`` for temporary credentials) — AK/SK signing;
3. ``DRS_AUTH_TOKEN`` — a ready IAM token (cannot be renewed);
4. ``DRS_IAM_USER`` + ``DRS_IAM_PASSWORD`` + ``DRS_IAM_DOMAIN`` — a token from IAM, renewed before
   it expires. IAM is ``DRS_IAM_ENDPOINT``, else ``HUAWEICLOUD_SDK_IAM_ENDPOINT``, else the
   caller's ``iam_endpoint``, else ``https://iam.{region}...``.

A source that is partly set (an AK without its SK, a user without a password) is a
``UsageError`` naming what is missing, even when a later source is complete: silently falling
through to other credentials would act with an identity the user did not choose. Sources after
the chosen one are not examined. Empty values count as unset.

``HUAWEICLOUD_SDK_PROJECT_ID``: the SDK signs ``X-Project-Id`` with it. A runbook names the
project of each target, and one run may span several projects, so the target's project always
wins; a different value in the variable is logged as a warning and otherwise ignored.

No message, label or ``repr`` here contains a secret value: only variable names, user names and
project ids.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from engine.api.endpoints import iam_endpoint as region_iam_endpoint
from engine.api.envvars import (
    IAM_DOMAIN_ENV,
    IAM_ENDPOINT_ENV,
    IAM_PASSWORD_ENV,
    IAM_USER_ENV,
    SDK_AK_ENV,
    SDK_IAM_ENDPOINT_ENV,
    SDK_PROJECT_ID_ENV,
    SDK_SECURITY_TOKEN_ENV,
    SDK_SK_ENV,
    TOKEN_ENV,
)
from engine.errors import UsageError
from engine.surrogates import lone_surrogate_at, replace_lone_surrogates

if TYPE_CHECKING:  # the network stack is imported when credentials are resolved, not before
    from engine.api.auth import Auth
    from engine.api.resilience import Resilience
    from engine.api.transport import Transport

logger = logging.getLogger(__name__)

NO_CREDENTIALS = (
    f"no credentials: set {TOKEN_ENV}, or {SDK_AK_ENV} and {SDK_SK_ENV}, or {IAM_USER_ENV}, "
    f"{IAM_PASSWORD_ENV} and {IAM_DOMAIN_ENV}, or give an AK/SK or token in the settings"
)


class CredentialKind(StrEnum):
    AK_SK = "ak_sk"
    TOKEN = "token"
    IAM_PASSWORD = "iam_password"


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialSettings:
    """Credentials given explicitly (runbook or command line); secrets stay out of ``repr``.

    ``origin`` names where they came from for messages and labels, e.g. ``"--ak/--sk"``.
    """

    ak: str | None = None
    sk: str | None = field(default=None, repr=False)
    security_token: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    # an IAM user whose password gets tokens (an account of the runbook may name one)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    domain: str | None = None
    origin: str = "the settings"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Choice:
    kind: CredentialKind
    label: str
    ak: str = ""
    sk: str = field(default="", repr=False)
    security_token: str | None = field(default=None, repr=False)
    token: str = field(default="", repr=False)
    user: str = ""
    password: str = field(default="", repr=False)
    domain: str = ""


def resolve_credentials(
    *,
    explicit: CredentialSettings | None,
    env: Mapping[str, str],
    project_id: str | None,
    region: str | None,
    iam_endpoint: str | None,
    transport: Transport,
    resilience: Resilience | None = None,
) -> Auth:
    """The ``Auth`` for one target's project, from the first source set (module docstring).

    ``iam_endpoint`` is the caller's IAM base URL (e.g. derived from ``--endpoint``), used for
    IAM passwords when no variable names one; ``resilience`` retries IAM token requests.
    Raises ``UsageError`` when no source is set or one is partly set.
    """
    from engine.api.auth import AkSkAuth, IamPasswordAuth, StaticTokenAuth

    choice = _choose(explicit, env)
    if project_id is not None:  # None: for IAM's own calls (project discovery), domain-wide
        _warn_on_other_project(env, project_id)
    if choice.kind is CredentialKind.AK_SK:
        return AkSkAuth(choice.ak, choice.sk, project_id, choice.security_token)
    if choice.kind is CredentialKind.TOKEN:
        return StaticTokenAuth(choice.token)
    return IamPasswordAuth(
        transport=transport,
        iam_endpoint=_iam_endpoint(env, iam_endpoint, region),
        user=choice.user,
        password=choice.password,
        domain=choice.domain,
        project_id=project_id,
        resilience=resilience,
    )


def describe_source(*, explicit: CredentialSettings | None, env: Mapping[str, str]) -> str:
    """A short label of the credentials ``resolve_credentials`` picks, for logs and reports.

    For example ``"AK/SK from HUAWEICLOUD_SDK_AK"``; never a secret. Raises like
    ``resolve_credentials`` when no source is set or one is partly set.
    """
    return _choose(explicit, env).label


def _choose(explicit: CredentialSettings | None, env: Mapping[str, str]) -> _Choice:
    for source in (_from_settings, _from_sdk_env, _from_token_env, _from_iam_env):
        choice = source(explicit, env)
        if choice is not None:
            _refuse_text_that_is_not_utf8(choice)
            return choice
    raise UsageError(NO_CREDENTIALS)


def _refuse_text_that_is_not_utf8(choice: _Choice) -> None:
    """A value with a lone surrogate (bytes that are not UTF-8 in a variable, which Python
    reads with ``surrogateescape``; a credentials file's "\\ud800" escape) can be neither
    sent in a header nor looked for in what a server echoes: refused, naming only the field."""
    values = {
        "AK": choice.ak,
        "SK": choice.sk,
        "security token": choice.security_token or "",
        "token": choice.token,
        "user": choice.user,
        "password": choice.password,
        "domain": choice.domain,
    }
    for name, value in values.items():
        if lone_surrogate_at(value) is not None:
            raise UsageError(
                f"{replace_lone_surrogates(choice.label)}: the {name} is not UTF-8 text; "
                "set it again as UTF-8"
            )


def _from_settings(explicit: CredentialSettings | None, env: Mapping[str, str]) -> _Choice | None:
    if explicit is None:
        return None
    where = explicit.origin
    has_keys = bool(explicit.ak or explicit.sk or explicit.security_token)
    if has_keys and explicit.token:
        raise UsageError(f"{where}: give either an AK/SK pair or a token, not both")
    if explicit.token:
        return _Choice(kind=CredentialKind.TOKEN, label=f"token from {where}", token=explicit.token)
    if not has_keys and (explicit.user or explicit.password or explicit.domain):
        _require(
            {"user": explicit.user, "password": explicit.password, "domain": explicit.domain},
            where,
        )
        return _Choice(
            kind=CredentialKind.IAM_PASSWORD,
            label=f"IAM password of user {explicit.user!r} from {where}",
            user=explicit.user or "",
            password=explicit.password or "",
            domain=explicit.domain or "",
        )
    if not has_keys:
        return None
    _require(
        {"ak": explicit.ak, "sk": explicit.sk}, where, {"security_token": explicit.security_token}
    )
    return _ak_sk(explicit.ak or "", explicit.sk or "", explicit.security_token, where)


def _from_sdk_env(explicit: CredentialSettings | None, env: Mapping[str, str]) -> _Choice | None:
    ak, sk, security = (_get(env, n) for n in (SDK_AK_ENV, SDK_SK_ENV, SDK_SECURITY_TOKEN_ENV))
    if not (ak or sk or security):
        return None
    _require(
        {SDK_AK_ENV: ak, SDK_SK_ENV: sk}, "the environment", {SDK_SECURITY_TOKEN_ENV: security}
    )
    return _ak_sk(ak or "", sk or "", security, SDK_AK_ENV)


def _from_token_env(explicit: CredentialSettings | None, env: Mapping[str, str]) -> _Choice | None:
    token = _get(env, TOKEN_ENV)
    if token is None:
        return None
    return _Choice(kind=CredentialKind.TOKEN, label=f"token from {TOKEN_ENV}", token=token)


def _from_iam_env(explicit: CredentialSettings | None, env: Mapping[str, str]) -> _Choice | None:
    values = {name: _get(env, name) for name in (IAM_USER_ENV, IAM_PASSWORD_ENV, IAM_DOMAIN_ENV)}
    if not any(values.values()):
        return None
    _require(values, "the environment")
    user = values[IAM_USER_ENV] or ""
    return _Choice(
        kind=CredentialKind.IAM_PASSWORD,
        label=f"IAM password of user {user!r} from {IAM_USER_ENV}",
        user=user,
        password=values[IAM_PASSWORD_ENV] or "",
        domain=values[IAM_DOMAIN_ENV] or "",
    )


def _ak_sk(ak: str, sk: str, security_token: str | None, where: str) -> _Choice:
    temporary = "temporary " if security_token else ""
    return _Choice(
        kind=CredentialKind.AK_SK,
        label=f"{temporary}AK/SK from {where}",
        ak=ak,
        sk=sk,
        security_token=security_token,
    )


def _require(
    required: Mapping[str, str | None], where: str, optional: Mapping[str, str | None] | None = None
) -> None:
    """UsageError naming the missing members of a partly set source (names, never values)."""
    missing = [name for name, value in required.items() if not value]
    if missing:
        every = {**required, **(optional or {})}
        given = [name for name, value in every.items() if value]
        raise UsageError(
            f"incomplete credentials in {where}: {' and '.join(missing)} missing "
            f"({', '.join(given)} set)"
        )


def _iam_endpoint(env: Mapping[str, str], given: str | None, region: str | None) -> str:
    chosen = _get(env, IAM_ENDPOINT_ENV) or _get(env, SDK_IAM_ENDPOINT_ENV) or given
    if chosen:
        return chosen
    if region:
        return region_iam_endpoint(region)
    raise UsageError(
        f"IAM password credentials need an IAM endpoint: set {IAM_ENDPOINT_ENV} or a region"
    )


def _warn_on_other_project(env: Mapping[str, str], project_id: str) -> None:
    sdk_project = _get(env, SDK_PROJECT_ID_ENV)
    if sdk_project and sdk_project != project_id:
        logger.warning(
            "%s is %s but the target's project is %s: using the target's project",
            SDK_PROJECT_ID_ENV,
            sdk_project,
            project_id,
        )


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None
