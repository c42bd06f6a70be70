from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import orjson
import polars as pl
import pytest

from senseimig_dagster.objects import MODIFIED_AT, REGISTRY, SenseiObject, get
from senseimig_dagster.sandbox.export_writer import csv_text, write_export
from senseimig_dagster.sensei import csv_scan
from senseimig_dagster.sensei.errors import SenseiExportError
from senseimig_dagster.sensei.exports import export_count, extract_export, read_export
from senseimig_dagster.sensei.records import EXTRA, RAW, SOURCE_REF, Reject, cast_batch
from senseimig_dagster_tests.support.tenants import BASE_TIME, make_record, make_tenant, write_jsonl

ORG = get("organization")
PATIENT = get("patient")
TS = "2026-10-01T12:30:00Z"
HEADER = ",".join(ORG.field_names) + "\r\n"
BOM = "\ufeff"


def org(i: int, name: str = "Acme", ts: str = TS, deleted: str = "No", tax_id: str = "") -> list[str]:
    return [f"o-{i}", name, tax_id, ts, ts, deleted]


def write(directory: Path, obj: SenseiObject, content: str | bytes, bom: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    (directory / obj.export_file).write_bytes((BOM.encode() if bom else b"") + data)
    return directory


def read_all(obj: SenseiObject, directory: Path, since: dt.datetime | None = None,
             before: dt.datetime | None = None, **kw) -> tuple[pl.DataFrame, list[Reject]]:
    batches = list(read_export(obj, directory, since, before, **kw))
    frame = pl.concat([b.frame for b in batches]) if batches else pl.DataFrame()
    return frame, [r for b in batches for r in b.rejects]


def accounted(obj: SenseiObject, directory: Path, **kw) -> tuple[pl.DataFrame, list[Reject]]:
    """Read everything and check that every data record of the file landed or was rejected."""
    frame, rejects = read_all(obj, directory, **kw)
    encoding = {"encoding": kw["encoding"]} if "encoding" in kw else {}
    assert export_count(obj, directory, **encoding) == frame.height + len(rejects)
    return frame, rejects


# --- the same data through both paths ------------------------------------------------------------------------

def _defective_patients(rng: random.Random) -> list[dict]:
    rows = [make_record(PATIENT, rng) for _ in range(40)]
    rows[1]["date_of_birth"] = "1984-13-45"
    rows[2]["sms_opt_out"] = "maybe"
    rows[3][MODIFIED_AT] = None
    rows[4]["last_visit_date"] = "not a date"
    rows.append(dict(rows[5], updated_at="2027-01-01T00:00:00Z"))  # a later copy of an id
    return rows


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tenant")
    tenant = make_tenant(root / "tenant", {o.name: 40 for o in REGISTRY}, seed=11)
    write_jsonl(tenant / "patients.jsonl", _defective_patients(random.Random(2)))
    write_export(tenant, root / "export")
    return tenant, root / "export"


def _json_path(obj: SenseiObject, tenant: Path):
    frame = pl.read_ndjson(tenant / f"{obj.endpoint}.jsonl", schema={f: pl.String for f in obj.field_names})
    frame = frame.with_columns(pl.lit(None, pl.String).alias(EXTRA), pl.lit("").alias(RAW),
                               pl.format("row {}", pl.int_range(pl.len())).alias(SOURCE_REF))
    return cast_batch(obj, frame, "json")


def _comparable(obj: SenseiObject, frame: pl.DataFrame) -> list[dict]:
    rows = frame.select(obj.field_names).sort("id").to_dicts()
    jsons = [f.name for f in obj.fields if f.type == "json"]
    for row in rows:  # JSON text may be spaced differently on the two paths; compare the values
        row.update({k: orjson.loads(row[k]) for k in jsons if row[k] is not None})
    return rows


@pytest.mark.parametrize("obj", REGISTRY, ids=lambda o: o.name)
def test_json_and_csv_paths_give_equal_typed_rows(tenant: tuple[Path, Path], obj: SenseiObject) -> None:
    tenant_dir, export_dir = tenant
    json_batch = _json_path(obj, tenant_dir)
    frame, rejects = accounted(obj, export_dir)
    assert frame.schema == json_batch.frame.schema
    assert _comparable(obj, frame) == _comparable(obj, json_batch.frame)
    assert sorted((r.source_id or "", r.reason, r.field or "") for r in rejects) == \
        sorted((r.source_id or "", r.reason, r.field or "") for r in json_batch.rejects)
    if obj is PATIENT:
        assert {r.reason for r in rejects} == {"wrong_type", "missing_modified_at", "duplicate_primary_key"}


def test_empty_and_blank_strings_are_null_in_the_export(tmp_path: Path) -> None:
    """The one difference between the paths: CSV cannot tell "" from null; whitespace-only text is kept as in JSON."""
    write(tmp_path, ORG, HEADER + csv_text([org(1, name=""), org(2, name="   "), org(3, name=" x ")]))
    frame, _ = accounted(ORG, tmp_path)
    assert frame["name"].to_list() == [None, "   ", " x "]


# --- format -------------------------------------------------------------------------------------------------

NASTY = ['Smith, "Bob"\r\nJr.', "Zoë Ångström-Łódź 日本語 🦷", "line1\nline2\n\nline4", "cr\ronly", '"', ",",
         "=SUM(A1)", "a\x00nul", "x" * 70_000]


def test_bom_crlf_quotes_multiline_and_non_ascii_round_trip(tmp_path: Path) -> None:
    text = HEADER + csv_text([org(i, name=v) for i, v in enumerate(NASTY)])
    assert "\r\n" in text and '""' in text
    frame, rejects = accounted(ORG, write(tmp_path, ORG, text))
    assert not rejects
    assert frame["name"].to_list() == NASTY
    # _source_ref is the physical line the record starts on (header = line 1), line breaks inside values counted
    lines, line = [], 2
    for v in NASTY:
        lines.append(f"line {line}")
        line += v.count("\n") + 1
    assert frame[SOURCE_REF].to_list() == lines


def test_without_bom_and_with_lf_terminators(tmp_path: Path) -> None:
    text = HEADER.replace("\r\n", "\n") + "o-1,Acme,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,Yes\n"
    frame, _ = accounted(ORG, write(tmp_path, ORG, text, bom=False))
    assert frame.select("id", "is_deleted").rows() == [("o-1", True)]


def test_us_dates_yes_no_and_decimals(tmp_path: Path) -> None:
    names = list(PATIENT.field_names)
    rows = []
    for i, (dob, opt) in enumerate([("05/06/2025", "Yes"), ("12/31/1999", "no"), ("2025-05-06", "Yes"),
                                    ("13/01/2020", "No"), ("05/06/2025", "true"), ("05/06/2025", "maybe")]):
        row = dict.fromkeys(names, "") | {"id": f"p-{i}", "date_of_birth": dob, "sms_opt_out": opt,
                                          "created_at": TS, "updated_at": TS, "is_deleted": "No"}
        rows.append([row[n] for n in names])
    batches = list(read_export(PATIENT, write(tmp_path, PATIENT, csv_text([names, *rows])), None, None))
    frame, rejects = accounted(PATIENT, tmp_path)
    # the export's own forms, and the renderings a person reads without doubt (counted per field and variant)
    assert frame.select("id", "date_of_birth", "sms_opt_out").rows() == [
        ("p-0", dt.date(2025, 5, 6), True), ("p-1", dt.date(1999, 12, 31), False),
        ("p-2", dt.date(2025, 5, 6), True), ("p-4", dt.date(2025, 5, 6), True)]
    assert [(r.source_id, r.reason, r.field) for r in rejects] == [
        ("p-3", "wrong_type", "date_of_birth"), ("p-5", "wrong_type", "sms_opt_out")]
    assert batches[0].variants == {"date_of_birth: iso_date": 1, "sms_opt_out: other_rendering": 2}
    plan = get("insurance_plan")
    names = list(plan.field_names)
    row = dict.fromkeys(names, "") | {"id": "i-1", "annual_maximum": "1500.00", "deductible_individual": "-80.00",
                                      "created_at": TS, "updated_at": TS}
    frame, _ = accounted(plan, write(tmp_path, plan, csv_text([names, [row[n] for n in names]])))
    assert frame.select("annual_maximum", "deductible_individual").row(0) == (Decimal("1500.00"), Decimal("-80.00"))


def test_unknown_columns_are_kept_in_extra(tmp_path: Path) -> None:
    names = [*ORG.field_names, "loyalty_tier", "_source_ref"]
    rows = [[*org(1), "Gold, plus", "x"], [*org(2), "", ""]]
    frame, _ = accounted(ORG, write(tmp_path, ORG, csv_text([names, *rows])))
    assert [orjson.loads(v) for v in frame[EXTRA]] == [{"loyalty_tier": "Gold, plus", "_source_ref": "x"},
                                                       {"loyalty_tier": None, "_source_ref": None}]
    assert frame[SOURCE_REF].to_list() == ["line 2", "line 3"]
    plain, _ = accounted(ORG, write(tmp_path / "plain", ORG, HEADER + csv_text([org(1)])))
    assert plain[EXTRA].to_list() == [None]


# --- windows ------------------------------------------------------------------------------------------------

def test_windows_partition_the_rows_exactly(tenant: tuple[Path, Path]) -> None:
    _, export_dir = tenant
    bounds = [None, BASE_TIME + dt.timedelta(days=20), BASE_TIME + dt.timedelta(days=40), None]
    everything, all_rejects = read_all(PATIENT, export_dir)
    seen: list[str] = []
    rejected = 0
    for since, before in zip(bounds, bounds[1:], strict=False):
        frame, rejects = read_all(PATIENT, export_dir, since, before)
        ts = frame[MODIFIED_AT]
        assert since is None or (ts >= since).all()
        assert before is None or (ts < before).all()
        seen += frame["id"].to_list()
        rejected += len(rejects)
        if since is not None:  # rows without a usable updated_at are reported by the first window only
            assert all(r.field != MODIFIED_AT for r in rejects)
    assert len(seen) == len(set(seen))
    assert sorted(seen) == sorted(everything["id"].to_list())
    assert len(seen) + rejected == export_count(PATIENT, export_dir) == everything.height + len(all_rejects)


def test_malformed_rows_belong_to_the_first_window_only(tmp_path: Path) -> None:
    write(tmp_path, ORG, HEADER + csv_text([org(1), ["o-2", "short"], org(3, ts="2027-01-01T00:00:00Z")]))
    cut = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    first, first_rejects = read_all(ORG, tmp_path, None, cut)
    later, later_rejects = read_all(ORG, tmp_path, cut, None)
    assert first["id"].to_list() == ["o-1"] and later["id"].to_list() == ["o-3"]
    assert [r.reason for r in first_rejects] == ["malformed_row"] and not later_rejects
    naive, _ = read_all(ORG, tmp_path, cut.replace(tzinfo=None), None)  # naive datetimes mean UTC
    assert naive["id"].to_list() == ["o-3"]


# --- bad input ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "where", "cause"), [
    (b"", "header", "empty"),
    (BOM.encode(), "header", "empty"),
    (b"\r\n\r\n", "header", "empty"),
    (b"name,updated_at\r\nAcme,2026-10-01T12:30:00Z\r\n", "header", "id"),
    (b"id,name,created_at\r\n", "header", "updated_at"),
    (b"id,updated_at,first_name,last_name\r\n", "header", "not the organization export"),
    (b"id,id,updated_at,name,created_at\r\n", "header", "repeated"),
    (b"id,na\xffme,updated_at\r\n", "header", "UTF-8"),
])
def test_whole_file_problems_raise_at_once(tmp_path: Path, content: bytes, where: str, cause: str) -> None:
    write(tmp_path, ORG, content, bom=False)
    for call in (lambda: read_export(ORG, tmp_path, None, None), lambda: extract_export(ORG, tmp_path, None, None),
                 lambda: export_count(ORG, tmp_path)):
        with pytest.raises(SenseiExportError) as info:
            call()  # not lazily: before the first batch is asked for
        assert info.value.where == where and cause in info.value.cause and info.value.object_name == "organization"


