"""Score candidate pairs with Splink on an in-memory DuckDB: parameters per tenant, then predictions.

Training: a tenant of at least ``MIN_TRAINING_PATIENTS`` patients starts from the calibrated parameters
(``prior_model.json``), then estimates u from random pairs (seeded) and m by expectation-maximisation over the
training rules: no labelled data. A smaller tenant has too few true pairs for EM to find, so the calibrated
parameters are used as they are, without term-frequency adjustments (a few hundred patients say nothing about
how common a name is): the same rows always give the same scores.

Out: one row per candidate pair at or above ``REVIEW_PROBABILITY``: ids, match weight and probability, and per
comparison the level's name and its partial weight. Ids and level names only: no values leave DuckDB.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from senseimig_dagster.privacy.encryption import load_strong_crypto
from senseimig_dagster.staging.matching import model

SEED = 21
# No level of the calibrated parameters is taken as (nearly) impossible for a true pair: the generator's duplicates
# seldom move house, real patients do. A floor on m keeps one disagreeing field from vetoing every other field.
MIN_PRIOR_M = 0.01
U_SAMPLE_PAIRS = 2_000_000
# Matching holds a million patients within the staging memory aim (1 GB for the process): DuckDB's share
MEMORY_LIMIT = "600MB"
THREADS = 2
# Predictions are computed in chunks of the patients (left x right), so one query never holds every candidate pair.
PATIENTS_PER_CHUNK = 250_000


TRAINING_SCHEMA = {"step": pl.String, "rule": pl.String, "outcome": pl.String, "reason": pl.String}


@dataclass
class Scored:
    pairs: pl.DataFrame  # id_l, id_r, match_weight, match_probability, lvl_<comparison>, w_<comparison>
    parameters: dict[str, Any]  # the Splink model as used (m and u per level; no data)
    trained: bool  # parameters estimated on this tenant (else: the calibrated ones)
    training: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TRAINING_SCHEMA))  # per EM rule


def comparison_names() -> list[str]:
    return [c.create_output_column_name() for c in model.comparisons()]  # type: ignore[misc]


def _with_prior(settings: dict[str, Any], prior: dict[str, Any]) -> dict[str, Any]:
    """The code's settings with each level's m and u from ``prior`` (matched by comparison and level name)."""
    known = {(c["output_column_name"], lvl.get("label_for_charts")): lvl
             for c in prior.get("comparisons", []) for lvl in c["comparison_levels"]}
    for comparison in settings["comparisons"]:
        for lvl in comparison["comparison_levels"]:
            was = known.get((comparison["output_column_name"], lvl.get("label_for_charts")), {})
            if was and not lvl.get("is_null_level"):
                lvl["m_probability"] = max(was.get("m_probability") or 0.0, MIN_PRIOR_M)
                if was.get("u_probability"):
                    lvl["u_probability"] = was["u_probability"]
    if "probability_two_random_records_match" in prior:
        settings["probability_two_random_records_match"] = prior["probability_two_random_records_match"]
    return settings


def load_prior(path: Path = model.PRIOR_MODEL) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _without_term_frequencies(settings: dict[str, Any]) -> dict[str, Any]:
    """A small tenant's name frequencies say nothing (two Marias in four patients is not a common name)."""
    for comparison in settings["comparisons"]:
        for lvl in comparison["comparison_levels"]:
            lvl.pop("tf_adjustment_column", None)
            lvl.pop("tf_adjustment_weight", None)
    return settings


def connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB held to ``MEMORY_LIMIT``: what does not fit spills, encrypted, into ``spill`` (a private
    temporary folder the caller removes), never into the working directory (DuckDB's default for in-memory databases).
    Unordered results let joins and aggregates stream (https://duckdb.org/docs/stable/guides/performance/how_to_tune_workloads)."""
    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(spill),
                                 "preserve_insertion_order": False, "threads": THREADS})
    # Spilled pairs hold patients' names and birth dates: encrypted with a key DuckDB makes for this connection
    # (https://duckdb.org/docs/stable/sql/statements/attach#database-encryption), OpenSSL through httpfs.
    load_strong_crypto(con)
    con.execute("SET temp_file_encryption = true")
    return con


def _linker(columns: pl.DataFrame, prior: dict[str, Any], trained: bool, con: duckdb.DuckDBPyConnection) -> Linker:
    db = DuckDBAPI(con)
    table = db.register(columns.to_arrow(), table_name="patients")
    settings = _with_prior(model.settings().create_settings_dict("duckdb"), prior)
    return Linker(table, settings if trained else _without_term_frequencies(settings), log_level=None)


def rule_sql(rule: Any) -> str:
    """A blocking rule as SQL text (column names only: no values)."""
    return rule if isinstance(rule, str) else rule.get_blocking_rule("duckdb").blocking_rule_sql


def skip_reason(error: Exception) -> str:
    """Splink's refusal, first line only and cut short: it names comparison levels, never values."""
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200] if str(error).strip() else ''}"


