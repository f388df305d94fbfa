"""The runbook's ``accounts:``: each named identity's credentials, read when the run starts.

An account names where its secrets are (environment variables, a credentials file), never the
secrets themselves, so a runbook, its journal and its report hold account names only. Only the
accounts the run's targets use are read: a CI shard given one account's secrets runs that
account's targets without the others' variables set. A variable an account names that is unset
or empty is an error naming the variable and the account, never a fall-through to the run's own
credentials: acting with an identity the user did not choose is worse than not acting.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.api.credentials import CredentialSettings
from engine.errors import UsageError
from engine.run.inputs import read_credentials_file
from engine.runbook import Runbook
from engine.runbook.model import Account


def used_accounts(runbook: Runbook) -> tuple[str, ...]:
    """The accounts the run's targets (and discoveries) name, in the runbook's order."""
    named = {t.account for t in runbook.targets} | {d.account for d in runbook.discoveries}
    return tuple(name for name in runbook.accounts if name in named)


def account_settings(runbook: Runbook, env: Mapping[str, str]) -> dict[str, CredentialSettings]:
    """The credentials of every account the run uses, by account name."""
    return {
        name: settings_of(runbook.accounts[name], env, Path(runbook.path).parent)
        for name in used_accounts(runbook)
    }


def settings_of(account: Account, env: Mapping[str, str], base: Path) -> CredentialSettings:
    """One account's credentials, from the variables or the file it names."""
    where = f"account '{account.name}' ({account.location})"
    if account.credentials_file is not None:
        path = Path(account.credentials_file).expanduser()
        settings = read_credentials_file(path if path.is_absolute() else base / path)
        return CredentialSettings(
            ak=settings.ak,
            sk=settings.sk,
            security_token=settings.security_token,
            token=settings.token,
            origin=f"{where}: {settings.origin}",
        )

    def read(name: str | None) -> str | None:
        if name is None:
            return None
        value = env.get(name)
        if not value:
            raise UsageError(
                f"{where} reads its credentials from {name}, which is not set; "
                f"export {name} (in CI, from a secret)"
            )
        return value

    return CredentialSettings(
        ak=read(account.ak_env),
        sk=read(account.sk_env),
        security_token=read(account.security_token_env),
        token=read(account.token_env),
        user=read(account.iam_user_env),
        password=read(account.iam_password_env),
        domain=read(account.iam_domain_env),
        origin=f"{where}: {', '.join(_names(account))}",
    )


def _names(account: Account) -> list[str]:
    return [
        name
        for name in (
            account.ak_env,
            account.sk_env,
            account.security_token_env,
            account.token_env,
            account.iam_user_env,
            account.iam_password_env,
            account.iam_domain_env,
        )
        if name is not None
    ]