def test_a_missing_header_row_never_quotes_the_first_record(tmp_path: Path) -> None:
    """Without its header row the first record is read as the header; its repeated values (a phone given twice)
    must not reach the error, which is about the header."""
    phone = "555-0142"
    write(tmp_path, ORG, csv_text([org(1, name=phone, tax_id=phone), org(2)]))
    with pytest.raises(SenseiExportError) as info:
        read_export(ORG, tmp_path, None, None)
    err = info.value
    assert err.object_name == "organization" and err.where == "header" and "header" in str(err)
    assert phone not in str(err) and TS not in str(err) and "o-1" not in str(err)
    # With the required columns present, repeated names outside the registry are counted, never quoted.
    write(tmp_path, ORG, f"id,updated_at,name,{phone},{phone},tax_id,tax_id\r\n", bom=False)
    with pytest.raises(SenseiExportError, match="repeated: tax_id, 1 other name") as info:
        read_export(ORG, tmp_path, None, None)
    assert phone not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SenseiExportError, match="organizations.csv not found"):
        read_export(ORG, tmp_path, None, None)


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    for content in (HEADER, HEADER.rstrip()):
        frame, rejects = accounted(ORG, write(tmp_path, ORG, content))
        assert frame.height == 0 and not rejects


def test_invalid_utf8_rejects_its_record_only_naming_line_and_byte_offset(tmp_path: Path) -> None:
    good = (HEADER + csv_text([org(1), org(2, name="multi\r\nline")])).encode()
    data = (BOM.encode() + good + b"o-3,Secret \xff Name,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No\r\n"
            + csv_text([org(4)]).encode())
    write(tmp_path, ORG, data, bom=False)
    frame, rejects = accounted(ORG, tmp_path)
    assert frame["id"].to_list() == ["o-1", "o-2", "o-4"]
    (reject,) = rejects
    offset = data.index(b"\xff")
    assert (reject.reason, reject.source_ref, reject.source_id) == ("invalid_encoding", "line 5", "o-3")
    assert f"byte offset {offset}" in reject.message and "Secret" not in reject.message
    assert "\\xff" in reject.raw  # the bytes as escapes, in the local reject table only


