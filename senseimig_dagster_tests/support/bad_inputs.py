"""The bad-input corpus: every kind of mess staging must name, as small frames with the findings they must give.

Each :class:`BadInput` is one *kind* of bad (or tricky-but-valid) input: a few rows of one Sensei object, always
with a clean row beside the bad ones, and the exact count of every reason code ``run_checks`` must report, plus how
many rows must leave the clean frame. ``must_pass`` cases (emoji, right-to-left and accented names, a long but
legal clinical note, the DST-ambiguous hour) must produce no finding and keep their values unchanged.

``checks_for`` is the staging spec the corpus runs under: the cleaners a staging asset applies per object, with the
column limits of Microsoft's table definitions (contact's name and description lengths, its gender options) and
the custom-table limits of ``dataverse/schema.py``.
``generator`` names the ``sandbox/generator/defects.py`` defect a case reproduces.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from senseimig_dagster.objects import get
from senseimig_dagster.staging.shape import source_id_rules
from senseimig_dagster.staging.values.check import Check, RowRule
from senseimig_dagster.staging.values.dates import clean_date, default_range, describe_range, local_to_utc
from senseimig_dagster.staging.values.dental import (
    clean_cdt_code,
    clean_surfaces,
    clean_tooth,
    tooth_detail,
)
from senseimig_dagster.staging.values.emails import clean_email
from senseimig_dagster.staging.values.identifiers import clean_npi, clean_picklist
from senseimig_dagster.staging.values.money import clean_money, ledger_amount
from senseimig_dagster.staging.values.phones import clean_phone
from senseimig_dagster.staging.values.refs import clean_reference
from senseimig_dagster.staging.values.text import clean_text

TODAY = dt.date(2026, 11, 25)  # fixed, so "today + 2 years" does not move under the tests
EARLIEST, LATEST = default_range(TODAY)

PARENTS: dict[str, pl.Series] = {
    "organization": pl.Series(["org-1"]),
    "location": pl.Series(["loc-1", "loc-2"]),
    "patient": pl.Series(["pat-1", "pat-2"]),
    "claim": pl.Series(["clm-1"]),
}
# contact.gendercode's options in Microsoft's contact definition; the confirmed map adds the rest
GENDER_MAP = {"Male": 1, "Female": 2}
CONTACT_NAME_MAX, CONTACT_DESCRIPTION_MAX, CUSTOM_MEMO_MAX = 50, 2000, 100_000
REQUIRED_PARENT = {"orphan_reference": "row"}  # a row without its required parent cannot be loaded


def _text(name: str, max_length: int, **kw: bool) -> Check:
    return Check(name, clean_text(pl.col(name), max_length=max_length, **kw), detail=f"limit {max_length}")


def _parent(name: str, parent: str, *, required: bool) -> Check:
    return Check(name, clean_reference(pl.col(name), PARENTS[parent], required=required), detail=parent,
                 severity=REQUIRED_PARENT if required else {})


def _date(name: str) -> Check:
    return Check(name, clean_date(pl.col(name), EARLIEST, LATEST), detail=describe_range(EARLIEST, LATEST))


def _spec(obj: str) -> list[Check]:
    # fmt: off
    specs: dict[str, list[Check]] = {
        "patient": [
            _text("first_name", CONTACT_NAME_MAX), _text("last_name", CONTACT_NAME_MAX, required=True),
            _text("description", CONTACT_DESCRIPTION_MAX, multiline=True), _date("date_of_birth"),
            *(Check(p, clean_phone(pl.col(p))) for p in ("mobile_phone", "home_phone", "work_phone")),
            Check("email", clean_email(pl.col("email"))), Check("gender", clean_picklist(pl.col("gender"), GENDER_MAP)),
            _parent("primary_location_id", "location", required=True),
        ],
        "provider": [_text("last_name", CONTACT_NAME_MAX, required=True), Check("npi", clean_npi(pl.col("npi")))],
        "location": [_text("name", 160, required=True), Check("npi", clean_npi(pl.col("npi"))),
                     _parent("organization_id", "organization", required=True)],
        "ledger_transaction": [
            _parent("patient_id", "patient", required=True), _parent("claim_id", "claim", required=False),
            Check("amount", ledger_amount(pl.col("amount"), pl.col("txn_type"))),
            Check("procedure_code", clean_cdt_code(pl.col("procedure_code"))), _date("service_date"),
        ],
        "treatment_plan_item": [
            Check("code", clean_cdt_code(pl.col("code"))),
            Check("tooth", clean_tooth(pl.col("tooth"), allow_areas=True), detail=tooth_detail(True)),
            Check("surfaces", clean_surfaces(pl.col("surfaces"), pl.col("tooth")), detail="M O I D B/F L once"),
            Check("fee", clean_money(pl.col("fee"), "debit"), detail="fee"),
        ],
        "perio_reading": [Check("tooth", clean_tooth(pl.col("tooth")), detail=tooth_detail())],
        "clinical_note": [_text("body", CUSTOM_MEMO_MAX, multiline=True),
                          _parent("patient_id", "patient", required=True)],
        "appointment": [Check("start_at", local_to_utc(pl.col("start_at"), pl.col("time_zone")))],
    }
    # fmt: on
    return specs[obj]


def checks_for(obj: str, frame: pl.DataFrame) -> tuple[list[Check], list[RowRule]]:
    """The object's checks on the columns ``frame`` has, and the duplicate-id rule."""
    checks = [c for c in _spec(obj) if c.field in frame.columns]
    rules = source_id_rules(get(obj), frame) if "id" in frame.columns else []
    return checks, rules


