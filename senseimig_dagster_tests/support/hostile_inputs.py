"""Hostile inputs, generic (not the generator's defects): each kind is one small CSV export file or one API page
of ledger transactions, three ordinary records around the hostile one, and where every record must go: ``landed``
or the named reason of its reject. Records are named by id, or by their place (``line N``, ``page 1 row N``) when
they have no readable id. Blank lines are not records and appear in no expectation.

Categories: encodings, CSV structure, JSON structure, types, dates, numbers and money, ids and references.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import orjson

from senseimig_dagster.objects import get

LEDGER = get("ledger_transaction")
TS = "2026-10-01T12:30:00Z"
LANDED = "landed"


@dataclass(frozen=True)
class Hostile:
    kind: str
    category: str
    path: Literal["csv", "json"]
    body: bytes
    expected: tuple[tuple[str, str], ...]  # (record id or place, "landed" or reject reason), every record once
    encoding: str = "utf-8"
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> field -> the landed value


def _text(i: int, **values: str) -> dict[str, str]:
    row = dict.fromkeys(LEDGER.field_names, "") | {
        "id": f"t-{i}", "patient_id": "p-1", "location_id": "l-1", "txn_type": "Charge", "amount": "10.00",
        "service_date": "10/01/2026", "transaction_date": "10/01/2026", "created_at": TS, "updated_at": TS,
        "is_deleted": "No"}
    return row | values


def _line(row: dict[str, str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([row[n] for n in LEDGER.field_names])
    return out.getvalue().encode()


def csv_file(*records: dict[str, str] | bytes, encoding: str = "utf-8") -> bytes:
    header = (",".join(LEDGER.field_names) + "\r\n").encode()
    return header + b"".join(r if isinstance(r, bytes) else _line(r) for r in records)


def _json(i: int, **values: Any) -> dict[str, Any]:
    return {"id": f"t-{i}", "patient_id": "p-1", "location_id": "l-1", "txn_type": "Charge", "amount": "10.00",
            "service_date": "2026-10-01", "transaction_date": "2026-10-01", "created_at": TS, "updated_at": TS,
            "is_deleted": False} | values


def page(*records: dict[str, Any] | bytes) -> bytes:
    data = b",".join(r if isinstance(r, bytes) else orjson.dumps(r) for r in records)
    return (b'{"object":"ledger_transaction","data":[' + data + b'],"next_page_token":null,"total_count":'
            + str(len(records)).encode() + b"}")


def _bytes_line(i: int, field_name: str, raw: bytes) -> bytes:
    """A CSV record whose ``field_name`` holds ``raw`` bytes as they are (no quoting)."""
    return _line(_text(i, **{field_name: "\x00MARK\x00"})).replace(b"\x00MARK\x00", raw)


def _json_bytes(i: int, field_name: str, raw: bytes) -> bytes:
    return orjson.dumps(_json(i, **{field_name: "MARK"})).replace(b'"MARK"', raw)


def _csv(kind: str, category: str, hostile: dict[str, str] | bytes, outcome: str, *, where: str | None = None,
         value: dict[str, Any] | None = None, encoding: str = "utf-8") -> Hostile:
    """Records t-1, t-2, the hostile one (t-9 unless ``where`` names its place), t-3."""
    body = csv_file(_text(1), _text(2), hostile, _text(3))
    key = where or "t-9"
    return Hostile(kind, category, "csv", body, (("t-1", LANDED), ("t-2", LANDED), (key, outcome), ("t-3", LANDED)),
                   encoding, {key: value} if value else {})


def _page(kind: str, category: str, hostile: dict[str, Any] | bytes, outcome: str, *, where: str | None = None,
          value: dict[str, Any] | None = None) -> Hostile:
    body = page(_json(1), _json(2), hostile, _json(3))
    key = where or "t-9"
    return Hostile(kind, category, "json", body, (("t-1", LANDED), ("t-2", LANDED), (key, outcome), ("t-3", LANDED)),
                   values={key: value} if value else {})


def _structure(kind: str, body: bytes, expected: tuple[tuple[str, str], ...], path: Literal["csv", "json"] = "csv",
               category: str = "csv structure") -> Hostile:
    return Hostile(kind, category, path, body, expected)


def _ok(*ids: str) -> tuple[tuple[str, str], ...]:
    return tuple((i, LANDED) for i in ids)


def _cases() -> list[Hostile]:
    t = _text
    j = _json
    enc, struct, js, types, dates, money, ids = ("encodings", "csv structure", "json structure", "types", "dates",
                                                 "numbers and money", "ids and references")
    inv, bad, mal = "invalid_encoding", "wrong_type", "malformed_row"
    cases = [
        # -- encodings --------------------------------------------------------------------------------------------
        _csv("latin1_byte_in_text", enc, _bytes_line(9, "comment", b"Caf\xe9"), inv),
        _csv("cp1252_smart_quotes", enc, _bytes_line(9, "comment", b"\x93paid\x94"), inv),
        _csv("overlong_utf8_slash", enc, _bytes_line(9, "reference", b"a\xc0\xafb"), inv),
        _csv("surrogate_encoded_as_utf8", enc, _bytes_line(9, "comment", b"\xed\xa0\x80"), inv),
        _csv("truncated_multibyte_sequence", enc, _bytes_line(9, "comment", b"price \xe2\x82"), inv),
        _csv("undecodable_byte_in_the_id", enc, _bytes_line(9, "id", b"t-\xff9"), inv, where="line 4"),
        _csv("undecodable_byte_on_a_notes_second_line", enc,
             _bytes_line(9, "comment", b'"first line\r\nsecond \xfe line"'), inv),
        Hostile("declared_cp1252_export", enc, "csv",
                csv_file(t(1), t(2, comment="“Café” – €5"), t(3)).decode().encode("cp1252"),
                _ok("t-1", "t-2", "t-3"), "cp1252", {"t-2": {"comment": "“Café” – €5"}}),
        _csv("declared_cp1252_with_an_undefined_byte", enc, _bytes_line(9, "comment", b"bad \x81 byte"), inv,
             encoding="cp1252"),
        _csv("emoji_rtl_and_zero_width_text", enc, t(9, comment="🦷 שלום\u200bzero\u200dwidth"), LANDED,
             value={"comment": "🦷 שלום\u200bzero\u200dwidth"}),
        _csv("nul_and_control_characters_in_text", enc, t(9, comment="a\x00b\x07c"), LANDED),
        _csv("utf8_bom_and_combining_marks", enc, t(9, comment="Jose\u0301"), LANDED, value={"comment": "Jose\u0301"}),
        _page("json_lone_surrogate_escape", enc, _json_bytes(9, "comment", b'"a\\ud800b"'), inv),
        _page("json_lone_low_surrogate_escape", enc, _json_bytes(9, "comment", b'"\\udc00"'), inv),
        _page("json_bytes_not_utf8", enc, _json_bytes(9, "comment", b'"\xc3\x28"'), inv, where="page 1 row 3"),
        _page("json_surrogate_pair_escape", enc, _json_bytes(9, "comment", b'"\\ud83e\\uddb7"'), LANDED,
              value={"comment": "🦷"}),
        _page("json_escaped_nul", enc, _json_bytes(9, "comment", b'"a\\u0000b"'), LANDED, value={"comment": "a\x00b"}),
        # -- CSV structure ----------------------------------------------------------------------------------------
        _structure("blank_line_between_records", csv_file(t(1), b"\r\n", t(2), b"\n", t(3)), _ok("t-1", "t-2", "t-3")),
        _structure("blank_lines_at_the_end", csv_file(t(1), t(2), b"\r\n\r\n\n"), _ok("t-1", "t-2")),
        _structure("blank_line_right_after_the_header", csv_file(b"\r\n", t(1), t(2)), _ok("t-1", "t-2")),
        _csv("too_many_fields", struct, _line(t(9))[:-2] + b",extra\r\n", mal, where="line 4"),
        _csv("too_few_fields", struct, b"t-9,p-1,l-1\r\n", mal, where="line 4"),
        _csv("whitespace_only_line", struct, b"   \r\n", mal, where="line 4"),
        _csv("unclosed_quote_swallowing_the_next_records", struct,
             _line(t(9)).replace(b",Charge,", b',"Charge,', 1), mal, where="line 4"),
        _csv("stray_quote_inside_an_unquoted_field", struct, t(9, reference='ab"c'), LANDED),
        _csv("quote_closed_then_text", struct, _line(t(9)).replace(b",Charge,", b',"Char"ge",', 1), mal,
             where="line 4"),
        _csv("multiline_quoted_note", struct, t(9, comment="line one\r\nline two\n\nline four"), LANDED,
             value={"comment": "line one\r\nline two\n\nline four"}),
        _csv("doubled_quotes_and_commas_in_a_note", struct, t(9, comment='said "no", then "yes"'), LANDED),
        _structure("truncated_inside_a_quote", csv_file(t(1), t(2), b't-9,p-1,"cut short'),
                   (("t-1", LANDED), ("t-2", LANDED), ("line 4", mal))),
        _structure("last_record_without_a_line_break", csv_file(t(1), t(2), _line(t(3))[:-2]),
                   (("t-1", LANDED), ("t-2", LANDED), ("line 4", mal))),
        _structure("lf_line_endings", csv_file(t(1), t(2)).replace(b"\r\n", b"\n"), _ok("t-1", "t-2")),
        _csv("identical_duplicate_row", struct, t(2), "duplicate_identical", where="t-2"),
        _structure("conflicting_duplicate_later_copy_newer",
                   csv_file(t(1), t(2), t(2, amount="20.00", updated_at="2026-10-02T00:00:00Z"), t(3)),
                   (("t-1", LANDED), ("t-2", LANDED), ("t-2", "duplicate_primary_key"), ("t-3", LANDED))),
        _structure("conflicting_duplicate_same_time_last_received_wins", csv_file(t(2, amount="1.00"), t(2), t(3)),
                   (("t-2", LANDED), ("t-2", "duplicate_primary_key"), ("t-3", LANDED))),
        _csv("missing_id", struct, t(9, id=""), "missing_primary_key", where="line 4"),
        _csv("missing_updated_at", struct, t(9, updated_at=""), "missing_modified_at"),
        # -- JSON structure ---------------------------------------------------------------------------------------
        _page("record_is_a_string", js, b'"t-9"', "malformed_record", where="page 1 row 3"),
        _page("record_is_null", js, b"null", "malformed_record", where="page 1 row 3"),
        _page("record_is_an_array", js, b'["t-9"]', "malformed_record", where="page 1 row 3"),
        _page("record_with_a_syntax_error", js, b'{"id": "t-9" "amount": "1.00"}', "malformed_record",
              where="page 1 row 3"),
        _page("record_with_a_raw_control_character", js, _json_bytes(9, "comment", b'"tab\there"'),
              "malformed_record", where="page 1 row 3"),
        _page("unknown_fields_kept", js, j(9, loyalty_tier="gold"), LANDED),
        _page("number_where_text_is_expected", js, j(9, reference=12345), LANDED, value={"reference": "12345"}),
        _page("missing_updated_at_in_json", js, {k: v for k, v in j(9).items() if k != "updated_at"},
              "missing_modified_at"),
        _page("null_id_in_json", js, j(9, id=None), "missing_primary_key", where="page 1 row 3"),
        _structure("trailing_comma_after_the_last_record", page(j(1), j(2)).replace(b"}]", b"},]"),
                   _ok("t-1", "t-2"), "json", js),
        # -- types ------------------------------------------------------------------------------------------------
        _csv("bool_true_false_in_csv", types, t(9, is_deleted="false"), LANDED, value={"is_deleted": False}),
        _csv("bool_upper_case", types, t(9, is_deleted="NO"), LANDED, value={"is_deleted": False}),
        _csv("bool_one_zero", types, t(9, is_deleted="0"), LANDED, value={"is_deleted": False}),
        _csv("bool_unreadable", types, t(9, is_deleted="maybe"), bad),
        _page("bool_as_text_in_json", types, j(9, is_deleted="yes"), LANDED, value={"is_deleted": True}),
        # -- dates ------------------------------------------------------------------------------------------------
        _csv("iso_date_in_the_export", dates, t(9, service_date="2026-10-05"), LANDED),
        _page("us_date_in_json", dates, j(9, service_date="10/05/2026"), LANDED),
        _csv("day_first_date", dates, t(9, service_date="31/12/2026"), bad),
        _csv("impossible_date", dates, t(9, service_date="02/30/2026"), bad),
        _page("time_with_an_offset", dates, j(9, created_at="2026-10-01T08:30:00-04:00"), LANDED),
        _page("time_without_a_zone", dates, j(9, created_at="2026-10-01 12:30:00"), LANDED),
        _page("epoch_seconds", dates, j(9, created_at="1790857800"), LANDED),
        _page("epoch_milliseconds", dates, j(9, created_at="1790857800000"), LANDED),
        _page("time_that_is_not_a_time", dates, j(9, created_at="yesterday"), bad),
        _page("updated_at_unreadable", dates, j(9, updated_at="2026-13-01T00:00:00Z"), bad),
        # -- numbers and money ------------------------------------------------------------------------------------
        _csv("currency_symbol_and_thousands", money, t(9, amount="$1,234.56"), LANDED,
             value={"amount": Decimal("1234.56")}),
        _csv("accounting_negative", money, t(9, amount="(12.00)"), LANDED, value={"amount": Decimal("-12.00")}),
        _csv("three_decimals_kept_exactly", money, t(9, amount="12.345"), LANDED,
             value={"amount": Decimal("12.345")}),
        _csv("leading_plus_and_blanks", money, t(9, amount=" +5.00 "), LANDED, value={"amount": Decimal("5.00")}),
        _csv("decimal_comma", money, t(9, amount="12,50"), bad),
        _csv("scientific_notation", money, t(9, amount="1e3"), bad),
        _csv("more_decimals_than_can_be_held", money, t(9, amount="0.1234567"), bad),
        _csv("thirteen_integer_digits", money, t(9, amount="1234567890123.00"), bad),
        _csv("negative_in_parentheses_and_minus", money, t(9, amount="(-5.00)"), bad),
        _page("amount_as_a_json_number", money, j(9, amount=12.5), LANDED, value={"amount": Decimal("12.5")}),
        _page("binary_float_artifact", money, _json_bytes(9, "amount", b"0.30000000000000004"), bad),
        _page("empty_amount", money, j(9, amount=""), LANDED, value={"amount": None}),
        # -- ids and references -----------------------------------------------------------------------------------
        _csv("id_that_looks_like_a_formula", ids, t(9, reference="=HYPERLINK(\"x\")"), LANDED),
        _csv("reference_to_a_missing_patient", ids, t(9, patient_id="no-such-patient"), LANDED),
        _csv("unicode_lookalike_id", ids, t(9, id="t-９"), LANDED, where="t-９"),
        _page("very_long_id", ids, j(9, id="t-" + "9" * 500), LANDED, where="t-" + "9" * 500),
        _page("self_reference", ids, j(9, corrects_transaction_id="t-9"), LANDED),
    ]
    return cases


CASES = _cases()
