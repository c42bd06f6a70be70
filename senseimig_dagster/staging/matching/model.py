"""The linkage model: Splink settings (blocking rules, graded comparisons) and the thresholds that use it.

Blocking: a pair is scored when any rule holds, so no single field must agree exactly. Comparisons have graded
levels; Splink learns each level's m and u (how often true and false pairs land there) and adds their log-odds.
Levels are named (``label_for_charts``): the names are what a merge is explained with, never values.

Thresholds (``MATCH_PROBABILITY``, ``REVIEW_PROBABILITY``) were chosen from calibration on harsh generated
duplicates and FEBRL3 (``benchmarks/dedup.py``): see the README's "Patient matching".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from splink import SettingsCreator, block_on
from splink.comparison_library import CustomComparison

# A pair at or above this probability is merged; between the two it goes to the review list.
MATCH_PROBABILITY = 0.99
REVIEW_PROBABILITY = 0.5
# Below this many patients EM has too few true pairs to learn from: the calibrated parameters are used as they are.
MIN_TRAINING_PATIENTS = 2000
PRIOR_MODEL = Path(__file__).with_name("prior_model.json")

BLOCKING_RULES = (
    block_on("dob"),
    block_on("last", "initial"),
    block_on("phone"),
    block_on("email"),
    block_on("zip5", "dob_year"),
    block_on("last_sound", "first_sound"),
    block_on("first", "last_sound"),
    block_on("first_sound", "last"),
    block_on("address"),
    "l.first_sound = r.last_sound and l.last_sound = r.first_sound",  # first and last name swapped
    block_on("ssn4", "initial"),
)
# EM runs once per rule; each rule leaves the comparisons it fixes out of the estimate, so together they cover all.
TRAINING_RULES = (block_on("first", "last", "zip5"), block_on("dob"))


def _level(label: str, sql: str, **extra: Any) -> dict[str, Any]:
    return {"sql_condition": sql, "label_for_charts": label, **extra}


def _null(*cols: str) -> dict[str, Any]:
    either = " or ".join(f'"{c}_l" is null or "{c}_r" is null' for c in cols)
    return _level("missing", either, is_null_level=True)


def _else() -> dict[str, Any]:
    return _level("different", "else")


def _name(col: str, other: str) -> CustomComparison:
    """A name: exact (term-frequency adjusted: a rare surname agreeing says more than Smith), a known nickname
    (first names), typos, swapped with the other name field, partly similar, different."""
    l, r = f'"{col}_l"', f'"{col}_r"'  # noqa: E741
    levels = [_null(col), _level("exact", f"{l} = {r}", tf_adjustment_column=col, tf_adjustment_weight=1.0)]
    if col == "first":
        levels.append(_level("nickname", f'list_contains("first_related_l", {r}) or '
                                         f'list_contains("first_related_r", {l})'))
    levels += [
        _level("one_typo", f"damerau_levenshtein({l}, {r}) <= 1"),
        _level("similar", f"jaro_winkler_similarity({l}, {r}) >= 0.92"),
        _level("swapped", f'jaro_winkler_similarity({l}, "{other}_r") >= 0.92 or '
                          f'jaro_winkler_similarity("{other}_l", {r}) >= 0.92'),
        _level("two_typos", f"damerau_levenshtein({l}, {r}) <= 2"),
        _level("partial", f"jaro_winkler_similarity({l}, {r}) >= 0.8"),
        _else(),
    ]
    return CustomComparison(levels, output_column_name=f"{col}_name")


def _birth_date() -> CustomComparison:
    """Exact; day and month transposed (05/17 keyed as 17/05); one digit wrong or two swapped; two; different."""
    l, r = '"dob_l"', '"dob_r"'  # noqa: E741
    transposed = (f"substr({l}, 1, 4) = substr({r}, 1, 4) and substr({l}, 6, 2) = substr({r}, 9, 2) "
                  f"and substr({l}, 9, 2) = substr({r}, 6, 2)")
    return CustomComparison([
        _null("dob"), _level("exact", f"{l} = {r}"), _level("day_month_transposed", transposed),
        _level("one_typo", 'damerau_levenshtein("dob_digits_l", "dob_digits_r") <= 1'),
        _level("two_typos", 'damerau_levenshtein("dob_digits_l", "dob_digits_r") <= 2'),
        _level("same_year", 'left("dob_l", 4) = left("dob_r", 4)'), _else(),
    ], output_column_name="date_of_birth")


def _exact_or_typo(col: str, name: str, typo: str | None = None) -> CustomComparison:
    l, r = f'"{col}_l"', f'"{col}_r"'  # noqa: E741
    levels = [_null(col), _level("exact", f"{l} = {r}")]
    if typo:
        levels.append(_level("close", typo.format(l=l, r=r)))
    return CustomComparison([*levels, _else()], output_column_name=name)


def _household() -> CustomComparison:
    """Where the records live and how they are reached, as one comparison: a household shares its address, phone
    and e-mail, so counting each as independent evidence would make any two members of a family one person."""
    phone = 'list_has_any("phones_l", "phones_r")'
    email = '"email_l" = "email_r"'
    address = 'jaro_winkler_similarity("address_l", "address_r") >= 0.88'
    zip_or_city = '("zip5_l" = "zip5_r" or "city_l" = "city_r")'
    missing = " and ".join(f'("{c}_l" is null or "{c}_r" is null)' for c in ("address", "zip5", "city", "email"))
    return CustomComparison([
        _level("missing", f'{missing} and (len("phones_l") = 0 or len("phones_r") = 0)', is_null_level=True),
        _level("address_and_phone_or_email", f"{address} and ({phone} or {email})"),
        _level("address", f"{address} and {zip_or_city}"),
        _level("phone_or_email", f"{phone} or {email}"),
        _level("address_similar", address),
        _level("postal_code_or_city", zip_or_city),
        _else(),
    ], output_column_name="household")


def comparisons() -> list[CustomComparison]:
    return [
        _name("first", "last"),
        _name("last", "first"),
        _birth_date(),
        _household(),
        _exact_or_typo("ssn4", "ssn_last_four", "damerau_levenshtein({l}, {r}) <= 1"),
        _exact_or_typo("gender", "gender"),
    ]


def settings(probability_two_random_records_match: float = 1e-4) -> SettingsCreator:
    """The model before training: every level's m and u unknown (Splink's defaults)."""
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="unique_id",
        blocking_rules_to_generate_predictions=list(BLOCKING_RULES),
        comparisons=comparisons(),
        probability_two_random_records_match=probability_two_random_records_match,
        retain_intermediate_calculation_columns=True,
        retain_matching_columns=True,  # Splink returns the levels (gammas) only with the values; linkage drops those
        additional_columns_to_retain=[],
    )
