from __future__ import annotations

from typing import Any

import polars as pl

from senseimig_dagster.staging.matching.clusters import family_homes, household_rule


def record(first: str, dob: str = "2012-06-01", gender: str | None = None, ssn4: str | None = None,
           family_home: bool = False, **fields: Any) -> dict[str, Any]:
    row = {"first": first, "last": "lee", "first_related": [], "dob": dob, "dob_digits": dob.replace("-", ""),
           "phones": [], "email": None, "address": "12 oak st", "gender": gender, "ssn4": ssn4,
           "family_home": family_home}
    return row | fields


def test_a_replaced_first_name_alone_is_not_twins():
    # one birth date and address, another first name, nothing else said: a keyed or converted record, not twins
    assert household_rule(record("john"), record("michael")) is None


def test_twins_need_evidence_of_two_people():
    assert household_rule(record("mary", gender="female"), record("maria", gender="female")) is None
    assert household_rule(record("mary", gender="female", family_home=True),
                          record("maria", gender="female", family_home=True)) == "twins"
    assert household_rule(record("gabriel", gender="male"), record("gabriella", gender="female")) == "twins"
    assert household_rule(record("ethan", ssn4="1234"), record("evan", ssn4="8765")) == "twins"


def test_agreeing_ssn_lifts_the_twin_rule():
    assert household_rule(record("ethan", ssn4="1234", family_home=True),
                          record("evan", ssn4="1234", family_home=True)) is None


def test_a_family_home_is_an_address_where_another_generation_is_registered():
    columns = pl.DataFrame({
        "address": ["12 oak st", "12 oak st", "12 oak st", "9 elm st", "9 elm st", None, None],
        "zip5": ["80202", "80202", "80202", "80202", "80202", None, None],
        "dob": ["2012-06-01", "2012-06-01", "1975-03-02", "1980-01-01", "1980-01-10", "2012-06-01", "1950-01-01"],
    })
    assert family_homes(columns).to_list() == [True, True, True, False, False, False, False]
