"""A finished record's Dataverse state (``statecode``/``statuscode``), from the registry's ``closing`` declaration;
the writer sends it after the record's columns (a completed or cancelled activity is read-only).

* On a custom table (state Active 0/1, Inactive 1/2), a row whose Sensei value is in ``closed`` becomes Inactive
  (1, 2); the text value itself stays in its column. Other rows keep their state.
* An activity completes (1) or, when its value is in ``failed``, is cancelled (2), with the status Microsoft's
  metadata gives its table and direction (:data:`ACTIVITY_STATUS`). A row without a value keeps its state.

The value comes from the staged column when the map writes the field, else from the raw table (the map may skip it
so that only the load closes records): :func:`status_source` says which.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from senseimig_dagster.dataverse.standard_tables import is_activity
from senseimig_dagster.load.frames import SOURCE_ID, TABLE
from senseimig_dagster.mapping.model import ObjectMap
from senseimig_dagster.objects import get

STATUS = "_closing_value"
# statuscode per activity table: (completed outbound, completed inbound, cancelled). Phone calls: Made 2, Received 4,
# Canceled 3; e-mails: Sent 3, Received 4, Canceled 5 (Microsoft's phonecall and email metadata).
ACTIVITY_STATUS = {"phonecall": (2, 4, 3), "email": (3, 4, 5)}


def status_source(name: str, om: ObjectMap) -> str | None:
    """The staged column holding the closing field's value, or None when the map does not write it (the writer
    then reads the raw table) or the object declares no closing."""
    closing = get(name).closing
    fm = om.fields.get(closing.field) if closing else None
    return fm.targets[0] if fm is not None and fm.written and fm.transform == "direct" and fm.targets else None


def closing_state(name: str, frame: pl.DataFrame, tables: Sequence[str], status: pl.DataFrame | None) -> pl.DataFrame:
    """``frame`` with ``statecode``/``statuscode`` for the rows the declaration closes; ``status``: ``_source_id``
    and ``status`` (the Sensei value). Unchanged when the object declares no closing or no status is known."""
    closing = get(name).closing
    if closing is None or status is None or frame.is_empty():
        return frame
    values = status.select(pl.col(SOURCE_ID).cast(pl.String), pl.col("status").cast(pl.String).alias(STATUS))
    out = frame.with_columns(pl.col(SOURCE_ID).cast(pl.String)).join(values, on=SOURCE_ID, how="left",
                                                                     maintain_order="left")
    table = pl.col(TABLE) if TABLE in out.columns else pl.lit(tables[0])
    value = pl.col(STATUS)
    known, failed = value.is_not_null(), value.is_in(list(closing.failed))
    outbound = pl.col("directioncode").fill_null(True) if "directioncode" in out.columns else pl.lit(True)
    activities = sorted({t for t in tables if is_activity(t)})
    state, code = pl.lit(None, pl.Int64), pl.lit(None, pl.Int64)
    for activity in activities:
        made, received, cancelled = ACTIVITY_STATUS[activity]
        here = (table == activity) & known
        state = pl.when(here).then(pl.when(failed).then(2).otherwise(1)).otherwise(state)
        code = pl.when(here).then(pl.when(failed).then(cancelled).when(outbound).then(made).otherwise(received)
                                  ).otherwise(code)
    closed = ~table.is_in(activities) & value.is_in(list(closing.closed))
    state = pl.when(closed).then(1).otherwise(state)
    code = pl.when(closed).then(2).otherwise(code)
    return out.with_columns(state.alias("statecode"), code.alias("statuscode")).drop(STATUS)