@dataclass(frozen=True)
class BadInput:
    kind: str
    object: str
    rows: list[dict]
    expected: dict[str, int]  # reason code -> findings
    rows_quarantined: int = 0
    must_pass: bool = False
    generator: str | None = None  # the generator defect this reproduces
    values: dict[str, list] = field(default_factory=dict)  # expected cleaned values of the clean rows, per field

    def frame(self) -> pl.DataFrame:
        rows = [{**r, "id": r.get("id", f"{self.kind}-{i}")} for i, r in enumerate(self.rows)]
        return pl.DataFrame(rows, infer_schema_length=None)


def _pat(**values: object) -> dict:
    return {"last_name": "Lee", "primary_location_id": "loc-1", **values}


def _ledger(**values: object) -> dict:
    return {"patient_id": "pat-1", "txn_type": "Charge", "amount": "125.00", **values}


def _item(**values: object) -> dict:
    return {"code": "D2392", "tooth": "30", "surfaces": "MO", "fee": "235.00", **values}


GOOD_PATIENT = _pat(first_name="Robert", email="robert.lee@gmail.com", mobile_phone="(303) 555-0111",
                    date_of_birth="1984-03-12", gender="Male")
LONG_NAME = "-".join(["Wolfeschlegelsteinhausenbergerdorff", "Featherstonehaugh-Cholmondeley",
                      "Vandersteen-Montgomery", "Worthington-Smythe"])  # > 100 characters, as the generator makes
NOTE_10K = ("Patient reports sensitivity on the lower right. " * 209)[:10_000]