def test_a_declared_legacy_encoding_reads_the_export(tmp_path: Path) -> None:
    text = HEADER + csv_text([org(1, name="Café Zoë"), org(2, name="“Smile” Dental – €")])
    write(tmp_path, ORG, text.encode("cp1252") + b"o-3,bad \x81 byte,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No\r\n",
          bom=False)
    frame, rejects = accounted(ORG, tmp_path, encoding="cp1252")
    assert frame["name"].to_list() == ["Café Zoë", "“Smile” Dental – €"]
    assert [(r.reason, r.source_ref) for r in rejects] == [("invalid_encoding", "line 4")]
    assert "cp1252" in rejects[0].message
    _, utf8_rejects = accounted(ORG, tmp_path)  # undeclared: each legacy record is rejected, none lost
    assert [r.reason for r in utf8_rejects] == ["invalid_encoding"] * 3


def test_an_encoding_that_cannot_be_cut_by_byte_is_refused(tmp_path: Path) -> None:
    write(tmp_path, ORG, HEADER)
    with pytest.raises(SenseiExportError, match="not ASCII-compatible"):
        read_export(ORG, tmp_path, None, None, encoding="utf-16")


@pytest.mark.parametrize(("tail", "line"), [
    ('o-3,"Notes that were cut', 5),  # mid-quote
    ('o-3,"Notes that were cut\r\nacross lines', 5),  # mid-quote, multi-line
    ('o-3,"Notes that were cut\r\n', 5),  # mid-quote, ends with a line break
    ("o-3,Acme,,2026-10-01T12:30:00Z", 5),  # fewer fields
    ("o-3,Acme,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No", 5),  # all fields but no terminator
])
def test_truncated_file_lands_complete_rows_and_rejects_the_tail(tmp_path: Path, tail: str, line: int) -> None:
    text = HEADER + csv_text([org(1), org(2, name="two\r\nlines")]) + tail
    frame, rejects = accounted(ORG, write(tmp_path, ORG, text))
    assert frame["id"].to_list() == ["o-1", "o-2"]
    assert [(r.reason, r.source_ref) for r in rejects] == [("malformed_row", f"line {line}")]
    assert rejects[0].raw == tail.removesuffix("\r\n")
    assert "Notes" not in rejects[0].message and "Acme" not in rejects[0].message


