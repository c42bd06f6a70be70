"""The field map in Dagster: ``mapping/proposed`` writes the proposer's map (``senseimig mapping propose``) from the
raw tables, ``mapping/confirmed`` shows the map's state (objects, fields, confirmation, gate problems) and
``confirm_mapping`` is the UI path to ``senseimig mapping confirm`` (a job with config: path, by).

Dataverse-writing assets take their gate from ``assets/gate.py``.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections import Counter
from pathlib import Path
from typing import Literal

from dagster import (
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    OpExecutionContext,
    asset,
    job,
    op,
)
from pydantic import Field as ConfigField

from senseimig_dagster.assets.keys import MAP_CONFIRMED, MAP_PROPOSED, raw_key
from senseimig_dagster.mapping import (
    MapInvalid,
    NotConfirmable,
    confirm,
    gate_problems,
    mapfile,
    problems_markdown,
)
from senseimig_dagster.mapping import candidates as candidate_catalog
from senseimig_dagster.mapping.propose import DEFAULT_THRESHOLD, propose_file
from senseimig_dagster.mapping.validate import load_valid
from senseimig_dagster.objects import OBJECTS, REGISTRY
from senseimig_dagster.resources import DataverseResource, MappingResource, StoreResource


class ProposeMappingConfig(Config):
    targets: Literal["offline", "dataverse"] = ConfigField(
        default="offline", description="offline: schema plan + standard columns; dataverse: also the environment's "
                                       "own columns (EntityDefinitions)")
    threshold: float = ConfigField(default=DEFAULT_THRESHOLD, description="proposals below it stay unmapped")
    replace_confirmed: bool = ConfigField(default=False, description="allow overwriting a confirmed map")


@asset(key=MAP_PROPOSED, group_name="mapping", deps=[raw_key(o.name) for o in REGISTRY],
       description="The proposer's field map from a sample of the raw tables: per field a target, confidence and "
                   "reasons (status proposed), or unmapped with the best candidate named. Written to the "
                   "MappingResource's path for review; metadata holds counts and field names only (never values).")
def mapping_proposed(context: AssetExecutionContext, config: ProposeMappingConfig, mapping: MappingResource,
                     store: StoreResource, dataverse: DataverseResource) -> MaterializeResult:
    path = Path(mapping.path)
    if path.exists() and not config.replace_confirmed:
        existing, _ = mapfile.load(path)
        if existing is not None and existing.confirmation is not None:
            raise Failure(description=f"{path} is confirmed; set replace_confirmed to overwrite it")
    if config.targets == "dataverse":
        tables = sorted({o.target.table for o in OBJECTS.values()})
        with dataverse.session() as session:
            catalog = candidate_catalog.from_dataverse(session.metadata, tables, session.plan)
    else:
        catalog = candidate_catalog.offline(dataverse.plan())
    with store.get_connection() as conn:
        proposal = propose_file(conn, path, catalog, threshold=config.threshold)
    summary = proposal.summary()
    context.log.info(f"proposed {summary['mapped']} fields, {summary['unmapped']} unmapped, into {path}")
    unmapped = summary["unmapped_fields"]
    return MaterializeResult(metadata={
        "map": str(path),
        "mapped": summary["mapped"],
        "unmapped": summary["unmapped"],
        "seeded": summary["seeded"],
        "mean_confidence": summary["mean_confidence"],
        "threshold": config.threshold,
        "unmapped_fields": MetadataValue.md("\n".join(f"- {name}" for name in unmapped) or "none"),  # type: ignore[union-attr]
    })


@asset(key=MAP_CONFIRMED, group_name="mapping",
       description="The migration's field map: per object its target, the share of fields mapped, and whether it is "
                   "confirmed and unchanged since (the gate every Dataverse write runs behind).")
def mapping_state(context: AssetExecutionContext, mapping: MappingResource) -> MaterializeResult:
    problems = gate_problems(mapping.path)
    try:
        fmap = load_valid(mapping.path)
    except (MapInvalid, FileNotFoundError):
        fmap = None
    rows = []
    if fmap is not None:
        for obj in fmap.objects.values():
            counts = Counter("skipped" if f.transform == "skip" else f.status for f in obj.fields.values())
            rows.append(f"| {obj.name} | {'/'.join(obj.tables)} | {obj.mode} | {counts['accepted']} | "
                        f"{counts['proposed']} | {counts['rejected']} | {counts['skipped']} |")
    table = "| object | target | mode | accepted | proposed | rejected | skipped |\n|---|---|---|---|---|---|---|\n"
    confirmation = fmap.confirmation if fmap else None
    return MaterializeResult(metadata={
        "map": mapping.path,
        "gate_open": not problems,
        "confirmed_by": confirmation.by if confirmation else "",
        "confirmed_at": confirmation.at if confirmation else "",
        "objects": MetadataValue.md(table + "\n".join(rows)),
        "problems": MetadataValue.md(problems_markdown(problems) if problems else "none"),
    })


class ConfirmMappingConfig(Config):
    path: str = ConfigField(default="", description="map file; empty: the MappingResource's path")
    by: str = ConfigField(description="who reviewed and confirms the map")


@op(description="Validate the map, refuse fields still proposed, then write the confirmation into the file.")
def confirm_mapping_op(context: OpExecutionContext, config: ConfirmMappingConfig, mapping: MappingResource) -> str:
    path = config.path or mapping.path
    try:
        confirmation = confirm(path, config.by)
    except (MapInvalid, NotConfirmable) as e:
        raise Failure(description=str(e).splitlines()[0],
                      metadata={"problems": MetadataValue.md("\n".join(f"- {line}" for line in str(e).splitlines()[1:]))}
                      ) from None
    context.log.info(f"field map {path} confirmed by {confirmation.by} ({confirmation.hash})")
    return confirmation.hash


@job(description="Confirm the reviewed field map (config: path, by). Dataverse writes stay blocked until it is.")
def confirm_mapping() -> None:
    confirm_mapping_op()
