"""Running the jobs outside the UI (the CLI, the demo, the benchmarks), recorded in the same Dagster instance the UI
reads (``$DAGSTER_HOME``, default ``.dagster_home``), so ``make ui`` shows every run."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    Definitions,
    ExecuteInProcessResult,
)

from senseimig_dagster import settings
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.resources import StoreResource, store_from_env

# Dagster's per-event DEBUG lines off: a run's progress in INFO lines, failures in full.
INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
PHASE_TAG = "senseimig/phase"  # which step of the cutover a run was: inventory, confirm, migrate, delta, go_live, ...


def instance() -> DagsterInstance:
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def execute(defs: Definitions, job: str, *, run_config: dict[str, Any] | None = None,
            asset_selection: list | None = None, tags: dict[str, str] | None = None) -> ExecuteInProcessResult:
    """One job of ``defs`` in this process, in the shared instance; failures are in the result, not raised."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance(), raise_on_error=False, run_config={**INFO, **(run_config or {})},
        asset_selection=asset_selection, tags=tags)


class Launcher(Protocol):
    """Runs one job of the code location to its end and returns the run's id (its events are in the instance)."""

    def __call__(self, job: str, *, run_config: Mapping[str, Any] | None = None,
                 asset_selection: Sequence | None = None, tags: Mapping[str, str] | None = None) -> str: ...


def in_process(defs: Definitions) -> Launcher:
    """Jobs of ``defs`` in this process (tests, benchmarks, the headless CLI): recorded in the shared instance, but
    with no code-location origin (the cockpit launches through the webserver instead: ``cli/cockpit.py``)."""
    def launch(job: str, *, run_config: Mapping[str, Any] | None = None, asset_selection: Sequence | None = None,
               tags: Mapping[str, str] | None = None) -> str:
        return execute(defs, job, run_config=dict(run_config or {}), asset_selection=list(asset_selection or []) or None,
                       tags=dict(tags or {})).run_id
    return launch


@dataclass(frozen=True)
class RunOutcome:
    """A finished run as the instance recorded it, however it was launched."""

    run_id: str
    success: bool
    all_events: list[DagsterEvent]

    def get_asset_check_evaluations(self) -> list[AssetCheckEvaluation]:
        return [e.event_specific_data for e in self.all_events  # type: ignore[misc]
                if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]

    def asset_materializations_for_node(self, node: str) -> list[AssetMaterialization]:
        return [e.event_specific_data.materialization for e in self.all_events  # type: ignore[union-attr]
                if e.is_step_materialization and e.node_name == node]

    def output_metadata(self, node: str) -> dict[str, Any]:
        """The metadata of ``node``'s outputs, merged (what ``add_output_metadata`` attached)."""
        metadata: dict[str, Any] = {}
        for e in self.all_events:
            if e.is_successful_output and e.node_name == node:
                metadata.update(e.event_specific_data.metadata)  # type: ignore[union-attr]
        return metadata


def outcome(run_id: str) -> RunOutcome:
    """What the instance recorded of run ``run_id``."""
    shared = instance()
    run = shared.get_run_by_id(run_id)
    events = [entry.dagster_event for entry in shared.all_logs(run_id) if entry.dagster_event is not None]
    return RunOutcome(run_id, run is not None and run.status == DagsterRunStatus.SUCCESS, events)


def run_extract(defs: Definitions, start: dt.date | None, end: dt.date | None) -> bool:
    """Materialize raw assets over a range of modification days in one run, then the inventory."""
    extract = execute(defs, "extract", tags={**range_tags(start and start.isoformat(), end and end.isoformat()),
                                             PHASE_TAG: "inventory"})
    if not extract.success:
        print(f"extract failed (run {extract.run_id}); see the Dagster UI or the log above", file=sys.stderr)
        return False
    inventory = execute(defs, "take_inventory", tags={PHASE_TAG: "inventory"})
    checks = inventory.get_asset_check_evaluations()
    for check in checks:
        print(f"check {check.check_name}: {'passed' if check.passed else 'FAILED'}")
    return inventory.success and all(c.passed for c in checks)


def store(database: str | None = None) -> StoreResource:
    """The migration's store as the environment configures it (its key resolved, never printed)."""
    return store_from_env(database).process_config_and_initialize()


def print_inventory(database: str) -> None:
    with store(database).connect(read_only=True) as conn:
        print(conn.sql("SELECT * FROM inventory.record_counts ORDER BY object"))
        print(conn.sql("PIVOT (SELECT coalesce(location_name, location_id, '(none)') AS location, object, records "
                       "FROM inventory.location_counts) ON location USING sum(records) ORDER BY object"))


def run_rollback(defs: Definitions, *, remove_schema: bool = False, force: bool = False,
                 run_id: str | None = None) -> int:
    """The ``rollback`` job; prints its Markdown summary. Exit code 0 when it finished."""
    config = {"remove_schema": remove_schema, "force": force, "run_id": run_id}
    result = execute(defs, "rollback", run_config={"ops": {"rollback_op": {"config": config}}},
                     tags={PHASE_TAG: "rollback"})
    if result.success:
        print(result.output_for_node("rollback_op"))
        return 0
    print(f"rollback did not finish (run {result.run_id}); run it again (it resumes), or see the Dagster UI",
          file=sys.stderr)
    return 1
