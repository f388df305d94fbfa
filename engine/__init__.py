"""drs-runbook: declarative YAML runbooks for Huawei Cloud DRS fleets."""

__version__ = "0.1.0"
