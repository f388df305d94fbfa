"""accounts: in a runbook: references checked, credentials read per account by name only, rate
budgets per account and region, shards by account or region."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from engine.actions.catalog import CATALOG
from engine.api.auth import AkSkAuth, StaticTokenAuth
from engine.api.resilience import Resilience
from engine.api.transport import HttpRequest, HttpResponse
from engine.errors import RunbookInvalidError, UsageError
from engine.run.accounts import account_settings, used_accounts
from engine.run.inputs import sharded
from engine.run.shard import Shard
from engine.run.wiring import Connection, budget_scope, cloud_connections, wire
from engine.runbook import load_runbook

P1, P2, P3 = ("1" * 32, "2" * 32, "3" * 32)

TWO = f"""\
version: 1
name: two-accounts
rate_limit: 50/s
accounts:
  prod: {{ak_env: PROD_AK, sk_env: PROD_SK}}
  dr: {{token_env: DR_TOKEN, rate_limit: 10/s}}
targets:
  - {{account: prod, project_id: "{P1}", region: cn-north-4, name: orders}}
  - {{account: prod, project_id: "{P2}", region: ap-southeast-1, name: payments}}
  - {{account: dr, project_id: "{P3}", region: cn-north-4, name: orders-dr}}
  - {{account: dr, regions: [cn-north-4, ap-southeast-1]}}
steps:
  - id: select
    action: drs.select_jobs
    with: {{statuses: [INCRE_TRANSFER_FAILED]}}
"""


def _write(tmp_path: Path, text: str, name: str = "runbook.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_the_model_holds_accounts_targets_and_one_discovery_per_region(tmp_path: Path) -> None:
    runbook = load_runbook(_write(tmp_path, TWO), CATALOG)
    assert list(runbook.accounts) == ["prod", "dr"]
    assert runbook.accounts["dr"].rate_limit_per_s == 10.0
    assert runbook.accounts["prod"].ak_env == "PROD_AK"
    assert [(t.label, t.account) for t in runbook.targets] == [
        ("orders", "prod"),
        ("payments", "prod"),
        ("orders-dr", "dr"),
    ]
    assert [(d.account, d.region) for d in runbook.discoveries] == [
        ("dr", "cn-north-4"),
        ("dr", "ap-southeast-1"),
    ]
    assert used_accounts(runbook) == ("prod", "dr")


def test_validation_says_what_is_wrong_with_each_account_and_reference(tmp_path: Path) -> None:
    text = f"""\
version: 1
name: bad
accounts:
  prod: {{ak_env: PROD_AK}}
  dr: {{token_env: DR_TOKEN, credentials_file: dr.yaml}}
  idle: {{description: nothing}}
targets:
  - {{account: prd, project_id: "{P1}", region: cn-north-4}}
  - {{project_id: "{P2}", region: cn-north-4}}
  - {{account: dr, regions: [cn-north-4], project_id: "{P3}"}}
steps:
  - id: select
    action: drs.select_jobs
