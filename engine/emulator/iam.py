"""The emulator's IAM: tokens (``POST /v3/auth/tokens``) and project discovery
(``GET /v3/auth/projects``), each for the account the credentials belong to.

A token is issued for password authentication scoped to one of the user's account's projects
(or to its domain: such a token serves IAM's own calls, project discovery, and no project's API),
by id or by name (``engine.emulator.accounts``: a project's name is its region, or
``<region>_<n>`` for a further project in the region); another account's project is "not found".

Discovery (IAM KeystoneListAuthProjects) answers every project of the caller's account, whatever
the token's scope, in one answer: the real API takes no query parameters and does not page
(its ``links`` has only ``self``; ``../shared/drs-api.md``, "Project discovery"). It accepts an
``X-Auth-Token`` (the documented way) or an AK/SK signature (how the SDK's ``IamClient`` calls it
with ``GlobalCredentials``). Each project is ``{"id", "name", "domain_id", "parent_id",
"enabled", "is_domain", "description", "links": {"self"}}`` as the SDK's ``AuthProjectResult``
spells it; ``parent_id`` is the account (domain) id for a region's project and the region's
project id for a subproject, as IAM documents.

IAM answers errors in the Keystone shape that IAM itself uses,
``{"error": {"code": 401, "message": "...", "title": "Unauthorized"}}`` (400 for a malformed
body), not the DRS shape: a client must cope with both.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from engine.emulator.accounts import AccountSpec
from engine.emulator.gateway import (
    TENANCY,
    TOKENS,
    WALL_CLOCK,
    RequestRejectedError,
    authenticate,
    iam_error,
)

logger = logging.getLogger(__name__)


def _dig(body: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(body, dict):
            return None
        body = body.get(key)
    return body


def _iso_z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def issue_token(request: web.Request) -> web.Response:
    """``POST /v3/auth/tokens``: password auth scoped to a project of the user's account; the
    token in the ``X-Subject-Token`` header."""
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        return iam_error(400, "Bad Request", "The request body is not valid JSON.")
    identity = _dig(body, "auth", "identity")
    user = _dig(identity, "password", "user")
    scope = _dig(body, "auth", "scope", "project")
    domain_scope = _dig(body, "auth", "scope", "domain")
    methods = _dig(identity, "methods")
    scoped = isinstance(scope, dict) or isinstance(domain_scope, dict)
    if not isinstance(methods, list) or "password" not in methods or not scoped:
        return iam_error(400, "Bad Request", "The request you have made requires password auth.")
    account = request.app[TENANCY].by_user(_dig(user, "domain", "name"), _dig(user, "name"))
    if account is None or _dig(user, "password") != account.password:
        return iam_error(401, "Unauthorized", "The username or password is wrong.")
    tokens = request.app[TOKENS]
    issued = datetime.fromtimestamp(request.app[WALL_CLOCK](), UTC)
    token_body: dict[str, Any] = {
        "expires_at": _iso_z(issued + timedelta(seconds=tokens.ttl_s)),
        "issued_at": _iso_z(issued),
        "methods": ["password"],
        "user": {"name": account.user, "domain": {"name": account.domain}},
        "catalog": [],
    }
    if not isinstance(scope, dict):
        # A domain-scoped token: good for IAM's own calls (project discovery), refused by every
        # project's API (its project is "", which matches none).
        assert isinstance(domain_scope, dict)
        if (
            domain_scope.get("name", account.domain) != account.domain
            or domain_scope.get("id", account.domain_id) != account.domain_id
        ):
            return iam_error(401, "Unauthorized", "The domain in the scope is not found.")
        token = tokens.issue(account.name, "")
        token_body["domain"] = {"name": account.domain, "id": account.domain_id}
        return web.json_response(
            {"token": token_body}, status=201, headers={"X-Subject-Token": token.value}
        )
    names = account.project_names()
    project = next(
        (
            p
            for p in account.projects
            if p.project_id == scope.get("id")
            or ("id" not in scope and names[p.project_id] == scope.get("name"))
        ),
        None,
    )
    if project is None:
        return iam_error(401, "Unauthorized", "The project in the scope is not found.")
    token = tokens.issue(account.name, project.project_id)
    token_body["project"] = {
        "id": project.project_id,
        "name": names[project.project_id],
        "domain": {"name": account.domain},
    }
    body = {"token": token_body}
    return web.json_response(body, status=201, headers={"X-Subject-Token": token.value})


def auth_projects_json(account: AccountSpec, base_url: str) -> dict[str, Any]:
    """The KeystoneListAuthProjects answer for ``account`` (see the module docstring)."""
    names = account.project_names()
    by_name = {name: project_id for project_id, name in names.items()}
    projects = []
    for project in account.projects:
        name = names[project.project_id]
        parent = account.domain_id if name == project.region else by_name[project.region]
        projects.append(
            {
                "is_domain": False,
                "description": "",
                "links": {"self": f"{base_url}/v3/projects/{project.project_id}"},
                "enabled": True,
                "id": project.project_id,
                "parent_id": parent,
                "domain_id": account.domain_id,
                "name": name,
            }
        )
    return {"links": {"self": f"{base_url}/v3/auth/projects"}, "projects": projects}


async def list_auth_projects(request: web.Request) -> web.Response:
    """``GET /v3/auth/projects``: every project of the caller's account (no paging)."""
    try:
        caller = await authenticate(request)
    except RequestRejectedError:
        return iam_error(401, "Unauthorized", "The request you have made requires authentication.")
    account = request.app[TENANCY].accounts[caller.account]
    return web.json_response(auth_projects_json(account, f"{request.scheme}://{request.host}"))
