"""The mapping proposer: name evidence (synonyms, abbreviations), type and value evidence, picklists, conflicts,
the written file, PHI, the CLI, the Dagster asset and a small accuracy-harness run."""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from dagster import materialize

from senseimig_dagster.assets.mapping import mapping_proposed
from senseimig_dagster.cli import main
from senseimig_dagster.io_managers import raw_table_ddl
from senseimig_dagster.mapping import default_map_path, load_valid, mapfile
from senseimig_dagster.mapping.candidates import offline
from senseimig_dagster.mapping.profiles import profile_frame
from senseimig_dagster.mapping.propose import FieldProposal, propose, propose_file
from senseimig_dagster.objects import OBJECTS
from senseimig_dagster.resources import DataverseResource, MappingResource
from senseimig_dagster.sandbox.generator import generate

BASE, _ = mapfile.load(default_map_path())
CATALOG = offline()
N = 40


def _patients(**columns: list) -> pl.DataFrame:
    return pl.DataFrame(columns)


def _propose(frame: pl.DataFrame, types: dict[str, str], obj: str = "patient") -> dict[str, FieldProposal]:
    proposal = propose({obj: profile_frame(frame, types)}, CATALOG, BASE, seed_fields=False)
    return {fp.field: fp for fp in proposal.fields[obj]}


def _dates(n: int = N) -> list[dt.date]:
    return [dt.date(1980, 1, 1) + dt.timedelta(days=37 * i) for i in range(n)]


def test_synonyms_and_abbreviations_find_the_standard_columns() -> None:
    frame = _patients(pt_dob=_dates(), Surname=[f"Name{i}" for i in range(N)],
                      cellPhone=[f"(907) 555-{1000 + i}" for i in range(N)], ZipCode=[f"9950{i % 10}" for i in range(N)],
                      EMAIL_ADDR=[f"p{i}@example.com" for i in range(N)])
    got = _propose(frame, {"pt_dob": "DATE"})
    assert {k: v.chosen.target for k, v in got.items() if v.chosen} == {
        "pt_dob": "birthdate", "Surname": "lastname", "cellPhone": "mobilephone", "ZipCode": "address1_postalcode",
        "EMAIL_ADDR": "emailaddress1"}
    dob = got["pt_dob"].chosen
    assert dob.transform == "date" and dob.confidence >= 0.9
    assert "name: 'pt_dob' ~ 'birthdate' via synonym 'date of birth'" in dob.reasons
    assert "type: DATE -> DateOnly ok" in dob.reasons and "values: 100% dates" in dob.reasons
    assert "values: 100% phone numbers" in got["cellPhone"].chosen.reasons


def test_type_incompatibility_lowers_confidence_or_rules_the_column_out() -> None:
    text = _propose(_patients(patient_number=[f"C{i}" for i in range(N)]), {})["patient_number"].chosen
    number = _propose(_patients(patient_number=list(range(N))), {"patient_number": "BIGINT"})["patient_number"]
    assert text.target == number.ranked[0].target == "smig_patientnumber"
    assert number.ranked[0].confidence < text.confidence  # BIGINT -> String is possible, not natural
    assert "type: BIGINT -> String possible (0.70)" in number.ranked[0].reasons
    # A birth date held as free text that is no date cannot go to a DateOnly column at all.
    words = _propose(_patients(date_of_birth=["unknown", "n/a", "?", "see chart"] * 10), {})["date_of_birth"]
    assert all(s.target != "birthdate" for s in words.ranked) and words.chosen is None


def test_phone_values_under_an_email_name_lower_confidence() -> None:
    fp = _propose(_patients(email=[f"(907) 555-{1000 + i}" for i in range(N)]), {})["email"]
    assert fp.chosen is None and fp.ranked[0].target == "emailaddress1"
    assert "values: only 0% e-mail addresses" in fp.ranked[0].reasons


def test_picklist_options_are_mapped_by_label() -> None:
    frame = _patients(sex=["Male", "Female", "Unknown", "Female"] * 10,
                      direction=["Outbound", "Inbound"] * 20)
    fp = _propose(frame, {})["sex"].chosen
    assert fp.target == "gendercode" and fp.transform == "picklist"
    assert dict(fp.values) == {"Male": 1, "Female": 2, "Unknown": None}
    assert "options: 2 of 3 values matched by label (75% of sampled rows); the rest -> empty" in fp.reasons
    assert fp.confidence < 0.99  # a quarter of the rows find no option
    comm = _propose(_patients(direction=["Outbound", "Inbound"] * 20), {}, "communication")["direction"].chosen
    assert comm.target == "directioncode" and dict(comm.values) == {"Outbound": True, "Inbound": False}


