"""What a run is given: the validated runbook with its params, and where its targets are.

    prepare(path, params=..., params_file=..., overrides=..., shard=...)  ->  Inputs
    endpoint_where(url, credentials_file=...) / Where(emulator=EmulatorSettings(...))  ->  Where

Every problem with them is a ``UsageError`` or a ``RunbookInvalidError`` (with FILE:LINE:COL),
raised before anything is sent.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from engine.actions.catalog import CATALOG
from engine.api.bounds import DEFAULT_REQUEST_TIMEOUT_S
from engine.api.credentials import CredentialSettings
from engine.api.endpoints import clear_text_targets, in_clear_refusal, sends_in_clear
from engine.api.envvars import IAM_ENDPOINT_ENV, IAM_USER_ENV, SDK_IAM_ENDPOINT_ENV, TOKEN_ENV
from engine.bounded import FileRefusedError, file_mode, read_file
from engine.errors import UsageError
from engine.redact import keep_secret
from engine.run.journal import is_secret_param
from engine.run.shard import Shard
from engine.runbook import Runbook, Target, bind_params, load_runbook
from engine.runbook.model import Discovery
from engine.runbook.parse import MAX_BYTES
from engine.surrogates import lone_surrogate_at

# A credentials file holds a few keys: anything this long is not one.
CREDENTIALS_LIMIT = 64 * 1024
# Guard rails the command line may set over the runbook's.
GUARD_RAILS = ("max_jobs", "max_jobs_total", "max_errors")


@dataclass(frozen=True, slots=True, kw_only=True)
class EmulatorSettings:
    """The in-process emulator a run starts for itself, seeded with the runbook's targets."""

    seed: int = 0
    jobs: int = 20
    time_scale: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """Where a run's targets are: an emulator it starts, one endpoint for all, or the cloud
    (each target's region or endpoint); ``credentials`` from a file win over the environment.

    ``allow_insecure_http`` lets plain http reach a host other than this machine (the user
    insists); ``request_timeout_s`` bounds each request from connecting to its last byte."""

    emulator: EmulatorSettings | None = None
    endpoint: str | None = None
    credentials: CredentialSettings | None = None
    credentials_file: Path | None = None
    allow_insecure_http: bool = False
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Inputs:
    """A validated runbook with its bound params, the environment it may read, and what the
    command line set over it (kept in the journal, so a resume continues with the same)."""

    path: Path
    source: bytes
    runbook: Runbook
    params: Mapping[str, Any]
    env: Mapping[str, str]
    overrides: Mapping[str, int] = dataclasses.field(default_factory=dict)
    shard: str | None = None  # --shard I/N: the runbook holds only that shard's targets
    limit: TargetLimit = dataclasses.field(default_factory=lambda: TargetLimit())


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetLimit:
    """``--target`` / ``--skip-target``: the targets a run takes, by name or project id (shell
    globs allowed); empty ``only`` is every target. Kept in the journal and the plan file."""

    only: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.only or self.skip)

    def apply(self, runbook: Runbook, file: Path) -> Runbook:
        """The runbook with only the targets the limit takes; a pattern that matches no
        target, or a limit that leaves none, is a usage error."""
        if not self:
            return runbook
        names = ", ".join(t.label for t in runbook.targets)
        for flag, patterns in (("--target", self.only), ("--skip-target", self.skip)):
            for pattern in patterns:
                if not any(_names(t, pattern) for t in runbook.targets):
                    raise UsageError(
                        f"{flag} {pattern!r} matches no target of {file} (targets: {names})"
                    )
        kept = tuple(
            t
            for t in runbook.targets
            if (not self.only or any(_names(t, p) for p in self.only))
            and not any(_names(t, p) for p in self.skip)
        )
        if not kept:
            raise UsageError(f"--target / --skip-target leave no target of {file} to run")
        return dataclasses.replace(runbook, targets=kept)

    def as_json(self) -> dict[str, list[str]]:
        return {"only": list(self.only), "skip": list(self.skip)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> TargetLimit:
        raw = raw or {}
        return cls(only=tuple(raw.get("only", ())), skip=tuple(raw.get("skip", ())))


def _names(target: Target, pattern: str) -> bool:
    return any(
        fnmatch.fnmatchcase(name, pattern) for name in (target.name, target.project_id) if name
    )


def as_bound(
    path: Path,
    *,
    params: Mapping[str, Any],
    overrides: Mapping[str, int],
    shard: str | None,
    limit: TargetLimit,
) -> Inputs:
    """The runbook at ``path`` with params already bound and the command line's guard rails,
    target limit and shard applied as recorded (a resumed run, an applied plan)."""
    runbook = limit.apply(with_guard_rails(load_runbook(path, CATALOG), overrides), path)
    if shard is not None:  # recorded target indices count the shard's targets
        runbook = sharded(runbook, shard, path)
    return Inputs(
        path=path,
        source=read_bytes(path),
        runbook=runbook,
        params=params,
        env=env_of(runbook),
        overrides=overrides,
        shard=shard,
        limit=limit,
    )


def prepare(
    path: Path,
    *,
    params: Mapping[str, str] | None = None,
    params_file: Path | None = None,
    overrides: Mapping[str, int | None] | None = None,
    shard: str | None = None,
    shard_by: str | None = None,
    limit: TargetLimit | None = None,
) -> Inputs:
    """Read and validate the runbook at ``path`` and bind its params (``params`` as
    ``--param NAME=VALUE`` gives them, as text); apply guard-rail ``overrides`` and a shard
    (``shard_by`` target, account or region)."""
    runbook = load_runbook(path, CATALOG)
    bound = bind_params(runbook, dict(params or {}), params_file)
    for name, value in bound.items():
        if is_secret_param(name) and isinstance(value, str):
            keep_secret(value)  # redacted wherever a server echoes it, as in the journal
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if unknown := set(given) - set(GUARD_RAILS):
        raise UsageError(f"unknown guard rail {sorted(unknown)[0]}; use {', '.join(GUARD_RAILS)}")
    runbook = with_guard_rails(runbook, given)
    limit = limit or TargetLimit()
    runbook = limit.apply(runbook, path)
    if shard is not None:
        shard = str(Shard.parse(shard, shard_by))  # as recorded: "2/4" or "2/4 by account"
        runbook = sharded(runbook, shard, path)
    elif shard_by is not None:
        raise UsageError("--shard-by needs --shard I/N")
    return Inputs(
        path=path,
        source=read_bytes(path),  # what the journal's digest is taken of
        runbook=runbook,
        params=bound,
        env=env_of(runbook),
        overrides=given,
        shard=shard,
        limit=limit,
    )


def with_guard_rails(runbook: Runbook, overrides: Mapping[str, int]) -> Runbook:
    """The runbook with the guard rails the command line set (they win over the runbook's)."""
    if not overrides:
        return runbook
    return dataclasses.replace(
        runbook,
        max_jobs=overrides.get("max_jobs", runbook.max_jobs),
        max_jobs_total=overrides.get("max_jobs_total", runbook.max_jobs_total),
        max_errors=overrides.get("max_errors", runbook.max_errors),
    )


def sharded(runbook: Runbook, text: str, file: Path, by: str | None = None) -> Runbook:
    """The runbook with only the targets (and discoveries) of shard ``text`` (I/N), by target,
    account or region (``engine.run.shard``)."""
    shard = Shard.parse(text, by)
    units: tuple[Target | Discovery, ...] = (*runbook.targets, *runbook.discoveries)
    picked = shard.pick(units, _shard_key(shard.by))
    if not picked:
        groups = len({_shard_key(shard.by)(unit) for unit in units}) if shard.by != "target" else 0
        what = f"{groups} {shard.by}(s)" if shard.by != "target" else str(len(units))
        raise UsageError(
            f"--shard {shard} takes no target: {file} has {what}, so N can be at most "
            f"{groups or len(units)}"
        )
    return dataclasses.replace(
        runbook,
        targets=tuple(u for u in picked if isinstance(u, Target)),
        discoveries=tuple(u for u in picked if isinstance(u, Discovery)),
    )


def _shard_key(by: str) -> Callable[[Target | Discovery], str]:
    if by == "account":
        return lambda unit: unit.account or "-"
    return lambda unit: unit.region or unit.endpoint or ""


def endpoint_where(
    endpoint: str | None = None,
    *,
    credentials_file: Path | None = None,
    allow_insecure_http: bool = False,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> Where:
    """The targets at ``endpoint`` (or in the cloud when None), with optional credentials."""
    if endpoint is not None:
        endpoint = checked_endpoint(endpoint)
        if sends_in_clear(endpoint) and not allow_insecure_http:
            raise UsageError(in_clear_refusal(f"--endpoint {endpoint}"))
    return Where(
        endpoint=endpoint,
        credentials=None if credentials_file is None else read_credentials_file(credentials_file),
        credentials_file=credentials_file,
        allow_insecure_http=allow_insecure_http,
        request_timeout_s=request_timeout_s,
    )


def refuse_clear_text(runbook: Runbook, where: Where) -> None:
    """Before anything is sent: no credential goes over plain http to another machine unless
    the user allowed it (targets' endpoints and the IAM endpoint variables)."""
    if where.emulator is not None or where.allow_insecure_http:
        return
    if where.endpoint is None and (problems := clear_text_targets(runbook)):
        raise UsageError(f"{problems[0].location}: {problems[0].message}")
    for name in (IAM_ENDPOINT_ENV, SDK_IAM_ENDPOINT_ENV):
        if (url := os.environ.get(name)) and sends_in_clear(url):
            raise UsageError(in_clear_refusal(f"{name}={url}"))


def checked_endpoint(url: str) -> str:
    """An --endpoint must be an http(s) base URL with a host and no credentials in it."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise UsageError(
            f"--endpoint must be an http(s) URL such as https://drs.example:8443, got '{url}'"
        )
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"--endpoint must not carry credentials; set {TOKEN_ENV} or the {IAM_USER_ENV} "
            "variables instead"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"--endpoint must be a base URL without query or fragment, got '{url}'")
    return url.rstrip("/")


def read_credentials_file(path: Path) -> CredentialSettings:
    """Explicit credentials from a file: ak + sk (+ security_token), or token.

    Refused, as ssh refuses a private key, when the group or others may read or write it: the
    secrets in it are then no longer only the user's."""
    try:
        raw = read_file(path, limit=CREDENTIALS_LIMIT)
        mode = file_mode(path)
    except (FileRefusedError, OSError) as exc:
        reason = exc.reason if isinstance(exc, FileRefusedError) else exc.strerror or str(exc)
        raise UsageError(f"cannot read credentials file {path}: {reason}") from None
    if mode & 0o077:
        raise UsageError(
            f"credentials file {path} is open to others (mode {mode:04o}); "
            f"make it yours alone with `chmod 600 {path}`"
        )
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read credentials file {path}: {type(exc).__name__}") from None
    allowed = {"ak", "sk", "security_token", "token"}
    if not isinstance(data, dict) or not data or not set(data) <= allowed:
        raise UsageError(
            f"credentials file {path} must be a mapping of {', '.join(sorted(allowed))}"
        )
    if not all(isinstance(v, str) and v for v in data.values()):
        raise UsageError(f"credentials file {path}: every value must be a non-empty string")
    return CredentialSettings(
        ak=data.get("ak"),
        sk=data.get("sk"),
        security_token=data.get("security_token"),
        token=data.get("token"),
        origin=f"credentials file {path}",
    )


def env_of(runbook: Runbook) -> dict[str, str]:
    """The environment variables the runbook may read (its ``env:`` allow-list) that are set.

    A value with bytes that are not UTF-8 (which Python reads as lone surrogates) is refused:
    an expression would carry it into requests, the journal and the reports, and none of them
    can write it."""
    found = {name: os.environ[name] for name in runbook.env if name in os.environ}
    for name, value in found.items():
        if lone_surrogate_at(value) is not None:  # which byte is not said: it may be a secret
            raise UsageError(
                f"{runbook.path}: env: {name} is not UTF-8 text; set it again as UTF-8"
            )
    return found


def read_bytes(path: Path) -> bytes:
    """A runbook's bytes (for the journal's digest), as bounded as the parser reads them."""
    try:
        return read_file(path, limit=MAX_BYTES)
    except FileRefusedError as exc:
        raise UsageError(f"cannot read {path}: {exc.reason}") from None