def train(linker: Linker, patients: int) -> pl.DataFrame:
    """Per-tenant parameters: the share of true pairs, u from random pairs, m by EM (see the module doc).
    Returns the training summary (``TRAINING_SCHEMA``): one row per EM rule, estimated or skipped and why."""
    pairs = patients * (patients - 1) / 2
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first", "last", "dob"), block_on("last", "dob", "zip5")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=min(U_SAMPLE_PAIRS, pairs), seed=SEED)
    rows = []
    for rule in model.TRAINING_RULES:
        try:
            linker.training.estimate_parameters_using_expectation_maximisation(rule)
        except ValueError as error:  # Splink refuses an m of exactly 0 (a level no true pair reaches): the
            # comparisons this rule would estimate keep their previous m, and the summary says so
            rows.append(("em", rule_sql(rule), "skipped", skip_reason(error)))
            continue
        rows.append(("em", rule_sql(rule), "estimated", None))
    return pl.DataFrame(rows, schema=TRAINING_SCHEMA, orient="row")


def _explained(predictions: pl.DataFrame, parameters: dict[str, Any]) -> pl.DataFrame:
    """Gamma columns turned into level names, and each comparison's partial match weight (log2 Bayes factor).
    Splink returns the compared values only beside the gammas: they are dropped here."""
    out = predictions.select("unique_id_l", "unique_id_r", "match_weight", "match_probability")
    names = []
    for comparison in parameters["comparisons"]:
        name = comparison["output_column_name"]
        names.append(name)
        levels = [lvl for lvl in comparison["comparison_levels"]]
        gamma = {len(levels) - 1 - i if not lvl.get("is_null_level") else -1: lvl.get("label_for_charts")
                 for i, lvl in enumerate(levels)}
        weight = pl.col(f"mw_{name}")
        if f"mw_tf_adj_{name}" in predictions.columns:  # the term-frequency adjustment belongs to the same field
            weight = weight + pl.col(f"mw_tf_adj_{name}").fill_null(0.0)
        out = out.with_columns(
            predictions.get_column(f"gamma_{name}").replace_strict(gamma, default=None, return_dtype=pl.String)
            .alias(f"lvl_{name}"),
            predictions.select(weight.cast(pl.Float64)).to_series().alias(f"w_{name}"))
    return out.rename({"unique_id_l": "id_l", "unique_id_r": "id_r"})


def score(columns: pl.DataFrame, prior: dict[str, Any] | None = None,
          threshold: float = model.REVIEW_PROBABILITY) -> Scored:
    """Candidate pairs of ``columns`` (``matching.columns.COLUMNS``) scored at or above ``threshold``."""
    prior = load_prior() if prior is None else prior
    trained = columns.height >= model.MIN_TRAINING_PATIENTS or not prior
    with tempfile.TemporaryDirectory(prefix="senseimig-match-") as spill, connect(Path(spill)) as con:
        linker = _linker(columns, prior, trained, con)
        training = train(linker, columns.height) if trained else pl.DataFrame(schema=TRAINING_SCHEMA)
        parameters = linker.misc.save_model_to_json()
        if columns.height < 2:
            return Scored(_empty(parameters), parameters, trained, training)
        chunks = math.ceil(columns.height / PATIENTS_PER_CHUNK)
        predictions = linker.inference.predict(threshold_match_probability=threshold, num_chunks_left=chunks,
                                               num_chunks_right=chunks)
        frame = predictions.as_duckdbpyrelation().pl()
    return Scored(_explained(frame, parameters), parameters, trained, training)


def match_weights_html(parameters: dict[str, Any]) -> str:
    """Splink's chart of each comparison level's match weight, as a self-contained HTML page (parameters only)."""
    chart = SettingsCreator.from_path_or_dict(parameters).get_settings("duckdb").match_weights_chart()
    return chart.to_html(inline=True)


def match_weights_table(parameters: dict[str, Any]) -> pl.DataFrame:
    """comparison, level, m, u and the level's match weight (log2 m/u): the chart's numbers."""
    rows = []
    for c in parameters.get("comparisons", []):
        for lvl in c["comparison_levels"]:
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if lvl.get("is_null_level") or not m or not u:
                continue
            rows.append((c["output_column_name"], lvl.get("label_for_charts"), m, u, math.log2(m / u)))
    return pl.DataFrame(rows, schema={"comparison": pl.String, "level": pl.String, "m": pl.Float64,
                                      "u": pl.Float64, "match_weight": pl.Float64}, orient="row")


def _empty(parameters: dict[str, Any]) -> pl.DataFrame:
    schema: dict[str, Any] = {"id_l": pl.String, "id_r": pl.String, "match_weight": pl.Float64,
                              "match_probability": pl.Float64}
    for c in parameters["comparisons"]:
        schema |= {f"lvl_{c['output_column_name']}": pl.String, f"w_{c['output_column_name']}": pl.Float64}
    return pl.DataFrame(schema=schema)
