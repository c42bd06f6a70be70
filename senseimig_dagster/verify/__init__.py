"""Verification of the load (issue 6 §3-4): counts, field-by-field read-back, conservation, ledger reconciliation.

API for the writers (``assets/dataverse_load.py``)
--------------------------------------------------
* ``checks_for(object_name) -> list[AssetChecksDefinition]``: the blocking checks of ``dataverse/<object_name>``
  as one multi-asset check (resources ``store``, ``dataverse``, ``mapping``). It reads the staged frame
  (``staging.<object>``), the run's load-ledger slice (``load.ledger`` rows of this run and object), owners
  (``staging.owners``) and staging's conservation counts (the staging asset's ``conservation`` metadata), then
  yields :func:`check_results`. Add the list to ``Definitions(asset_checks=...)``.
* In-process alternative, for a writer that checks inside its own step: declare ``check_specs(key, object_name)``
  on the asset and yield ``check_results(key, object_name, staged, VerifyInputs(client, fmap, catalog,
  entity_sets, owners=..., staging_counts=..., csv_dir=..., run_id=...), load_ledger=slice)``. One
  ``VerifyInputs`` per run: its :class:`~.counts.DataverseIndex` pages each table's source ids once.

The checks (``checks.py``; pure parts in ``counts.py``, ``fields.py``, ``ledger.py``):

* ``dataverse_counts``: staged rows vs rows present in Dataverse, by paging ``smig_sourcesystemid`` (never
  ``$count``, capped at 5000); fails naming the missing source ids.
* ``dataverse_fields``: every mapped column read back and compared (``mapping.sample.field_diff``), lookups
  through the parent's alternate key; every row up to ``FULL_LIMIT`` rows, else a seeded sample of
  ``sample_size()`` = 4603 rows (99% confidence of a < 0.1% defect rate). Fails naming source id + column; the
  values (PHI) go to ``verify_<object>_<run>.csv`` next to the DuckDB file only.
* ``dataverse_conservation``: extracted = in Dataverse + merged + collapsed + quarantined + not written.
* ``ledger_reconciliation`` (``ledger.py``, on ``go_live_ready``, ``assets/go_live.py``): Pandera-checked totals
  per location and entry type, Sensei vs Dataverse, within 0.01%; one automatic repair of the ledger rows that
  differ, then go-live is blocked with the Markdown table if it still fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from senseimig_dagster.verify.checks import (
    CHECK_NAMES,
    CONSERVATION,
    COUNTS,
    FIELDS,
    VerifyInputs,
    check_results,
    check_specs,
    staging_counts_from_instance,
)
from senseimig_dagster.verify.fields import sample_size

if TYPE_CHECKING:
    from dagster import AssetChecksDefinition


def checks_for(object_name: str) -> list[AssetChecksDefinition]:
    """The blocking verification checks of ``dataverse/<object_name>`` (see the module docstring)."""
    from senseimig_dagster.verify.dagster_checks import build_object_checks

    return [build_object_checks(object_name)]


__all__ = ["CHECK_NAMES", "CONSERVATION", "COUNTS", "FIELDS", "VerifyInputs", "check_results", "check_specs",
           "checks_for", "sample_size", "staging_counts_from_instance"]