def test_junk_fields_stay_unmapped_with_the_best_candidate_named() -> None:
    frame = _patients(favorite_color=["Blue", "Green", "Teal", "Red"] * 10, loyalty_points=list(range(N)),
                      emergency_contact_phone=[f"(907) 555-{2000 + i}" for i in range(N)])
    got = _propose(frame, {"loyalty_points": "BIGINT"})
    assert all(fp.chosen is None for fp in got.values())
    assert got["emergency_contact_phone"].reason.startswith("no candidate above 0.60: best was ")


def test_conflicts_go_to_the_stronger_claim_and_the_loser_moves_on() -> None:
    frame = _patients(mobile_phone=[f"(907) 555-{1000 + i}" for i in range(N)],
                      cell=[f"(907) 556-{1000 + i}" for i in range(N)])
    got = _propose(frame, {})
    assert got["mobile_phone"].chosen.target == "mobilephone"
    loser = got["cell"]
    assert loser.chosen is None or loser.chosen.target != "mobilephone"
    assert "'mobilephone' (0.99) already taken by patient.mobile_phone" in (
        loser.reason if loser.chosen is None else " ".join(loser.chosen.reasons))


@pytest.fixture(scope="module")
def tenant_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tenant")
    generate(folder, patients=30, seed=5)
    path = folder / "tenant.duckdb"
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA raw")
        for name, obj in OBJECTS.items():
            conn.execute(raw_table_ddl(obj, f"raw.{name}"))
            cols = ", ".join(f'"{f.name}"' for f in obj.fields)
            as_text = ", ".join(f"'{f.name}': 'VARCHAR'" for f in obj.fields)
            conn.execute(f"INSERT INTO raw.{name} ({cols}) SELECT {cols} FROM "
                         f"read_json('{folder / (obj.endpoint + '.jsonl')}', columns={{{as_text}}})")
    return path


def _phi_values(db: Path) -> set[str]:
    out: set[str] = set()
    with duckdb.connect(str(db), read_only=True) as conn:
        for name, obj in OBJECTS.items():
            for f in obj.fields:
                if f.phi and f.type in ("str", "date"):
                    rows = conn.execute(f'SELECT DISTINCT "{f.name}"::VARCHAR FROM raw.{name} '
                                        f'WHERE "{f.name}" IS NOT NULL').fetchall()
                    out |= {r[0] for r in rows if len(r[0]) >= 4}
    return out


def _quoted(values: set[str], text: str) -> list[str]:
    """Values found in ``text`` as whole words ("Mark" the name, not "Marketing" the referral type)."""
    return [v for v in values if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)]


def test_the_proposed_file_validates_and_holds_no_sample_value(tenant_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "mapping.yaml"
    with duckdb.connect(str(tenant_db), read_only=True) as conn:
        proposal = propose_file(conn, out)
    fmap = load_valid(out)
    patient = fmap.objects["patient"].fields
    assert patient["date_of_birth"].targets == ("birthdate",) and patient["date_of_birth"].status == "proposed"
    assert patient["primary_location_id"].transform == "lookup"  # seeded by registry reference
    assert fmap.objects["patient_policy"].merge is not None and fmap.confirmation is None
    summary = proposal.summary()
    assert summary["mapped"] > 150 and 0.9 < summary["mean_confidence"] <= 0.99
    text = out.read_text(encoding="utf-8") + repr(summary)
    phi = _phi_values(tenant_db)
    assert len(phi) > 100
    assert _quoted(phi, text) == []


def test_cli_offline_path(tenant_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "proposed.yaml"
    assert main(["mapping", "propose", "--out", str(out), "--duckdb", str(tenant_db), "--offline"]) == 0
    assert "fields proposed" in capsys.readouterr().out
    assert main(["mapping", "validate", str(out)]) == 0
    assert main(["mapping", "confirm", str(out), "--by", "Dana"]) == 1  # proposed fields block confirmation


def test_asset_writes_the_map_and_metadata_without_values(tenant_db: Path, tmp_path: Path) -> None:
    from dagster_duckdb import DuckDBResource

    out = tmp_path / "mapping.yaml"
    result = materialize([mapping_proposed], resources={
        "mapping": MappingResource(path=str(out)), "store": DuckDBResource(database=str(tenant_db)),
        "dataverse": DataverseResource()})
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["mapped"] > 150 and "- patient.medical_alerts" in metadata["unmapped_fields"]
    load_valid(out)
    assert _quoted(_phi_values(tenant_db), repr(metadata)) == []


def test_a_small_harness_run_is_precise() -> None:
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from mapping_accuracy import run

    figures = run(seeds=3, patients=20)
    assert figures["precision_at_1"] >= 0.9 and figures["confident_wrong_rate"] <= 0.03
