"""The object registry: every Sensei object described once, with everything particular to it.

Raw assets, staging rules, the Dataverse schema plan, the writers and their order, the simulator's routes, the CSV
export's files and the generator's tables are all derived from ``REGISTRY``; generic code reads the declarations
below and never branches on an object's name. Adding an object is one entry here plus its part of the field map
(``mapping/default_map.yaml``: how each field is written, which a person may change).

Field names and types follow Sensei Cloud's data model. ``inferred=True`` marks a field not seen in Sensei's
documentation, or one this project adds to carry real-world mess (free-text providers); ``phi=True`` marks values
that must never reach logs, exceptions or Dagster metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FieldType = Literal["uuid", "str", "text", "int", "decimal", "bool", "date", "datetime", "json"]

# Every Sensei table carries these; updated_at drives modified_since and the partitions.
PRIMARY_KEY = "id"
MODIFIED_AT = "updated_at"

# The allow-list of values that may be shown (Dagster metadata, masked samples, the sample diff's view): ids, counts,
# amounts and flags, and the code-like fields named below, unless flagged PHI. Everything else - names, contacts,
# free text, record and claim numbers, dates (HIPAA counts service dates as identifiers), and any field added later
# without being named here - is masked whole.
MASK = "•••"  # what a masked value shows: nothing of it, not even its first character or length
SHOWN_TYPES = frozenset({"uuid", "int", "decimal", "bool"})
CODE_FIELDS = frozenset({
    "code", "procedure_code", "cdt_codes", "tooth", "surfaces", "site", "txn_type", "payment_type", "status",
    "item_status", "claim_type", "coverage_order", "role", "type", "note_type", "category", "gender", "time_zone",
    "payer_code", "taxonomy_code", "npi", "x12_277_category", "result", "channel", "direction", "mime_type",
})


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    phi: bool = False
    inferred: bool = False
    references: str | None = None  # registry name of the object this id points at
    required: bool = False  # a reference the row means nothing without: an orphan quarantines the row
    sign_by: str | None = None  # an amount whose sign follows this field's entry type (debits >= 0, credits <= 0)
    tooth_areas: bool = False  # a tooth field that may also name an area (UR, LL, ...) instead of a tooth number

    @property
    def shown(self) -> bool:
        """Whether its values may be shown outside the stores (the allow-list above); masked whole otherwise."""
        return not self.phi and (self.type in SHOWN_TYPES or self.name in CODE_FIELDS)


@dataclass(frozen=True)
class ExtraColumn:
    """A column the migration adds to its target table besides the object's own fields: ``<prefix>_<Name>``, or
    with ``lookup`` a lookup to that table (its SchemaName is also its navigation property)."""

    name: str
    kind: str = "String"  # a Dataverse column kind (dataverse/schema.py ColumnKind)
    max_length: int | None = None
    options: tuple[str, ...] = ()  # Picklist labels, valued in order from the publisher's option prefix
    display: str | None = None
    secured: bool = False  # column security: readable only through a field security profile
    lookup: str | None = None


@dataclass(frozen=True)
class DataverseTarget:
    table: str  # logical name; custom tables carry the publisher prefix
    alternate_key: str | None = "smig_sourcesystemid"  # None: the table can't carry the source-id key
    note: str = ""
    merged: bool = False  # no rows of its own: its values are columns of another object's row (the map's merge)
    also: tuple[str, ...] = ()  # further tables the map routes its rows to
    columns: tuple[ExtraColumn, ...] = ()  # what it adds to its table (standard tables: beyond their own columns)


@dataclass(frozen=True)
class DisplayName:
    """The readable primary name of a custom table's row: ``<label> <date> <code>``; never a name or free text."""

    label: str
    date: str
    code: str | None = None


