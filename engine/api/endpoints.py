"""Region name to the base URLs of DRS and IAM."""

from __future__ import annotations

import re

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