"""
    with pytest.raises(RunbookInvalidError) as caught:
        load_runbook(_write(tmp_path, text), CATALOG)
    found = {(d.location.line, d.message, d.hint) for d in caught.value.diagnostics}
    assert (4, "accounts.prod: ak_env, sk_env go together; sk_env is missing", None) in found
    messages = {(line, message) for line, message, _ in found}
    assert (5, "accounts.dr: names more than one credential source") in messages
    assert (6, "accounts.idle: names no credentials") in messages
    assert (8, "targets[0]: unknown account 'prd'", "did you mean 'prod'?") in found
    assert (9, "targets[1]: names no account, and the runbook has accounts:") in messages
    assert any(line == 10 and "discovery target" in message for line, message in messages)


def test_an_account_reads_only_the_variables_it_names_and_says_which_is_missing(
    tmp_path: Path,
) -> None:
    runbook = load_runbook(_write(tmp_path, TWO), CATALOG)
    env = {"PROD_AK": "AK1", "PROD_SK": "very-secret-sk", "HUAWEICLOUD_SDK_AK": "other"}
    with pytest.raises(UsageError) as caught:
        account_settings(runbook, env)
    message = str(caught.value)
    assert "account 'dr'" in message
    assert "DR_TOKEN, which is not set" in message
    assert "very-secret-sk" not in message
    settings = account_settings(runbook, {**env, "DR_TOKEN": "tok"})
    assert (settings["prod"].ak, settings["prod"].sk, settings["dr"].token) == (
        "AK1",
        "very-secret-sk",
        "tok",
    )
    assert "very-secret-sk" not in repr(settings)


def test_a_shard_reads_only_the_accounts_its_targets_use(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO)
    prod_only = sharded(load_runbook(path, CATALOG), "1/2", path, "account")
    assert {t.account for t in prod_only.targets} == {"prod"}
    assert not prod_only.discoveries
    # dr's DR_TOKEN is not set, and this shard does not need it
    assert list(account_settings(prod_only, {"PROD_AK": "a", "PROD_SK": "b"})) == ["prod"]


def test_an_account_credentials_file_is_relative_to_the_runbook(tmp_path: Path) -> None:
    text = TWO.replace("{token_env: DR_TOKEN, rate_limit: 10/s}", "{credentials_file: dr.yaml}")
    path = _write(tmp_path, text)
    secret = tmp_path / "dr.yaml"
    secret.write_text("token: dr-token\n", encoding="utf-8")
    os.chmod(secret, stat.S_IRUSR | stat.S_IWUSR)
    runbook = load_runbook(path, CATALOG)
    settings = account_settings(runbook, {"PROD_AK": "a", "PROD_SK": "b"})
    assert settings["dr"].token == "dr-token"
    assert "dr.yaml" in settings["dr"].origin


def test_each_target_gets_its_own_accounts_credentials_and_never_the_environments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runbook = load_runbook(_write(tmp_path, TWO), CATALOG)
    for name, value in {"PROD_AK": "AK1", "PROD_SK": "SK1", "DR_TOKEN": "tok"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", "env-ak")  # the run's own: not for these targets
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", "env-sk")
    connections = cloud_connections(
        runbook,
        endpoint="http://127.0.0.1:9",
        credentials=None,
        accounts=account_settings(runbook, os.environ),
        transport=_Recording(),
        resilience=Resilience(),
    )
    orders, payments, orders_dr = runbook.targets
    assert isinstance(connections[orders].auth, AkSkAuth)
    assert isinstance(connections[payments].auth, AkSkAuth)
    assert isinstance(connections[orders_dr].auth, StaticTokenAuth)
    assert "SK1" not in repr(connections[orders].auth)


# Each target's token names it (a token is a secret: a bare label would be redacted as one).
_TOKEN = "token-of-"


class _Recording:
    def __init__(self) -> None:
        self.at: list[tuple[str, float]] = []

    async def send(self, request: HttpRequest) -> HttpResponse:
        token = request.headers.get("X-Auth-Token", "")
        self.at.append((token.removeprefix(_TOKEN), asyncio.get_running_loop().time()))
        return HttpResponse(status=200, body=b'{"jobs": [], "count": 0}')


async def test_two_accounts_never_share_a_rate_budget_and_one_accounts_targets_do(
    tmp_path: Path,
) -> None:
    text = TWO.replace("rate_limit: 10/s", "rate_limit: 20/s").replace("50/s", "20/s")
    runbook = load_runbook(_write(tmp_path, text), CATALOG)
    orders, payments, orders_dr = runbook.targets
    same_region = orders.__class__(
        project_id="4" * 32,
        region="cn-north-4",
        endpoint=None,
        name="orders-2",
        location=orders.location,
        account="prod",
    )
    north, south = "https://drs.cn-north-4.example", "https://drs.ap-southeast-1.example"
    assert budget_scope(orders, north) == budget_scope(same_region, north) == f"prod {north}"
    assert budget_scope(orders_dr, north) == f"dr {north}"
    assert budget_scope(payments, south) == f"prod {south}"
    inner = _Recording()
    connections = {
        target: Connection(
            endpoint="http://127.0.0.1:9", auth=StaticTokenAuth(_TOKEN + target.label)
        )
        for target in (orders, same_region, orders_dr)
    }
    wired = wire(runbook, connections, inner, Resilience())
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def list_five(target: object) -> None:
        client = wired.clients[target]  # type: ignore[index]
        for _ in range(5):
            await client.list_jobs(db_use_type="migration")

    await asyncio.wait_for(
        asyncio.gather(*(list_five(t) for t in (orders, same_region, orders_dr))), timeout=10
    )
    last = {who: t - start for who, t in inner.at}
    # orders and orders-2 share prod/cn-north-4's 20/s: 10 requests take >= 9/19.6 s;
    # orders-dr has its own budget: its 5 are done in about 4/19.6 s
    both = sorted(t - start for who, t in inner.at if who in ("orders", "orders-2"))
    assert both[-1] >= 9 / 20 - 0.02, both
    assert len(both) == 10
    assert last["orders-dr"] < both[-1] - 0.1, (last, both)


def test_shards_by_account_or_region_take_whole_groups_once(tmp_path: Path) -> None:
    path = _write(tmp_path, TWO)
    runbook = load_runbook(path, CATALOG)
    for by, key in (("account", "account"), ("region", "region")):
        parts = [sharded(runbook, f"{i}/2", path, by) for i in (1, 2)]
        units = [
            [*((getattr(t, key), t.project_id) for t in p.targets)]
            + [(getattr(d, key), d.region + d.account) for d in p.discoveries]
            for p in parts
        ]
        assert sum(map(len, units)) == len(runbook.targets) + len(runbook.discoveries)
        groups = [{k for k, _ in u} for u in units]
        assert not groups[0] & groups[1], (by, groups)  # no group in both shards
    assert str(Shard.parse("2/2", "account")) == "2/2 by account"
    assert Shard.parse("2/2 by account") == Shard(index=2, count=2, by="account")
    with pytest.raises(UsageError, match="takes no target"):
        sharded(runbook, "3/3", path, "account")