def test_ragged_rows_are_rejected_with_their_line_and_blank_lines_are_not_records(tmp_path: Path) -> None:
    text = HEADER + csv_text([org(1, name="a\nb")]) + "o-2,too,many,fields,here,now,extra\r\n" + \
        csv_text([org(3)]) + "\r\n" + "o-4,short\r\n" + csv_text([org(5, name="x\r\ny"), org(6)]) + "\n\r\n"
    frame, rejects = accounted(ORG, write(tmp_path, ORG, text))
    assert frame.select("id", SOURCE_REF).rows() == [("o-1", "line 2"), ("o-3", "line 5"), ("o-5", "line 8"),
                                                     ("o-6", "line 10")]
    assert [(r.reason, r.source_ref, r.source_id) for r in rejects] == [
        ("malformed_row", "line 4", None), ("malformed_row", "line 7", None)]
    assert "7 fields where the header has 6" in rejects[0].message
    assert rejects[0].raw == "o-2,too,many,fields,here,now,extra"


@pytest.mark.parametrize("broken", ['o-2,"Acme,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No\r\n',
                                    'o-2,"Ac"me",,2026-10-01T12:30:00Z,\r\n',
                                    'o-2,"Acme\r\nstill the note,,2026-10-01T12:30:00Z,2026-10-01T12:30:00Z,No\r\n'])
