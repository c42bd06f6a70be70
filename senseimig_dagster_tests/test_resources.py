"""Resources as a real deployment configures them: a secret set in the environment is taken as an EnvVar, shown by
name, and resolved when the resource is initialized (as in a run)."""

from __future__ import annotations

import pytest
from dagster import EnvVar

from senseimig_dagster.resources import SANDBOX_CLIENT_SECRET, build_resources


def test_with_nothing_set_every_resource_points_at_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_SECRET", "SENSEI_API_KEY", "SENSEIMIG_AUDIT_KEY", "DATAVERSE_URL"):
        monkeypatch.delenv(name, raising=False)
    resources = build_resources("data/x.duckdb")
    assert resources["dataverse"].client_secret == SANDBOX_CLIENT_SECRET
    assert resources["graph"].client_secret == SANDBOX_CLIENT_SECRET
    assert resources["audit"].key is None
    assert {"sensei", "store", "mapping", "staging_rules", "dataverse", "sample_dataverse", "graph",
            "audit"} <= resources.keys()


@pytest.mark.parametrize("key", ["dataverse", "graph"])
def test_a_real_client_secret_is_an_env_var_resolved_at_initialization(monkeypatch: pytest.MonkeyPatch,
                                                                        key: str) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", "a-real-secret")
    resource = build_resources("data/x.duckdb")[key]
    assert isinstance(resource.client_secret, EnvVar)
    assert "a-real-secret" not in repr(resource)
    assert resource.process_config_and_initialize().client_secret == "a-real-secret"
