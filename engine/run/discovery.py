"""Targets by discovery: ``{account: A, regions: [...]}`` becomes every project of A there.

IAM's ``GET /v3/auth/projects`` (KeystoneListAuthProjects) lists the projects the caller's
credentials may use; a project's ``name`` is its region (``cn-north-4``) or a subproject of it
(``cn-north-4_orders``), which is how a project's region is known (facts and sources in
drs-api.md, "Project discovery"). The call is made once per account when the run (or plan)
starts, signed with that account's credentials only.

The answer is trusted no further than it must be: a redirect, an error, a body that is not the
documented shape, a project without a well-formed id, or more projects than ``MAX_PROJECTS`` is
a ``UsageError`` naming the account, never a silently shorter fleet. Disabled projects are left
out. The targets come out in a stable order (the runbook's, then region, then project name), so
the same answer gives the same targets, as a resume needs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.api.auth import Auth, IamPasswordAuth
from engine.api.credentials import CredentialSettings, resolve_credentials
from engine.api.endpoints import iam_endpoint as region_iam_endpoint
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, Transport, error_fields, json_body
from engine.errors import TransportError, UsageError
from engine.runbook import Runbook, Target
from engine.runbook.model import Discovery

if TYPE_CHECKING:
    from engine.run.wiring import EmulatorLogin

PROJECTS_PATH = "/v3/auth/projects"
MAX_PROJECTS = 5_000  # per account: far beyond any real account, a bound on a lying server
_PROJECT_ID = re.compile(r"[0-9a-f]{32}")
_PROJECT_NAME = re.compile(r"([a-z]{2}(?:-[a-z]+)+-[0-9]+)(?:_[\w.-]{1,64})?")


async def discover(
    runbook: Runbook,
    *,
    transport: Transport,
    iam_endpoint: Callable[[Discovery], str],
    auth_for: Callable[[str], Auth],
) -> tuple[Runbook, list[str]]:
    """The runbook with its discoveries expanded into targets, and a note per discovery.

    ``iam_endpoint`` gives the IAM base URL of a discovery, ``auth_for`` an account's
    domain-wide credentials. Raises ``UsageError`` when an account's projects cannot be read.
    """
    if not runbook.discoveries:
        return runbook, []
    listed: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    found: list[Target] = []
    notes: list[str] = []
    known = {target.project_id for target in runbook.targets}
    for discovery in runbook.discoveries:
        url = iam_endpoint(discovery).rstrip("/")
        key = (discovery.account, url)
        if key not in listed:  # one call per account and IAM endpoint
            listed[key] = await _projects(transport, url, auth_for(discovery.account), discovery)
        matches = sorted(
            (p for p in listed[key] if _region_of(p["name"]) == discovery.region),
            key=lambda p: (p["name"], p["id"]),
        )
        new = [p for p in matches if p["id"] not in known]
        known.update(p["id"] for p in new)
        found += [
            Target(
                project_id=p["id"],
                region=discovery.region,
                endpoint=discovery.endpoint,
                name=f"{discovery.account}/{p['name']}",
                location=discovery.location,
                account=discovery.account,
            )
            for p in new
        ]
        names = ", ".join(p["name"] for p in new) or "none"
        notes.append(
            f"discovered {len(new)} project(s) of account {discovery.account} in "
            f"{discovery.region}: {names}"
            + (
                f" ({len(matches) - len(new)} named as targets already)"
                if len(new) < len(matches)
                else ""
            )
        )
    return dataclasses.replace(runbook, targets=(*runbook.targets, *found), discoveries=()), notes


async def _projects(
    transport: Transport, url: str, auth: Auth, discovery: Discovery
) -> list[Mapping[str, Any]]:
    whose = f"account '{discovery.account}' ({discovery.location})"
    unsigned = HttpRequest(
        method="GET",
        url=f"{url}{PROJECTS_PATH}",
        headers={"Accept": "application/json", "Content-Type": "application/json"},
        body=b"",
    )
    try:
        headers = {**unsigned.headers, **await auth.auth_headers(unsigned)}
        response = await transport.send(dataclasses.replace(unsigned, headers=headers))
    except TransportError as exc:
        raise UsageError(f"cannot list the projects of {whose}: {exc}") from None
    if not response.ok:
        code, message = error_fields(response)
        raise UsageError(
            f"cannot list the projects of {whose}: HTTP {response.status} {code}: {message}"
            + (f" (request id {response.request_id})" if response.request_id else "")
        )
    try:
        body = json_body(response.body)
    except ValueError:
        body = None
    projects = body.get("projects") if isinstance(body, dict) else None
    if not isinstance(projects, list):
        raise UsageError(f"IAM's answer for {whose} has no list of projects; nothing discovered")
    if len(projects) > MAX_PROJECTS:
        raise UsageError(
            f"IAM answered {len(projects)} projects for {whose}, more than {MAX_PROJECTS}; "
            "name the projects as targets instead"
        )
    usable: list[Mapping[str, Any]] = []
    for project in projects:
        if not isinstance(project, dict):
            raise UsageError(f"IAM's answer for {whose} holds a project that is not an object")
        pid, name = project.get("id"), project.get("name")
        if not (isinstance(pid, str) and _PROJECT_ID.fullmatch(pid) and isinstance(name, str)):
            raise UsageError(
                f"IAM's answer for {whose} holds a project without a well-formed id and name"
            )
        if project.get("enabled", True) is not False:
            usable.append({"id": pid, "name": name})
    return usable


def _region_of(name: str) -> str | None:
    """``cn-north-4`` of ``cn-north-4`` or ``cn-north-4_subproject``; None for ``MOS`` and the
    like (projects of no region)."""
    match = _PROJECT_NAME.fullmatch(name)
    return match[1] if match else None


def discovery_iam(
    runbook: Runbook, endpoint: str | None, emulator: Mapping[str | None, EmulatorLogin] | None
) -> Callable[[Discovery], str]:
    """Where a discovery asks IAM: the emulator, else its account's ``iam_endpoint``, else the
    run's ``--endpoint`` (IAM beside DRS, as for tokens), else the region's public IAM."""

    def url(discovery: Discovery) -> str:
        if emulator is not None:
            return emulator[discovery.account].url
        account = runbook.accounts[discovery.account]
        return account.iam_endpoint or endpoint or region_iam_endpoint(discovery.region)

    return url


def discovery_auth(
    runbook: Runbook,
    transport: Transport,
    resilience: Resilience,
    emulator: Mapping[str | None, EmulatorLogin] | None,
    settings: Mapping[str, CredentialSettings],
) -> Callable[[str], Auth]:
    """An account's credentials for IAM's own calls, domain-wide, never a project's: from
    ``settings`` (``engine.run.accounts.account_settings``), or the emulator's users."""
    made: dict[str, Auth] = {}

    def auth(account: str) -> Auth:
        if account not in made:
            if emulator is not None:
                login = emulator[account]
                made[account] = IamPasswordAuth(
                    transport=transport,
                    iam_endpoint=login.url,
                    user=login.user,
                    password=login.password,
                    domain=login.domain,
                    project_id=None,
                    resilience=resilience,
                )
            else:
                spec = runbook.accounts[account]
                made[account] = resolve_credentials(
                    explicit=settings[account],
                    env={},
                    project_id=None,
                    region=None,
                    iam_endpoint=spec.iam_endpoint,
                    transport=transport,
                    resilience=resilience,
                )
        return made[account]

    return auth