def test_an_unclosed_quote_is_resynchronised_at_the_next_record(tmp_path: Path, broken: str) -> None:
    text = HEADER + csv_text([org(1)]) + broken + csv_text([org(3), org(4, name='two\r\n"lines"'), org(5)])
    frame, rejects = accounted(ORG, write(tmp_path, ORG, text))
    assert frame["id"].to_list() == ["o-1", "o-3", "o-4", "o-5"]
    (reject,) = rejects
    assert (reject.source_ref, reject.reason) == ("line 3", "malformed_row")
    assert reject.raw == broken.removesuffix("\r\n") and "Acme" not in reject.message


def test_wrong_types_and_duplicates_are_rejected_with_the_raw_record(tmp_path: Path) -> None:
    rows = [org(1, name="Secret, \"Name\"\nhere", deleted="Maybe"), org(2), org(3, ts="not a time"),
            org(2, ts="2026-11-01T00:00:00Z"), org(4, ts="")]
    frame, rejects = accounted(ORG, write(tmp_path, ORG, HEADER + csv_text(rows)))
    assert frame.select("id", SOURCE_REF).rows() == [("o-2", "line 6")]  # line 2 holds a line break
    got = {(r.source_ref, r.reason, r.field) for r in rejects}
    assert got == {("line 2", "wrong_type", "is_deleted"), ("line 4", "duplicate_primary_key", "id"),
                   ("line 5", "wrong_type", "created_at"), ("line 7", "missing_modified_at", "updated_at")}
    by_line = {r.source_ref: r for r in rejects}
    assert by_line["line 2"].raw == csv_text([rows[0]]).removesuffix("\r\n")
    assert by_line["line 4"].raw == ",".join(org(2))
    assert all("Secret" not in r.message for r in rejects)


@pytest.mark.parametrize("chunk_rows", [100_000, 7])
def test_exact_reader_gives_the_same_rows_as_the_fast_path(tenant: tuple[Path, Path], tmp_path: Path,
                                                           chunk_rows: int) -> None:
    """One bad record early sends the rest of the file to the csv-module reader; the rows must not change."""
    _, export_dir = tenant
    obj = get("appointment")
    data = (export_dir / obj.export_file).read_bytes()
    first_line_end = data.index(b"\r\n") + 2
    write(tmp_path, obj, data[:first_line_end] + b"blank,row\r\n" + data[first_line_end:], bom=False)
    fast, fast_rejects = read_all(obj, export_dir)
    exact, exact_rejects = accounted(obj, tmp_path, chunk_rows=chunk_rows)
    assert [r.reason for r in exact_rejects] == ["malformed_row"] + [r.reason for r in fast_rejects]
    assert exact.drop(SOURCE_REF).equals(fast.drop(SOURCE_REF))
    shifted = fast[SOURCE_REF].str.extract(r"(\d+)").cast(int) + 1
    assert exact[SOURCE_REF].str.extract(r"(\d+)").cast(int).equals(shifted)


@pytest.mark.parametrize("chunk_rows", [1, 3, 7])
def test_small_blocks_and_chunks_give_the_same_rows(tenant: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                                    chunk_rows: int) -> None:
    """Blocks of a few hundred bytes cut through multi-line and 5 KB values; batches never exceed chunk_rows."""
    _, export_dir = tenant
    obj = get("appointment")
    whole, whole_rejects = read_all(obj, export_dir)
    monkeypatch.setattr(csv_scan, "MIN_BLOCK", 64)
    batches = list(read_export(obj, export_dir, None, None, chunk_rows=chunk_rows))
    assert all(b.frame.height + len(b.rejects) <= chunk_rows for b in batches)
    frame = pl.concat([b.frame for b in batches])
    dedup = frame.sort(MODIFIED_AT).unique("id", keep="last").sort(SOURCE_REF)  # duplicates span chunks now
    assert dedup.select(obj.field_names).sort("id").equals(whole.select(obj.field_names).sort("id"))
    assert frame.height + sum(len(b.rejects) for b in batches) == whole.height + len(whole_rejects)