# fmt: off
CORPUS: tuple[BadInput, ...] = (
    # -- required names -------------------------------------------------------------------------------------
    BadInput("empty_last_name", "patient", [GOOD_PATIENT, _pat(last_name="")], {"required_missing": 1}, 1),
    BadInput("blank_last_name", "patient", [GOOD_PATIENT, _pat(last_name=" \t ")], {"required_missing": 1}, 1),
    BadInput("null_last_name", "patient", [GOOD_PATIENT, _pat(last_name=None)], {"required_missing": 1}, 1),
    BadInput("provider_without_last_name", "provider", [{"last_name": "Okafor"}, {"last_name": ""}],
             {"required_missing": 1}, 1),
    # -- lengths --------------------------------------------------------------------------------------------
    BadInput("long_last_name", "patient", [GOOD_PATIENT, _pat(last_name=LONG_NAME)], {"text_too_long": 1}, 1,
             generator="long_name"),
    BadInput("emoji_name_over_limit_in_utf16", "patient",  # 26 emoji = 26 characters but 52 UTF-16 units
             [GOOD_PATIENT, _pat(last_name="😀" * 26)], {"text_too_long": 1}, 1),
    BadInput("note_10000_chars_in_contact_description", "patient", [GOOD_PATIENT, _pat(description=NOTE_10K)],
             {"text_too_long": 1}, 1),
    BadInput("note_10000_chars_in_clinical_note", "clinical_note", [{"patient_id": "pat-1", "body": NOTE_10K}],
             {}, must_pass=True, generator="long_note", values={"body": [NOTE_10K.strip()]}),
    # -- control characters -----------------------------------------------------------------------------------
    BadInput("nul_byte_in_name", "patient", [GOOD_PATIENT, _pat(first_name="Ann\x00a")], {"control_characters": 1},
             values={"first_name": ["Robert", "Anna"]}),
    BadInput("escape_codes_in_note", "clinical_note",
             [{"patient_id": "pat-1", "body": "Line one\r\n\x1b[31mred\x1b[0m line two"}],
             {"control_characters": 1}, values={"body": ["Line one\n[31mred[0m line two"]}),
    BadInput("byte_order_mark_in_name", "patient", [GOOD_PATIENT, _pat(first_name="\ufeffMaria")],
             {"control_characters": 1}, values={"first_name": ["Robert", "Maria"]}),
    # -- valid text that must pass unchanged -------------------------------------------------------------------
    BadInput("emoji_names", "patient", [_pat(first_name="Sunny 🌞", last_name="👩‍👩‍👧 Family")], {},
             must_pass=True, values={"first_name": ["Sunny 🌞"], "last_name": ["👩‍👩‍👧 Family"]}),
    BadInput("right_to_left_names", "patient", [_pat(first_name="محمد", last_name="עברי"), _pat(last_name="الحسن")],
             {}, must_pass=True, values={"first_name": ["محمد", None], "last_name": ["עברי", "الحسن"]}),
    BadInput("accented_names", "patient", [_pat(first_name="Zoë", last_name="Nguyễn"),
                                           _pat(first_name="Łukasz", last_name="Müller-Lüdenscheid")],
             {}, must_pass=True, generator="non_ascii_name",
             values={"first_name": ["Zoë", "Łukasz"], "last_name": ["Nguyễn", "Müller-Lüdenscheid"]}),
    # -- dates and times -------------------------------------------------------------------------------------
    BadInput("birth_date_1850", "patient", [GOOD_PATIENT, _pat(date_of_birth="1850-06-01")],
             {"date_out_of_range": 1}, values={"date_of_birth": [dt.date(1984, 3, 12), None]}),
    BadInput("birth_date_2099", "patient", [GOOD_PATIENT, _pat(date_of_birth="2099-01-01")], {"date_out_of_range": 1}),
    BadInput("birth_date_not_a_date", "patient", [GOOD_PATIENT, _pat(date_of_birth="31/02/1984")],
             {"invalid_date": 1}),
    BadInput("service_date_2099", "ledger_transaction", [_ledger(), _ledger(service_date="2099-12-31")],
             {"date_out_of_range": 1}),
    BadInput("local_time_in_dst_gap", "appointment",
             [{"start_at": dt.datetime(2026, 3, 8, 2, 30), "time_zone": "America/Denver"}],
             {"nonexistent_local_time": 1},
             values={"start_at": [dt.datetime(2026, 3, 8, 9, 30, tzinfo=dt.UTC)]}),
    BadInput("local_time_in_repeated_dst_hour", "appointment",
             [{"start_at": dt.datetime(2026, 11, 1, 1, 30), "time_zone": "America/Denver"}], {}, must_pass=True,
             values={"start_at": [dt.datetime(2026, 11, 1, 7, 30, tzinfo=dt.UTC)]}),  # earliest: still MDT
    BadInput("unknown_time_zone", "appointment",
             [{"start_at": dt.datetime(2026, 7, 1, 9, 0), "time_zone": "America/Denver"},
              {"start_at": dt.datetime(2026, 7, 1, 9, 0), "time_zone": "Mountain Time"}], {"unknown_time_zone": 1}, 1),
    # -- phones (the generator's bad_phone kinds) -------------------------------------------------------------
    BadInput("phone_without_area_code", "patient", [GOOD_PATIENT, _pat(mobile_phone="555-0142")],
             {"invalid_phone": 1}, generator="bad_phone", values={"mobile_phone": ["+13035550111", None]}),
    BadInput("phone_nine_digits", "patient", [GOOD_PATIENT, _pat(home_phone="303-555-014")], {"invalid_phone": 1},
             generator="bad_phone"),
    BadInput("phone_placeholder_zeros", "patient", [GOOD_PATIENT, _pat(mobile_phone="000-000-0000")],
             {"invalid_phone": 1}, generator="bad_phone"),
    BadInput("phone_placeholder_na", "patient", [GOOD_PATIENT, _pat(work_phone="N/A")], {"invalid_phone": 1},
             generator="bad_phone"),
    BadInput("phone_eleven_digits", "patient", [GOOD_PATIENT, _pat(mobile_phone="30355501427")],
             {"invalid_phone": 1}, generator="bad_phone"),
    BadInput("phone_with_letters", "patient", [GOOD_PATIENT, _pat(mobile_phone="call mom"),
                                               _pat(home_phone="303-CALL-NOW")], {"invalid_phone": 2},
             generator="bad_phone"),
    BadInput("phones_in_every_front_desk_format", "patient",
             [_pat(mobile_phone=p) for p in ("+13035550111", "(303) 555-0111", "303-555-0111", "303.555.0111",
                                             "3035550111", "1-303-555-0111", "+1 303 555 0111")]
             + [_pat(work_phone="303-555-0111 ext. 12")], {}, must_pass=True,
             values={"mobile_phone": ["+13035550111"] * 7 + [None],
                     "work_phone": [None] * 7 + ["+13035550111 x12"]}),
    # -- e-mails (the generator's bad_email kinds) ------------------------------------------------------------
    *(BadInput(f"email_{how}", "patient", [GOOD_PATIENT, _pat(email=address)], {"invalid_email": 1},
               generator="bad_email", values={"email": ["robert.lee@gmail.com", None]})
      for how, address in (("no_top_level_domain", "ann.lee@gmail"), ("double_at", "ann.lee@@gmail.com"),
                           ("space", "ann lee@gmail.com"), ("no_at", "ann.lee.gmail.com"), ("placeholder", "n/a"),
                           ("two_addresses", "ann.lee@gmail.com,lee@yahoo.com"))),
    BadInput("email_domain_case", "patient", [_pat(email="Ann.Lee@GMAIL.COM")], {}, must_pass=True,
             values={"email": ["Ann.Lee@gmail.com"]}),
    # -- references --------------------------------------------------------------------------------------------
    BadInput("patient_practice_missing", "patient", [GOOD_PATIENT, _pat(primary_location_id="loc-gone")],
             {"orphan_reference": 1}, 1),
    BadInput("patient_without_practice", "patient", [GOOD_PATIENT, _pat(primary_location_id=None)],
             {"required_missing": 1}, 1),
    BadInput("location_of_unknown_organization", "location",
             [{"name": "Bright Smiles – Denver", "organization_id": "org-1"},
              {"name": "Bright Smiles – Nowhere", "organization_id": "org-x"}], {"orphan_reference": 1}, 1),
    BadInput("ledger_row_for_unknown_patient", "ledger_transaction", [_ledger(), _ledger(patient_id="pat-404")],
             {"orphan_reference": 1}, 1),
    BadInput("ledger_row_with_purged_claim", "ledger_transaction",
             [_ledger(claim_id="clm-1"), _ledger(txn_type="InsurancePayment", amount="-80.00", claim_id="clm-purged")],
             {"orphan_reference": 1}, generator="orphan_reference", values={"claim_id": ["clm-1", None]}),
    BadInput("duplicated_source_ids", "ledger_transaction",
             [_ledger(id="dup-1", updated_at=1), _ledger(id="dup-1", updated_at=2), _ledger(id="dup-1", updated_at=2),
              _ledger(id="solo-1", updated_at=1)], {"duplicate_source_id": 2}, 2),
    BadInput("source_ids_differing_in_case", "ledger_transaction",
             [_ledger(id="TX-1", updated_at=1), _ledger(id="tx-1", updated_at=1), _ledger(id="Tx-2", updated_at=1),
              _ledger(id="Tx-2", updated_at=2)],
             {"source_id_case_collision": 2, "duplicate_source_id": 1}, 3),
    # -- money ---------------------------------------------------------------------------------------------------
    BadInput("negative_charge", "ledger_transaction", [_ledger(), _ledger(amount="-125.00")], {"negative_charge": 1}, 1),
    BadInput("positive_payment", "ledger_transaction", [_ledger(txn_type="Payment", amount="-40.00"),
                                                        _ledger(txn_type="Payment", amount="40.00")],
             {"positive_credit": 1}, 1),
    BadInput("amount_with_three_decimals", "ledger_transaction", [_ledger(), _ledger(amount="12.345")],
             {"amount_precision": 1}, 1),
    BadInput("amount_not_a_number", "ledger_transaction", [_ledger(), _ledger(amount="twelve")],
             {"invalid_amount": 1}, 1),
    BadInput("negative_fee_on_plan_item", "treatment_plan_item", [_item(), _item(fee="-235.00")],
             {"negative_charge": 1}, 1),
    # -- dental codes ------------------------------------------------------------------------------------------
    BadInput("cdt_code_D99999", "treatment_plan_item", [_item(), _item(code="D99999")], {"invalid_cdt_code": 1}, 1),
    BadInput("cdt_code_unlisted_but_well_formed", "treatment_plan_item", [_item(), _item(code="d2160")],
             {"unknown_cdt_code": 1}, values={"code": ["D2392", "D2160"]}),
    BadInput("ledger_procedure_code_garbage", "ledger_transaction", [_ledger(procedure_code="D0120"),
                                                                     _ledger(procedure_code="cleaning")],
             {"invalid_cdt_code": 1}, 1),
    BadInput("tooth_33", "treatment_plan_item", [_item(), _item(tooth="33", surfaces=None)], {"invalid_tooth": 1}, 1),
    BadInput("perio_tooth_0", "perio_reading", [{"tooth": 3}, {"tooth": 0}], {"invalid_tooth": 1}, 1),
    BadInput("surfaces_XYZ", "treatment_plan_item", [_item(), _item(surfaces="XYZ")], {"invalid_surface": 1}, 1),
    BadInput("surfaces_repeated", "treatment_plan_item", [_item(surfaces="MOM"), _item(surfaces="BF")],
             {"invalid_surface": 2}, 2),
    BadInput("occlusal_on_front_tooth", "treatment_plan_item", [_item(tooth="8", surfaces="MI"),
                                                                _item(tooth="8", surfaces="O")],
             {"invalid_surface": 1}, 1),
    BadInput("incisal_on_back_tooth", "treatment_plan_item", [_item(tooth="K", surfaces="O"),
                                                              _item(tooth="K", surfaces="I")],
             {"invalid_surface": 1}, 1),
    BadInput("surfaces_on_a_quadrant", "treatment_plan_item", [_item(code="D4341", tooth="UR", surfaces=None),
                                                               _item(code="D4341", tooth="UR", surfaces="M")],
             {"invalid_surface": 1}, 1),
    BadInput("surfaces_in_any_case_and_order", "treatment_plan_item", [_item(tooth="03", surfaces="d, o, m")], {},
             must_pass=True, values={"tooth": ["3"], "surfaces": ["MOD"]}),
    # -- identifiers and picklists -----------------------------------------------------------------------------
    BadInput("npi_wrong_check_digit", "provider", [{"last_name": "Okafor", "npi": "1234567893"},
                                                   {"last_name": "Reyes", "npi": "1234567890"}],
             {"invalid_npi": 1}, values={"npi": ["1234567893", None]}),
    BadInput("location_npi_mistyped", "location", [{"name": "Bright Smiles – Denver", "organization_id": "org-1",
                                                    "npi": "1558598798"}], {"invalid_npi": 1}),
    BadInput("unmapped_gender", "patient", [GOOD_PATIENT, _pat(gender="X")], {"unmapped_picklist_value": 1},
             values={"gender": [1, None]}),
)
# fmt: on
