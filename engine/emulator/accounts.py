"""The emulator's tenancy: accounts (Huawei "domains"), their credentials and their projects.

An account owns an IAM user (name, password), one AK/SK pair, a domain (name and 32-hex id)
and its projects, each in a region. Every project belongs to exactly one account: the gateway
refuses an account's credentials on another account's project (``engine.emulator.gateway``),
and throttles per account per API, as the real gateway throttles per user per API.

Project names follow IAM (``../shared/drs-api.md``, "Project discovery"): an account has one
project per region, named after the region (``cn-north-4``); a further project in the same
region is a subproject named ``<region>_<suffix>`` (IAM's KeystoneCreateProject: the name
starts with the region id and ``_``). A client reads a project's region from its name, up to
the first ``_``: ``region_of_name``.

Everything is drawn from the seed: ``generate_accounts(1, P, seed)`` is exactly the single
demo account the emulator always had (its projects are ``generate_projects(P, seed)``, its
credentials the ``DEMO_*`` constants), so a one-account fleet does not change with this module.
Account ``k`` (1-based) of several has its own demo credentials (``runbook-demo-k``, an AK ending
in ``k``) and its projects' regions start ``k - 1`` places further along ``REGIONS``, so even
one project per account spreads the accounts over regions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

REGIONS = ("cn-north-4", "ap-southeast-1", "eu-west-101")
DEMO_USER = "runbook-demo"
DEMO_DOMAIN = "drs-emulator"
DEMO_PASSWORD = "Emu-Demo-Passw0rd!7"  # fixed on purpose: the emulator holds no real secret
DEMO_AK = "EMUDEMOAKRUNBOOK0DRS"  # 20 upper-case characters, like a real AK; not a secret
DEMO_SK = "EmuDemoSkRunbook0DrsV3SignMe4TestsOnly0x"  # 40 characters; not a secret
MAX_ACCOUNTS = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectSpec:
    """One tenant project of the fleet; ``project_id`` is 32 lowercase hex characters."""

    project_id: str
    region: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSpec:
    """One account: its name in the emulator, IAM identity, AK/SK and projects."""

    name: str
    domain: str
    domain_id: str
    user: str
    password: str
    ak: str
    sk: str
    projects: tuple[ProjectSpec, ...]

    def __post_init__(self) -> None:
        if not self.ak or not self.sk:
            raise ValueError(f"account {self.name}: ak and sk must both be non-empty")

    def project_names(self) -> dict[str, str]:
        """project_id → IAM project name: the region for the first project in each region,
        ``<region>_<n>`` (n = 2, 3, ...) for the further ones, in the account's order."""
        seen: dict[str, int] = {}
        names: dict[str, str] = {}
        for project in self.projects:
            n = seen[project.region] = seen.get(project.region, 0) + 1
            names[project.project_id] = project.region if n == 1 else f"{project.region}_{n}"
        return names


def region_of_name(name: str) -> str:
    """The region of an IAM project name: ``cn-north-4`` and ``cn-north-4_2`` → ``cn-north-4``."""
    return name.split("_", 1)[0]


def generate_projects(count: int, seed: int, *, account: int = 1) -> tuple[ProjectSpec, ...]:
    """``count`` projects of account ``account`` with ids drawn from ``seed``; regions cycle
    through REGIONS, starting ``account - 1`` places along (account 1: as the emulator always
    drew them)."""
    rng = random.Random(f"{seed}:projects" if account == 1 else f"{seed}:projects:{account}")
    return tuple(
        ProjectSpec(
            project_id=f"{rng.getrandbits(128):032x}",
            region=REGIONS[(i + account - 1) % len(REGIONS)],
        )
        for i in range(count)
    )


def _domain_id(seed: int, account: int) -> str:
    return f"{random.Random(f'{seed}:domain:{account}').getrandbits(128):032x}"


def demo_account(
    account: int, projects: tuple[ProjectSpec, ...], seed: int, **identity: str
) -> AccountSpec:
    """Account ``account`` (1-based) with its demo credentials; ``identity`` overrides any of
    name, domain, user, password, ak, sk (account 1 is how a single-account config is told)."""
    suffix = "" if account == 1 else f"-{account}"
    fields = {
        "name": f"account-{account}",
        "domain": DEMO_DOMAIN + suffix,
        "user": DEMO_USER + suffix,
        "password": DEMO_PASSWORD + suffix,
        "ak": DEMO_AK if account == 1 else f"{DEMO_AK[:16]}{account:04d}",
        "sk": DEMO_SK if account == 1 else f"{DEMO_SK[:34]}{account:06d}",
    }
    fields.update(identity)
    return AccountSpec(domain_id=_domain_id(seed, account), projects=projects, **fields)


def generate_accounts(count: int, projects_per_account: int, seed: int) -> tuple[AccountSpec, ...]:
    """``count`` accounts of ``projects_per_account`` projects each (``count`` 1: the demo
    account the emulator always had)."""
    if not 1 <= count <= MAX_ACCOUNTS:
        raise ValueError(f"accounts must be 1..{MAX_ACCOUNTS}, got {count}")
    return tuple(
        demo_account(k, generate_projects(projects_per_account, seed, account=k), seed)
        for k in range(1, count + 1)
    )


def check_tenancy(accounts: Iterable[AccountSpec]) -> None:
    """ValueError unless names, AKs, (domain, user) pairs and project ids are each unique."""
    seen: dict[str, set[str]] = {"name": set(), "ak": set(), "user": set(), "project": set()}
    for account in accounts:
        keys = {
            "name": [account.name],
            "ak": [account.ak],
            "user": [f"{account.domain}/{account.user}"],
            "project": [p.project_id for p in account.projects],
        }
        for kind, values in keys.items():
            for value in values:
                if value in seen[kind]:
                    shown = "" if kind == "ak" else f" {value!r}"  # an AK is a credential's name
                    raise ValueError(f"account {account.name}: its {kind}{shown} is not unique")
                seen[kind].add(value)


class Tenancy:
    """Who owns what, looked up: accounts by name, AK and IAM user; each project's owner."""

    def __init__(self, accounts: Iterable[AccountSpec]) -> None:
        self.accounts = {a.name: a for a in accounts}
        self._by_ak = {a.ak: a for a in self.accounts.values()}
        self._by_user = {(a.domain, a.user): a for a in self.accounts.values()}
        self._owner = {p.project_id: a for a in self.accounts.values() for p in a.projects}

    @property
    def keys(self) -> dict[str, str]:
        """AK → SK of every account, for the AK/SK verifier."""
        return {ak: a.sk for ak, a in self._by_ak.items()}

    def by_ak(self, ak: str) -> AccountSpec | None:
        return self._by_ak.get(ak)

    def by_user(self, domain: object, user: object) -> AccountSpec | None:
        """The account of an IAM user named ``user`` in the domain named ``domain``."""
        if not isinstance(domain, str) or not isinstance(user, str):
            return None
        return self._by_user.get((domain, user))

    def owner(self, project_id: str) -> AccountSpec | None:
        """The account owning a project; None if no account does."""
        return self._owner.get(project_id)