def test_extract_export(tenant: tuple[Path, Path]) -> None:
    _, export_dir = tenant
    extraction = extract_export(PATIENT, export_dir, None, None, chunk_rows=10)
    assert extraction.source == "export" and extraction.object == "patient"
    batches = list(extraction.batches)
    assert len(batches) > 1
    assert extraction.source_count == sum(b.received for b in batches) == export_count(PATIENT, export_dir)


def test_window_reads_updated_at_as_the_caster_does(tmp_path: Path) -> None:
    """Timestamps not in the export's own format (offsets, fractions, padding) still fall in the right window."""
    stamps = ["2026-11-15T10:00:00+02:00", " 2026-11-15T09:30:00Z ", "2026-11-15T08:59:59.900Z",
              "2026-11-15T09:00:00.000+00:00", "2026-11-15T09:00:00Z"]
    write(tmp_path, ORG, HEADER + csv_text([org(i, ts=ts) for i, ts in enumerate(stamps)]))
    cut = dt.datetime(2026, 11, 15, 9, tzinfo=dt.UTC)
    before, _ = read_all(ORG, tmp_path, None, cut)
    after, _ = read_all(ORG, tmp_path, cut, None)
    assert before["id"].to_list() == ["o-0", "o-2"]
    assert after["id"].to_list() == ["o-1", "o-3", "o-4"]
    assert (before[MODIFIED_AT] < cut).all() and (after[MODIFIED_AT] >= cut).all()


@pytest.mark.parametrize(("content", "cause"), [
    (",,\r\n", "empty"),
    ("\r\n", "empty"),
])
def test_empty_header_row(tmp_path: Path, content: str, cause: str) -> None:
    write(tmp_path, ORG, content + csv_text([org(1)]))
    with pytest.raises(SenseiExportError, match=cause):
        read_export(ORG, tmp_path, None, None)


def test_header_without_an_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csv_scan, "HEADER_MAX", 16)
    write(tmp_path, ORG, HEADER + csv_text([org(1)]))
    with pytest.raises(SenseiExportError, match="no end of the header row"):
        read_export(ORG, tmp_path, None, None)


def test_quoted_header_and_missing_optional_columns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = '"id","name","created_at","updated_at","is_deleted"\r\n' + \
        csv_text([["o-1", "Acme", TS, TS, "Yes"]])
    with caplog.at_level("WARNING"):
        frame, _ = accounted(ORG, write(tmp_path, ORG, text))
    assert frame.select("id", "name", "tax_id", "is_deleted").rows() == [("o-1", "Acme", None, True)]
    assert "tax_id" in caplog.text


def test_stray_quote_is_read_as_the_csv_module_does(tmp_path: Path) -> None:
    """Not RFC 4180 (a quote inside an unquoted field): the row lands verbatim, and the count, which cannot trust
    quote parity here, is the reader's: every record is accounted for."""
    write(tmp_path, ORG, HEADER + csv_text([org(1)]) + f'o-2,Ac"me,,{TS},{TS},No\r\n' + csv_text([org(3)]))
    frame, rejects = accounted(ORG, tmp_path)
    assert frame["name"].to_list() == ["Acme", 'Ac"me', "Acme"] and not rejects


def test_line_breaks_outside_text_columns_keep_line_numbers_right(tmp_path: Path) -> None:
    rows = [org(1), ["o-2\r\nx", "Acme", "", TS, TS, "No"], [*org(3)[:3], "2026-10-01\nT12:30:00Z", TS, "No"], org(4)]
    frame, rejects = accounted(ORG, write(tmp_path, ORG, HEADER + csv_text(rows)))
    assert frame.select("id", SOURCE_REF).rows() == [("o-1", "line 2"), ("o-2\r\nx", "line 3"), ("o-4", "line 7")]
    assert [(r.source_ref, r.reason, r.field) for r in rejects] == [("line 5", "wrong_type", "created_at")]


def test_a_bounded_window_does_not_claim_the_whole_file_count(tenant: tuple[Path, Path]) -> None:
    _, export_dir = tenant
    since = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert extract_export(PATIENT, export_dir, since, None).source_count is None
