"""Running the jobs outside the UI (the CLI, the demo, the benchmarks), recorded in the same Dagster instance the UI
reads (``$DAGSTER_HOME``, default ``.dagster_home``), so ``make ui`` shows every run."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

from dagster import DagsterInstance, Definitions, ExecuteInProcessResult

from senseimig_dagster import settings
from senseimig_dagster.assets.partitions import range_tags
from senseimig_dagster.resources import StoreResource, store_from_env

# Dagster's per-event DEBUG lines off: a run's progress in INFO lines, failures in full.
INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


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


def run_extract(defs: Definitions, start: dt.date | None, end: dt.date | None) -> bool:
    """Materialize raw assets over a range of modification days in one run, then the inventory."""
    extract = execute(defs, "extract", tags=range_tags(start and start.isoformat(), end and end.isoformat()))
    if not extract.success:
        print(f"extract failed (run {extract.run_id}); see the Dagster UI or the log above", file=sys.stderr)
        return False
    inventory = execute(defs, "take_inventory")
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
    result = execute(defs, "rollback", run_config={"ops": {"rollback_op": {"config": config}}})
    if result.success:
        print(result.output_for_node("rollback_op"))
        return 0
    print(f"rollback did not finish (run {result.run_id}); run it again (it resumes), or see the Dagster UI",
          file=sys.stderr)
    return 1
