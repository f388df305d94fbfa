"""The emulator's IAM: ``POST /v3/auth/tokens``, password authentication scoped to a project.

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

from engine.emulator.gateway import (
    FLEET,
    TOKENS,
    WALL_CLOCK,
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
    """``POST /v3/auth/tokens``: password auth scoped to a fleet project; token in a header."""
    fleet = request.app[FLEET]
    config = fleet.config
    try:
        body = json.loads(await request.text())
    except json.JSONDecodeError:
        return iam_error(400, "Bad Request", "The request body is not valid JSON.")
    identity = _dig(body, "auth", "identity")
    user = _dig(identity, "password", "user")
    scope = _dig(body, "auth", "scope", "project")
    methods = _dig(identity, "methods")
    if not isinstance(methods, list) or "password" not in methods or not isinstance(scope, dict):
        return iam_error(400, "Bad Request", "The request you have made requires password auth.")
    if (
        _dig(user, "name") != config.user
        or _dig(user, "password") != config.password
        or _dig(user, "domain", "name") != config.domain
    ):
        return iam_error(401, "Unauthorized", "The username or password is wrong.")
    project = next(
        (
            p
            for p in config.projects
            if p.project_id == scope.get("id")
            or ("id" not in scope and p.region == scope.get("name"))
        ),
        None,
    )
    if project is None:
        return iam_error(401, "Unauthorized", "The project in the scope is not found.")
    tokens = request.app[TOKENS]
    token = tokens.issue(project.project_id)
    issued = datetime.fromtimestamp(request.app[WALL_CLOCK](), UTC)
    body = {
        "token": {
            "expires_at": _iso_z(issued + timedelta(seconds=tokens.ttl_s)),
            "issued_at": _iso_z(issued),
            "methods": ["password"],
            "project": {
                "id": project.project_id,
                "name": project.region,
                "domain": {"name": config.domain},
            },
            "user": {"name": config.user, "domain": {"name": config.domain}},
            "catalog": [],
        }
    }
    return web.json_response(body, status=201, headers={"X-Subject-Token": token.value})
