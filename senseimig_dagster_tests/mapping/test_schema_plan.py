"""The default schema plan: a custom table for every custom target of the registry, source columns and key on every
table, lookups to planned or standard tables, parents first, and inside Sales Professional's custom-table limit."""

from __future__ import annotations

import pytest

from senseimig_dagster.dataverse.schema import TIER_CUSTOM_TABLE_LIMITS
from senseimig_dagster.dataverse.schema_setup import attribute_body
from senseimig_dagster.mapping.schema_plan import default_plan
from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.dataverse_emulator import Catalog


def test_every_custom_target_of_the_registry_is_a_planned_custom_table() -> None:
    plan = default_plan()
    targets = {o.target.table for o in REGISTRY if o.target.table.startswith("smig_")}
    assert {t.logical_name for t in plan.custom_tables} == targets
    assert len(plan.custom_tables) == 8 <= TIER_CUSTOM_TABLE_LIMITS["professional"]


def test_every_table_has_the_source_columns_and_key_and_lookups_point_at_planned_or_standard_tables() -> None:
    plan = default_plan()
    standard = set(Catalog.load().tables)
    planned = {t.logical_name for t in plan.tables}
    for table in plan.tables:
        names = [c.logical_name for c in table.columns] + [lk.logical_name for lk in table.lookups]
        assert len(names) == len(set(names)), table.logical_name
        assert {"smig_sourcesystemid", "smig_sourcecreatedon", "smig_sourcemodifiedon"} <= set(names)
        assert all(n.startswith("smig_") for n in names)
        if table.logical_name != "annotation":
            assert [k.columns for k in table.keys] == [("smig_sourcesystemid",)]
        for lookup in table.lookups:
            assert lookup.target in planned | standard
        if not table.custom:
            assert table.logical_name in standard


def test_parents_come_before_children_so_lookup_targets_exist_first() -> None:
    order = [t.logical_name for t in default_plan().tables]
    for i, table in enumerate(default_plan().tables):
        for lookup in table.lookups:
            if lookup.target in order and lookup.target != table.logical_name:
                assert order.index(lookup.target) < i, (table.logical_name, lookup.target)


def test_design_columns_ssn_is_secured_and_carrier_flag_on_account() -> None:
    plan = default_plan()
    assert [(t, c.logical_name) for t, c in plan.secured_columns] == [("contact", "smig_ssnlastfour")]
    account = {c.logical_name for c in plan.table("account").columns}
    assert {"smig_isinsurancecarrier", "smig_payerid"} <= account
    ledger = plan.table("smig_billingledger")
    assert set(ledger.sources) == {"claim", "ledger_transaction"}
    entry = next(c for c in ledger.columns if c.logical_name == "smig_entrytype")
    assert [label for _, label in entry.options][:5] == ["Charge", "Payment", "Adjustment", "Insurance Payment",
                                                         "Write-off"]
    assert entry.options[0][0] == 727000000  # the publisher's option-value prefix x 10000


@pytest.mark.parametrize("prefix", ["smig", "abc"])
def test_the_prefix_names_everything(prefix: str) -> None:
    plan = default_plan(prefix)
    for table in plan.custom_tables:
        assert table.logical_name.startswith(f"{prefix}_") and table.schema_name.startswith(f"{prefix}_")
        assert table.primary_name is not None and table.primary_name.logical_name == f"{prefix}_name"


def test_attribute_bodies_follow_the_metadata_api_shapes() -> None:
    plan = default_plan()
    contact = plan.table("contact")
    kinds = {c.kind: attribute_body(c) for c in contact.columns}
    assert kinds["String"]["@odata.type"] == "Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert kinds["String"]["FormatName"] == {"Value": "Text"}
    assert kinds["Picklist"]["OptionSet"]["OptionSetType"] == "Picklist"
    assert kinds["DateOnly"]["@odata.type"] == "Microsoft.Dynamics.CRM.DateTimeAttributeMetadata"
    assert kinds["DateOnly"]["Format"] == "DateOnly"
