"""The registry is the single source of truth: it must be internally consistent."""

from __future__ import annotations

from senseimig_dagster import objects
from senseimig_dagster.objects import CODE_FIELDS, MODIFIED_AT, PRIMARY_KEY, REGISTRY, get


def test_names_endpoints_and_files_are_unique():
    assert len({o.name for o in REGISTRY}) == len(REGISTRY)
    assert len({o.endpoint for o in REGISTRY}) == len(REGISTRY)
    assert len({o.export_file for o in REGISTRY}) == len(REGISTRY)


def test_every_object_has_key_modification_time_and_unique_fields():
    for obj in REGISTRY:
        assert obj.fields[0].name == PRIMARY_KEY and obj.field(MODIFIED_AT).type == "datetime"
        assert len(set(obj.field_names)) == len(obj.fields), obj.name


def test_references_point_at_registered_objects_and_location_fields_exist():
    for obj in REGISTRY:
        for f in obj.fields:
            if f.references:
                assert f.references in objects.OBJECTS, f"{obj.name}.{f.name}"
                assert f.type == "uuid", f"{obj.name}.{f.name}"
        if obj.location_field:
            assert obj.location_field in obj.field_names


def test_load_order_puts_parents_first():
    order = [o.name for o in objects.load_order()]
    assert sorted(order) == sorted(o.name for o in REGISTRY)
    for obj in REGISTRY:
        assert all(order.index(p) < order.index(obj.name) for p in obj.parents), obj.name


def test_issue_scope_is_covered():
    required = {"organization", "location", "provider", "user", "patient", "patient_policy", "payer",
                "referral_source", "appointment", "treatment_plan", "treatment_plan_item", "clinical_note",
                "perio_reading", "ledger_transaction", "claim", "claim_status_event", "eligibility_check",
                "document", "communication"}
    assert required <= set(objects.OBJECTS)


def test_patient_identifiers_are_flagged_phi():
    patient = objects.get("patient")
    assert {"first_name", "last_name", "date_of_birth", "mobile_phone", "email", "ssn_last_four"} <= patient.phi_fields
    assert objects.get("clinical_note").field("body").phi


def test_only_allow_listed_fields_are_shown_and_never_a_phi_one() -> None:
    for obj in REGISTRY:
        for f in obj.fields:
            assert not (f.phi and f.shown), (obj.name, f.name)
            if f.type in ("str", "text", "date", "datetime", "json") and f.name not in CODE_FIELDS:
                assert not f.shown, (obj.name, f.name)  # free text, names, numbers, dates: masked whole
    # Free text and identifiers the review flagged as PHI
    for name, field in (("patient", "patient_number"), ("appointment", "cancel_reason"),
                        ("claim", "status_change_note"), ("claim_status_event", "note"),
                        ("ledger_transaction", "comment"), ("referral_source", "email"),
                        ("referral_source", "phone"), ("referral_source", "name")):
        assert get(name).field(field).phi, (name, field)
