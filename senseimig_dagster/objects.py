"""The object registry: every Sensei object described once.

Raw assets, their dependencies, the simulator's routes, the CSV export's files and the generator's tables are all
derived from ``REGISTRY``. Adding an object is one entry here (plus, in later layers, its transform).

Field names and types follow ``shared/reference/sensei.md`` §7. ``inferred=True`` marks a field the reference tags
[INF]/[GEN] (not seen in Sensei's documentation) or that this project adds to carry real-world mess (free-text
providers); ``phi=True`` marks values that must never reach logs, exceptions or Dagster metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["uuid", "str", "text", "int", "decimal", "bool", "date", "datetime", "json"]

# Every Sensei table carries these (reference §7 conventions); updated_at drives modified_since and partitions.
PRIMARY_KEY = "id"
MODIFIED_AT = "updated_at"


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    phi: bool = False
    inferred: bool = False
    references: str | None = None  # registry name of the object this id points at


@dataclass(frozen=True)
class DataverseTarget:
    table: str  # logical name; custom tables carry the publisher prefix (DESIGN §4)
    alternate_key: str = "smig_sourcesystemid"
    note: str = ""


@dataclass(frozen=True)
class SenseiObject:
    name: str  # singular snake_case; asset keys are raw/<name>
    endpoint: str  # REST collection: GET /v1/<endpoint>
    fields: tuple[Field, ...]
    target: DataverseTarget
    description: str
    location_field: str | None = None  # column that scopes a row to a practice location, for per-location counts
    has_content: bool = False  # binary content served at /v1/<endpoint>/<id>/content

    @property
    def export_file(self) -> str:
        return f"{self.endpoint}.csv"

    @property
    def parents(self) -> tuple[str, ...]:
        """Objects that must be loaded first, in field order, without repeats or self-references."""
        seen: list[str] = []
        for f in self.fields:
            if f.references and f.references != self.name and f.references not in seen:
                seen.append(f.references)
        return tuple(seen)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    @property
    def phi_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if f.phi)


def _f(name: str, type_: FieldType = "str", *, phi: bool = False, inferred: bool = False,
       ref: str | None = None) -> Field:
    return Field(name, type_, phi=phi, inferred=inferred, references=ref)


def _audit() -> tuple[Field, ...]:
    return (_f("created_at", "datetime", inferred=True), _f(MODIFIED_AT, "datetime", inferred=True),
            _f("is_deleted", "bool", inferred=True))


def _obj(name: str, endpoint: str, target: DataverseTarget, description: str, *fields: Field,
         location_field: str | None = None, has_content: bool = False) -> SenseiObject:
    return SenseiObject(name=name, endpoint=endpoint, fields=(_f(PRIMARY_KEY, "uuid"), *fields, *_audit()),
                        target=target, description=description, location_field=location_field,
                        has_content=has_content)


_ACCOUNT = "account"
_CONTACT = "contact"

REGISTRY: tuple[SenseiObject, ...] = (
    _obj("organization", "organizations", DataverseTarget(_ACCOUNT, note="DSO: parent account of its practices"),
         "The dental group (DSO) that owns the locations.",
         _f("name"), _f("tax_id", inferred=True)),
    _obj("location", "locations", DataverseTarget(_ACCOUNT, note="practice; parentaccountid -> DSO"),
         "A practice location.",
         _f("organization_id", "uuid", ref="organization"), _f("name"), _f("npi"),
         _f("tax_id", inferred=True), _f("address_line1", inferred=True), _f("city", inferred=True),
         _f("state", inferred=True), _f("postal_code", inferred=True), _f("phone", inferred=True),
         _f("time_zone", inferred=True), _f("is_active", "bool", inferred=True),
         location_field=PRIMARY_KEY),
    _obj("user", "users", DataverseTarget("systemuser", alternate_key="internalemailaddress",
                                          note="matched by e-mail; never created"),
         "A Sensei staff login; becomes the owner of migrated records.",
         _f("default_location_id", "uuid", inferred=True, ref="location"), _f("first_name", inferred=True),
         _f("last_name", inferred=True), _f("email", inferred=True), _f("role", inferred=True),
         _f("is_active", "bool", inferred=True), _f("last_login_at", "datetime", inferred=True),
         location_field="default_location_id"),
    _obj("provider", "providers", DataverseTarget(_CONTACT, note="smig_contacttype = Provider"),
         "A team member with a provider role (Doctor, Hygienist, Assistant).",
         _f("default_location_id", "uuid", ref="location"), _f("first_name"), _f("last_name"), _f("role"),
         _f("npi"), _f("taxonomy_code"), _f("state_licenses", "json"), _f("dea_number"), _f("color"),
         _f("abbreviation", inferred=True), _f("email", inferred=True), _f("is_active", "bool", inferred=True),
         location_field="default_location_id"),
    _obj("payer", "payers", DataverseTarget(_ACCOUNT, note="smig_isinsurancecarrier = true"),
         "An insurance carrier.",
         _f("name"), _f("payer_code"), _f("type"), _f("claims_address", inferred=True), _f("phone", inferred=True),
         _f("eligibility_enabled", "bool")),
    _obj("insurance_plan", "insurance_plans", DataverseTarget(_CONTACT, note="columns on the patient contact"),
         "An employer/group plan offered by a payer.",
         _f("payer_id", "uuid", ref="payer"), _f("plan_name"), _f("group_number"), _f("employer_name", inferred=True),
         _f("annual_maximum", "decimal", inferred=True), _f("deductible_individual", "decimal", inferred=True),
         _f("deductible_family", "decimal", inferred=True), _f("benefit_year_start_month", "int", inferred=True),
         _f("coverage_pct", "json", inferred=True), _f("ortho_charge_frequency"), _f("cot_claims_required", "bool")),
    _obj("referral_source", "referral_sources",
         DataverseTarget(_CONTACT, note="doctor sources -> contact (Referral); marketing -> picklist"),
         "Where patients come from: a referring doctor, a patient, or marketing.",
         _f("name"), _f("type", inferred=True), _f("npi"), _f("phone"), _f("email"), _f("preferences", "text"),
         _f("is_active", "bool")),
    _obj("patient", "patients", DataverseTarget(_CONTACT, note="parentcustomerid -> practice account"),
         "A patient.",
         _f("patient_number"), _f("primary_location_id", "uuid", inferred=True, ref="location"), _f("status"),
         _f("first_name", phi=True), _f("last_name", phi=True), _f("nickname", phi=True), _f("title"),
         _f("date_of_birth", "date", phi=True), _f("gender"), _f("ethnicity", phi=True),
         _f("mobile_phone", phi=True), _f("home_phone", phi=True), _f("work_phone", phi=True),
         _f("preferred_phone"), _f("sms_opt_out", "bool"), _f("preferred_contact_method"),
         _f("email", phi=True, inferred=True), _f("address_line1", phi=True), _f("address_line2", phi=True),
         _f("city", phi=True), _f("state"), _f("postal_code", phi=True),
         _f("ssn_last_four", phi=True, inferred=True),
         _f("preferred_dentist_id", "uuid", inferred=True, ref="provider"),
         _f("preferred_hygienist_id", "uuid", inferred=True, ref="provider"),
         _f("ortho_treatment_status"), _f("model_box_number"), _f("medical_alerts", "json", phi=True),
         _f("first_visit_date", "date", inferred=True), _f("last_visit_date", "date", inferred=True),
         location_field="primary_location_id"),
    _obj("patient_referral", "patient_referrals", DataverseTarget(_CONTACT, note="smig_referralsource on the patient"),
         "A patient's referral; the newest is the Active Referral.",
         _f("patient_id", "uuid", ref="patient"), _f("referral_source_id", "uuid", ref="referral_source"),
         _f("referred_on", "date", inferred=True)),
    _obj("patient_policy", "patient_policies",
         DataverseTarget(_CONTACT, note="subscriber, group, relationship, carrier lookup on the patient"),
         "A patient's insurance policy (Primary, Secondary, Other).",
         _f("patient_id", "uuid", ref="patient"), _f("insurance_plan_id", "uuid", ref="insurance_plan"),
         _f("coverage_order"), _f("policyholder_id", "uuid", ref="patient"), _f("relationship_to_policyholder"),
         _f("subscriber_id", phi=True), _f("effective_date", "date"), _f("termination_date", "date", inferred=True),
         _f("status"), _f("assignment_of_benefits", "bool", inferred=True), _f("remaining_benefit", "decimal"),
         _f("remaining_deductible", "decimal")),
    _obj("appointment", "appointments", DataverseTarget("smig_appointment"),
         "A scheduled visit.",
         _f("location_id", "uuid", ref="location"), _f("patient_id", "uuid", ref="patient"),
         _f("provider_id", "uuid", ref="provider"),
         _f("provider_name", inferred=True),  # legacy rows name the provider as free text instead of an id
         _f("operatory", inferred=True), _f("appointment_type"), _f("start_at", "datetime", inferred=True),
         _f("duration_min", "int", inferred=True), _f("status"), _f("cdt_codes", "json", inferred=True),
         _f("confirmed_at", "datetime", inferred=True), _f("completed_at", "datetime", inferred=True),
         _f("cancel_reason", inferred=True), _f("cancelled_short_notice", "bool", inferred=True),
         _f("needs_follow_up", "bool"), _f("notes", "text", phi=True),
         location_field="location_id"),
    _obj("treatment_plan", "treatment_plans", DataverseTarget("smig_treatmentplan"),
         "A treatment plan.",
         _f("patient_id", "uuid", ref="patient"), _f("provider_id", "uuid", ref="provider"),
         _f("location_id", "uuid", inferred=True, ref="location"), _f("name"), _f("status"),
         _f("presented_at", "datetime", inferred=True), _f("accepted_at", "datetime", inferred=True),
         _f("completed_date", "date", inferred=True), _f("signed", "bool"), _f("total_fee", "decimal"),
         _f("est_insurance", "decimal"), _f("est_patient", "decimal"),
         location_field="location_id"),
    _obj("treatment_plan_item", "treatment_plan_items", DataverseTarget("smig_plannedprocedure"),
         "A procedure line of a treatment plan (group/phase flattened onto the line).",
         _f("treatment_plan_id", "uuid", ref="treatment_plan"), _f("patient_id", "uuid", ref="patient"),
         _f("phase", inferred=True), _f("sequence", "int"), _f("code"), _f("tooth"), _f("surfaces"),
         _f("item_status", inferred=True), _f("fee", "decimal"), _f("est_insurance", "decimal"),
         _f("est_patient", "decimal"), _f("service_date", "date")),
    _obj("clinical_note", "clinical_notes", DataverseTarget("smig_clinicalnote"),
         "A clinical, non-clinical or notification note.",
         _f("patient_id", "uuid", ref="patient"), _f("appointment_id", "uuid", ref="appointment"),
         _f("provider_id", "uuid", ref="provider"), _f("provider_name", inferred=True), _f("note_type"),
         _f("category"), _f("body", "text", phi=True), _f("is_alert", "bool"),
         _f("signed_at", "datetime"), _f("signed_by", "uuid", ref="provider"), _f("archived", "bool")),
    _obj("perio_reading", "perio_readings", DataverseTarget("smig_perioreading"),
         "One site of a periodontal exam (exam fields flattened onto each reading).",
         _f("exam_id", "uuid", inferred=True), _f("patient_id", "uuid", ref="patient"),
         _f("provider_id", "uuid", ref="provider"), _f("exam_date", "date", inferred=True), _f("tooth", "int"),
         _f("site"), _f("probing_depth_mm", "int"), _f("recession_mm", "int"), _f("bleeding", "bool"),
         _f("suppuration", "bool"), _f("plaque", "bool"), _f("mobility", "int"), _f("furcation", "int")),
    _obj("claim", "claims", DataverseTarget("smig_billingledger", note="claim status on the ledger row"),
         "An insurance claim.",
         _f("claim_number"), _f("patient_id", "uuid", ref="patient"),
         _f("patient_policy_id", "uuid", ref="patient_policy"), _f("provider_id", "uuid", ref="provider"),
         _f("location_id", "uuid", ref="location"), _f("claim_type"), _f("status"), _f("status_change_note", "text"),
         _f("replaces_claim_id", "uuid", ref="claim"), _f("coverage_order"), _f("billed_amount", "decimal"),
         _f("paid_amount", "decimal"), _f("write_off_amount", "decimal"), _f("submitted_at", "datetime"),
         _f("paid_at", "datetime", inferred=True), _f("preauth_reference"), _f("x12_277_category", inferred=True),
         location_field="location_id"),
    _obj("claim_status_event", "claim_status_events", DataverseTarget("smig_claimstatusevent"),
         "One status change of a claim (the claim's history).",
         _f("claim_id", "uuid", ref="claim"), _f("status"), _f("occurred_at", "datetime", inferred=True),
         _f("x12_277_category", inferred=True), _f("note", "text", inferred=True),
         _f("changed_by", "uuid", inferred=True, ref="user")),
    _obj("ledger_transaction", "ledger_transactions", DataverseTarget("smig_billingledger"),
         "An append-only ledger entry; corrections are extra entries.",
         _f("patient_id", "uuid", ref="patient"), _f("guarantor_id", "uuid", inferred=True, ref="patient"),
         _f("location_id", "uuid", ref="location"), _f("provider_id", "uuid", ref="provider"),
         _f("provider_name", inferred=True), _f("txn_type"), _f("payment_type"), _f("amount", "decimal"),
         _f("service_date", "date"), _f("transaction_date", "date"), _f("procedure_code"),
         _f("claim_id", "uuid", ref="claim"), _f("corrects_transaction_id", "uuid", ref="ledger_transaction"),
         _f("reference"), _f("comment", "text"),
         location_field="location_id"),
    _obj("eligibility_check", "eligibility_checks", DataverseTarget("smig_insuranceeligibility"),
         "A real-time eligibility response for a policy.",
         _f("patient_policy_id", "uuid", ref="patient_policy"), _f("patient_id", "uuid", inferred=True, ref="patient"),
         _f("payer_id", "uuid", inferred=True, ref="payer"), _f("checked_at", "datetime"), _f("result", inferred=True),
         _f("coverage_pct", "json", inferred=True), _f("annual_max_remaining", "decimal", inferred=True),
         _f("deductible_met", "decimal", inferred=True), _f("waiting_period_months", "int", inferred=True),
         _f("payer_response_code", inferred=True), _f("document_id", "uuid", ref="document")),
    _obj("document", "documents", DataverseTarget("annotation", note="note on the contact; large files to SharePoint"),
         "A file in Patient Files (forms, PDFs, images, eligibility HTML).",
         _f("patient_id", "uuid", ref="patient"), _f("claim_id", "uuid", ref="claim"), _f("category", inferred=True),
         _f("file_name", phi=True), _f("mime_type"), _f("size_bytes", "int", inferred=True),
         _f("sha256", inferred=True),
         has_content=True),
    _obj("communication", "communications", DataverseTarget("phonecall", note="phonecall / email by channel"),
         "A call, e-mail or text with a patient.",
         _f("patient_id", "uuid", ref="patient"), _f("user_id", "uuid", ref="user"), _f("channel", inferred=True),
         _f("direction", inferred=True), _f("subject", "text", phi=True, inferred=True),
         _f("body", "text", phi=True, inferred=True), _f("started_at", "datetime", inferred=True),
         _f("ended_at", "datetime", inferred=True), _f("status", inferred=True)),
)

OBJECTS: dict[str, SenseiObject] = {o.name: o for o in REGISTRY}
BY_ENDPOINT: dict[str, SenseiObject] = {o.endpoint: o for o in REGISTRY}


def get(name: str) -> SenseiObject:
    try:
        return OBJECTS[name]
    except KeyError:
        raise KeyError(f"unknown Sensei object {name!r}; known: {', '.join(OBJECTS)}") from None


def load_order() -> list[SenseiObject]:
    """Objects sorted parents-first (registry order breaks ties); raises on a reference cycle."""
    done: list[str] = []
    pending = list(REGISTRY)
    while pending:
        ready = [o for o in pending if all(p in done for p in o.parents)]
        if not ready:
            raise ValueError(f"reference cycle among: {', '.join(o.name for o in pending)}")
        for o in ready:
            done.append(o.name)
            pending.remove(o)
    return [OBJECTS[n] for n in done]
