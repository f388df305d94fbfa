"""Region name to the base URLs of DRS and IAM, and which URLs would carry credentials in clear.

Light on purpose: ``runbook validate`` checks targets' endpoints with it without loading the
client.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from engine.errors import Diagnostic
from engine.rules import Rule
from engine.runbook import Runbook

# Regions served from the European site rather than myhuaweicloud.com.
_EU_REGIONS = frozenset({"eu-west-101"})
_REGION = re.compile(r"[a-z]{2,}(-[a-z0-9]+)+")


def drs_endpoint(region: str) -> str:
    """``https://drs.{region}.myhuaweicloud.com`` (``.eu`` for the European regions)."""
    return f"https://drs.{region}.{_domain(region)}"


def iam_endpoint(region: str) -> str:
    """``https://iam.{region}.myhuaweicloud.com`` (``.eu`` for the European regions)."""
    return f"https://iam.{region}.{_domain(region)}"


def _domain(region: str) -> str:
    # A region goes into a host name: refuse anything that could change the host.
    if not _REGION.fullmatch(region):
        raise ValueError(f"region must look like 'cn-north-4', got {region!r}")
    return "myhuaweicloud.eu" if region in _EU_REGIONS else "myhuaweicloud.com"


def sends_in_clear(url: str) -> bool:
    """Whether ``url`` is plain http to a host other than this machine (127.0.0.0/8, ::1,
    localhost): a token, a signature or an IAM password sent there crosses the network readable
    by anyone on the way."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a name: it may resolve anywhere


def in_clear_refusal(what: str) -> str:
    return (
        f"{what} is plain http to another machine: the token, signature or IAM password would "
        "cross the network in clear; use https, or pass --allow-insecure-http if you must"
    )


def clear_text_targets(runbook: Runbook) -> list[Diagnostic]:
    """An error for every target whose ``endpoint`` is plain http to another machine."""
    return [
        Diagnostic(
            location=target.location,
            rule=Rule.INSECURE_HTTP,
            message=in_clear_refusal(f"target '{target.label}' endpoint {target.endpoint}"),
            hint="loopback (127.0.0.1, localhost) is allowed for emulators",
        )
        for target in runbook.targets
        if target.endpoint is not None and sends_in_clear(target.endpoint)
    ]