@dataclass(frozen=True)
class FreeTextProvider:
    """Legacy rows name their provider as text (``text``) with the id (``id``) empty; staging resolves it. An object
    without a location of its own takes the location of the row ``location_via`` points at; ``signer`` (id field,
    time field): a signed row without a signer is signed by the resolved provider."""

    text: str = "provider_name"
    id: str = "provider_id"
    location_via: str | None = None
    signer: tuple[str, str] | None = None


@dataclass(frozen=True)
class TimeOrder:
    """Rows created in Dataverse in the order of ``by`` within each row ``within`` points at (a claim's status trail
    must read in time order)."""

    by: str
    within: str


@dataclass(frozen=True)
class ChartDuplicates:
    """The same chart entry saved twice on one patient, collapsed in staging (``staging/chart_duplicates.py``):
    ``rule`` names it in the log; rows equal on every field of ``same`` are one entry (no ``same``: the note rule,
    body text compared within a visit)."""

    rule: str
    same: tuple[str, ...] = ()


@dataclass(frozen=True)
class Closing:
    """How a record's Dataverse state (``statecode``/``statuscode``, sent after its columns) follows the Sensei field
    ``field``: on a custom table the values in ``closed`` make it Inactive; an activity completes, or is cancelled
    when the value is in ``failed``."""

    field: str = "status"
    closed: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True)
class SenseiObject:
    name: str  # singular snake_case; asset keys are raw/<name>
    endpoint: str  # REST collection: GET /v1/<endpoint>
    fields: tuple[Field, ...]
    target: DataverseTarget
    description: str
    location_field: str | None = None  # column that scopes a row to a practice location, for per-location counts
    has_content: bool = False  # binary content served at /v1/<endpoint>/<id>/content: written with its body
    display_name: DisplayName | None = None
    free_text_provider: FreeTextProvider | None = None
    time_order: TimeOrder | None = None
    chart_duplicates: ChartDuplicates | None = None
    closing: Closing | None = None

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

    @property
    def shown_fields(self) -> frozenset[str]:
        """The fields whose values may be shown (``Field.shown``); every other value is masked whole."""
        return frozenset(f.name for f in self.fields if f.shown)

    def references_to(self, name: str) -> tuple[str, ...]:
        """This object's fields that point at object ``name``."""
        return tuple(f.name for f in self.fields if f.references == name)


def _f(name: str, type_: FieldType = "str", *, phi: bool = False, inferred: bool = False, ref: str | None = None,
       required: bool = False, sign_by: str | None = None, tooth_areas: bool = False) -> Field:
    return Field(name, type_, phi=phi, inferred=inferred, references=ref, required=required, sign_by=sign_by,
                 tooth_areas=tooth_areas)


def _audit() -> tuple[Field, ...]:
    return (_f("created_at", "datetime", inferred=True), _f(MODIFIED_AT, "datetime", inferred=True),
            _f("is_deleted", "bool", inferred=True))


def _obj(name: str, endpoint: str, target: DataverseTarget, description: str, *fields: Field,
         **declared: object) -> SenseiObject:
    return SenseiObject(name=name, endpoint=endpoint, fields=(_f(PRIMARY_KEY, "uuid"), *fields, *_audit()),
                        target=target, description=description, **declared)


# Columns several objects add to contact: which kind of person a contact is.
_CONTACT_TYPE = ExtraColumn("contact_type", "Picklist", options=("Patient", "Provider", "Referral"))
_POLICY_COLUMNS = tuple(column for order in ("primary", "secondary") for column in (
    ExtraColumn(f"{order}_subscriber_id", max_length=50), ExtraColumn(f"{order}_group_number", max_length=50),
    ExtraColumn(f"{order}_plan_name", max_length=200),
    ExtraColumn(f"{order}_relationship", "Picklist", options=("Self", "Spouse", "Dependent", "Other")),
    ExtraColumn(f"{order}_effective_date", "DateOnly"), ExtraColumn(f"{order}_carrier_id", lookup="account"),
    ExtraColumn(f"{order}_policyholder_id", lookup="contact")))
# Appointment statuses that end a visit: the custom table's Inactive state. Future and scheduled visits stay Active.
_VISIT_ENDED = ("Completed", "Cancelled", "Canceled", "NoShow", "No-Show", "Rescheduled")

_ACCOUNT = "account"
_CONTACT = "contact"

REGISTRY: tuple[SenseiObject, ...] = (
    _obj("organization", "organizations", DataverseTarget(_ACCOUNT, note="DSO: parent account of its practices"),
         "The dental group (DSO) that owns the locations.",
         _f("name"), _f("tax_id", inferred=True)),
    _obj("location", "locations", DataverseTarget(_ACCOUNT, note="practice; parentaccountid -> DSO"),
         "A practice location.",
         _f("organization_id", "uuid", ref="organization", required=True), _f("name"), _f("npi"),
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
    _obj("provider", "providers", DataverseTarget(_CONTACT, note="smig_contacttype = Provider", columns=(
        _CONTACT_TYPE,
        ExtraColumn("provider_role", "Picklist",
                    options=("Dentist", "Hygienist", "Assistant", "Specialist", "Referral")),
        ExtraColumn("npi", max_length=10, display="NPI"),
        ExtraColumn("provider_status", "Picklist", options=("Active", "Inactive")))),
         "A team member with a provider role (Doctor, Hygienist, Assistant).",
         _f("default_location_id", "uuid", ref="location"), _f("first_name"), _f("last_name"), _f("role"),
         _f("npi"), _f("taxonomy_code"), _f("state_licenses", "json"), _f("dea_number"), _f("color"),
         _f("abbreviation", inferred=True), _f("email", inferred=True), _f("is_active", "bool", inferred=True),
         location_field="default_location_id"),
    _obj("payer", "payers", DataverseTarget(_ACCOUNT, note="smig_isinsurancecarrier = true", columns=(
        ExtraColumn("is_insurance_carrier", "Boolean"), ExtraColumn("payer_id", max_length=50),
        ExtraColumn("npi", max_length=10, display="NPI"))),
         "An insurance carrier.",
         _f("name"), _f("payer_code"), _f("type"), _f("claims_address", inferred=True), _f("phone", inferred=True),
         _f("eligibility_enabled", "bool")),
    _obj("insurance_plan", "insurance_plans", DataverseTarget(_CONTACT, merged=True, note="columns on the patient contact"),
         "An employer/group plan offered by a payer.",
         _f("payer_id", "uuid", ref="payer"), _f("plan_name"), _f("group_number"),
         _f("employer_name", phi=True, inferred=True),
         _f("annual_maximum", "decimal", inferred=True), _f("deductible_individual", "decimal", inferred=True),
         _f("deductible_family", "decimal", inferred=True), _f("benefit_year_start_month", "int", inferred=True),
         _f("coverage_pct", "json", inferred=True), _f("ortho_charge_frequency"), _f("cot_claims_required", "bool")),
    _obj("referral_source", "referral_sources",
         DataverseTarget(_CONTACT, note="doctor sources -> contact (Referral); marketing -> picklist", columns=(
             _CONTACT_TYPE,
             ExtraColumn("referral_source", "Picklist", options=(
                 "Patient", "Doctor", "Website", "Search", "Social Media", "Insurance", "Walk-in", "Event", "Marketing",
                 "Other")))),
         "Where patients come from: a referring doctor, a patient, or marketing.",
         _f("name", phi=True), _f("type", inferred=True), _f("npi"), _f("phone", phi=True), _f("email", phi=True),
         _f("preferences", "text", phi=True), _f("is_active", "bool")),
    _obj("patient", "patients", DataverseTarget(_CONTACT, note="parentcustomerid -> practice account", columns=(
        _CONTACT_TYPE, ExtraColumn("ssn_last_four", max_length=4, display="SSN Last Four", secured=True),
        ExtraColumn("patient_number", max_length=50), ExtraColumn("ethnicity", max_length=100),
        ExtraColumn("sms_opt_out", "Boolean", display="SMS Opt Out"),
        ExtraColumn("ortho_treatment_status", max_length=100), ExtraColumn("model_box_number", max_length=50),
        ExtraColumn("preferred_dentist_id", lookup="contact"), ExtraColumn("preferred_hygienist_id", lookup="contact"))),
         "A patient.",
         _f("patient_number", phi=True), _f("primary_location_id", "uuid", inferred=True, ref="location", required=True),
         _f("status"),
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
    _obj("patient_referral", "patient_referrals", DataverseTarget(_CONTACT, merged=True, note="smig_referralsource on the patient"),
         "A patient's referral; the newest is the Active Referral.",
         _f("patient_id", "uuid", ref="patient", required=True), _f("referral_source_id", "uuid", ref="referral_source"),
         _f("referred_on", "date", inferred=True)),
    _obj("patient_policy", "patient_policies",
         DataverseTarget(_CONTACT, merged=True, note="subscriber, group, relationship, carrier lookup on the patient",
                         columns=_POLICY_COLUMNS),
         "A patient's insurance policy (Primary, Secondary, Other).",
         _f("patient_id", "uuid", ref="patient", required=True), _f("insurance_plan_id", "uuid", ref="insurance_plan"),
         _f("coverage_order"), _f("policyholder_id", "uuid", ref="patient"), _f("relationship_to_policyholder"),
         _f("subscriber_id", phi=True), _f("effective_date", "date"), _f("termination_date", "date", inferred=True),
         _f("status"), _f("assignment_of_benefits", "bool", inferred=True), _f("remaining_benefit", "decimal"),
         _f("remaining_deductible", "decimal")),
    _obj("appointment", "appointments", DataverseTarget("smig_appointment"),
         "A scheduled visit.",
         _f("location_id", "uuid", ref="location"), _f("patient_id", "uuid", ref="patient", required=True),
         _f("provider_id", "uuid", ref="provider"),
         _f("provider_name", inferred=True),  # legacy rows name the provider as free text instead of an id
         _f("operatory", inferred=True), _f("appointment_type"), _f("start_at", "datetime", inferred=True),
         _f("duration_min", "int", inferred=True), _f("status"), _f("cdt_codes", "json", inferred=True),
         _f("confirmed_at", "datetime", inferred=True), _f("completed_at", "datetime", inferred=True),
         _f("cancel_reason", phi=True, inferred=True), _f("cancelled_short_notice", "bool", inferred=True),
         _f("needs_follow_up", "bool"), _f("notes", "text", phi=True),
         location_field="location_id", display_name=DisplayName("Appointment", "start_at", "cdt_codes"),
         free_text_provider=FreeTextProvider(), closing=Closing(closed=_VISIT_ENDED)),
    _obj("treatment_plan", "treatment_plans", DataverseTarget("smig_treatmentplan"),
         "A treatment plan.",
         _f("patient_id", "uuid", ref="patient", required=True), _f("provider_id", "uuid", ref="provider"),
         _f("location_id", "uuid", inferred=True, ref="location"), _f("name", phi=True), _f("status"),
         _f("presented_at", "datetime", inferred=True), _f("accepted_at", "datetime", inferred=True),
         _f("completed_date", "date", inferred=True), _f("signed", "bool"), _f("total_fee", "decimal"),
         _f("est_insurance", "decimal"), _f("est_patient", "decimal"),
         location_field="location_id", display_name=DisplayName("Treatment plan", "presented_at", "status")),
    _obj("treatment_plan_item", "treatment_plan_items", DataverseTarget("smig_plannedprocedure"),
         "A procedure line of a treatment plan (group/phase flattened onto the line).",
         _f("treatment_plan_id", "uuid", ref="treatment_plan", required=True),
         _f("patient_id", "uuid", ref="patient", required=True),
         _f("phase", inferred=True), _f("sequence", "int"), _f("code"), _f("tooth", tooth_areas=True), _f("surfaces"),
         _f("item_status", inferred=True), _f("fee", "decimal"), _f("est_insurance", "decimal"),
         _f("est_patient", "decimal"), _f("service_date", "date"),
         display_name=DisplayName("Planned procedure", "service_date", "code"),
         chart_duplicates=ChartDuplicates("identical_plan_item", same=(
             "patient_id", "treatment_plan_id", "sequence", "code", "tooth", "surfaces", "fee", "service_date"))),
    _obj("clinical_note", "clinical_notes", DataverseTarget("smig_clinicalnote"),
         "A clinical, non-clinical or notification note.",
         _f("patient_id", "uuid", ref="patient", required=True), _f("appointment_id", "uuid", ref="appointment"),
         _f("provider_id", "uuid", ref="provider"), _f("provider_name", inferred=True), _f("note_type"),
         _f("category"), _f("body", "text", phi=True), _f("is_alert", "bool"),
         _f("signed_at", "datetime"), _f("signed_by", "uuid", ref="provider"), _f("archived", "bool"),
         display_name=DisplayName("Clinical note", "signed_at", "note_type"),
         free_text_provider=FreeTextProvider(location_via="appointment_id", signer=("signed_by", "signed_at")),
         chart_duplicates=ChartDuplicates("identical_note")),
    _obj("perio_reading", "perio_readings", DataverseTarget("smig_perioreading"),
         "One site of a periodontal exam (exam fields flattened onto each reading).",
         _f("exam_id", "uuid", inferred=True), _f("patient_id", "uuid", ref="patient", required=True),
         _f("provider_id", "uuid", ref="provider"), _f("exam_date", "date", inferred=True), _f("tooth", "int"),
         _f("site"), _f("probing_depth_mm", "int"), _f("recession_mm", "int"), _f("bleeding", "bool"),
         _f("suppuration", "bool"), _f("plaque", "bool"), _f("mobility", "int"), _f("furcation", "int"),
         display_name=DisplayName("Perio reading", "exam_date", "tooth"),
         chart_duplicates=ChartDuplicates("identical_reading", same=(
             "patient_id", "exam_date", "tooth", "site", "probing_depth_mm", "recession_mm", "bleeding", "suppuration",
             "plaque", "mobility", "furcation"))),
    _obj("claim", "claims", DataverseTarget("smig_billingledger", note="claim status on the ledger row"),
         "An insurance claim.",
         _f("claim_number", phi=True), _f("patient_id", "uuid", ref="patient", required=True),
         _f("patient_policy_id", "uuid", ref="patient_policy"), _f("provider_id", "uuid", ref="provider"),
         _f("location_id", "uuid", ref="location"), _f("claim_type"), _f("status"), _f("status_change_note", "text", phi=True),
         _f("replaces_claim_id", "uuid", ref="claim"), _f("coverage_order"), _f("billed_amount", "decimal"),
         _f("paid_amount", "decimal"), _f("write_off_amount", "decimal"), _f("submitted_at", "datetime"),
         _f("paid_at", "datetime", inferred=True), _f("preauth_reference", phi=True), _f("x12_277_category", inferred=True),
         location_field="location_id", display_name=DisplayName("Claim", "submitted_at", "claim_type")),
    _obj("claim_status_event", "claim_status_events", DataverseTarget("smig_claimstatusevent"),
         "One status change of a claim (the claim's history).",
         _f("claim_id", "uuid", ref="claim", required=True), _f("status"),
         _f("occurred_at", "datetime", inferred=True), _f("x12_277_category", inferred=True),
         _f("note", "text", phi=True, inferred=True), _f("changed_by", "uuid", inferred=True, ref="user"),
         display_name=DisplayName("Claim status", "occurred_at", "status"),
         time_order=TimeOrder(by="occurred_at", within="claim_id")),
    _obj("ledger_transaction", "ledger_transactions", DataverseTarget("smig_billingledger", columns=(
        ExtraColumn("entry_type", "Picklist",
                    options=("Charge", "Payment", "Adjustment", "Insurance Payment", "Write-off", "Claim")),)),
         "An append-only ledger entry; corrections are extra entries.",
         _f("patient_id", "uuid", ref="patient", required=True), _f("guarantor_id", "uuid", inferred=True, ref="patient"),
         _f("location_id", "uuid", ref="location"), _f("provider_id", "uuid", ref="provider"),
         _f("provider_name", inferred=True), _f("txn_type"), _f("payment_type"), _f("amount", "decimal", sign_by="txn_type"),
         _f("service_date", "date"), _f("transaction_date", "date"), _f("procedure_code"),
         _f("claim_id", "uuid", ref="claim"), _f("corrects_transaction_id", "uuid", ref="ledger_transaction"),
         _f("reference", phi=True), _f("comment", "text", phi=True),
         location_field="location_id", display_name=DisplayName("Ledger entry", "transaction_date", "txn_type"),
         free_text_provider=FreeTextProvider()),
    _obj("eligibility_check", "eligibility_checks", DataverseTarget("smig_insuranceeligibility"),
         "A real-time eligibility response for a policy.",
         _f("patient_policy_id", "uuid", ref="patient_policy"),
         _f("patient_id", "uuid", inferred=True, ref="patient", required=True),
         _f("payer_id", "uuid", inferred=True, ref="payer"), _f("checked_at", "datetime"), _f("result", inferred=True),
         _f("coverage_pct", "json", inferred=True), _f("annual_max_remaining", "decimal", inferred=True),
         _f("deductible_met", "decimal", inferred=True), _f("waiting_period_months", "int", inferred=True),
         _f("payer_response_code", inferred=True), _f("document_id", "uuid", ref="document"),
         display_name=DisplayName("Eligibility check", "checked_at", "result")),
    _obj("document", "documents", DataverseTarget("annotation", alternate_key=None,
                                         note="note on the contact; large files to SharePoint"),
         "A file in Patient Files (forms, PDFs, images, eligibility HTML).",
         _f("patient_id", "uuid", ref="patient", required=True), _f("claim_id", "uuid", ref="claim"),
         _f("category", inferred=True),
         _f("file_name", phi=True), _f("mime_type"), _f("size_bytes", "int", inferred=True),
         _f("sha256", inferred=True),
         has_content=True),
    _obj("communication", "communications", DataverseTarget("phonecall", also=("email",), note="phonecall / email by channel"),
         "A call, e-mail or text with a patient.",
         _f("patient_id", "uuid", ref="patient", required=True), _f("user_id", "uuid", ref="user"),
         _f("channel", inferred=True),
         _f("direction", inferred=True), _f("subject", "text", phi=True, inferred=True),
         _f("body", "text", phi=True, inferred=True), _f("started_at", "datetime", inferred=True),
         _f("ended_at", "datetime", inferred=True), _f("status", inferred=True),
         closing=Closing(failed=("Failed",))),
)

OBJECTS: dict[str, SenseiObject] = {o.name: o for o in REGISTRY}
BY_ENDPOINT: dict[str, SenseiObject] = {o.endpoint: o for o in REGISTRY}
# Tables written without the source-id alternate key (annotation is not key-enabled): their rows are addressed by a
# deterministic primary id instead.
UNKEYED_TABLES = frozenset(o.target.table for o in REGISTRY if o.target.alternate_key is None)


# The objects with a part of their own in the migration's structure; generic code reaches them through these names.
LOCATION = OBJECTS["location"]  # a practice: local time zones, per-location counts and the ledger's reconciliation
PATIENT = OBJECTS["patient"]  # deduplicated across the tenant; the unit of the sample migration
STAFF_USER = OBJECTS["user"]  # matched to Dataverse users by e-mail, never written: who owns migrated records


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
