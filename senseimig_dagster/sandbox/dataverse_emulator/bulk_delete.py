"""The ``BulkDelete`` action (``POST /BulkDelete``): delete the records a ``QuerySet`` of ``QueryExpression`` selects
(what Microsoft's Python SDK sends to delete a list of ids). Answer: ``BulkDeleteResponse`` ``{"JobId"}``
(https://learn.microsoft.com/power-apps/developer/data-platform/webapi/reference/bulkdelete).

Dataverse runs a bulk deletion as a system job, later; the emulator runs it at once, before answering, so a client
that polls the job finds nothing left to wait for (no ``asyncoperation`` record is kept). Criteria: ``And`` of
``Equal``/``In`` conditions, which is what id lists need; anything else is refused rather than misread.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import odata

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

PATH = "/api/data/v9.2/BulkDelete"
JSON_TYPE = "application/json; odata.metadata=minimal"
_OPERATORS = ("Equal", "In")


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    if environ.get("PATH_INFO", "") != PATH:
        return None
    if environ.get("REQUEST_METHOD") != "POST":
        raise odata.bad_request("BulkDelete is an action: POST it.")
    body = odata.read_json(environ)
    queries = body.get("QuerySet") if isinstance(body, dict) else None
    if not isinstance(queries, list) or not queries:
        raise odata.bad_request("BulkDelete needs QuerySet, a non-empty array of QueryExpression.")
    doomed = [(table, rid) for query in queries for table, rid in _selected(app, query)]
    for table, rid in doomed:
        if app.store.retrieve(table, rid) is not None:  # two queries may select one record
            app.store.delete(table, rid)
    body = {"@odata.context": f"{app._base(environ)}/$metadata#Microsoft.Dynamics.CRM.BulkDeleteResponse",
            "JobId": str(uuid.uuid4())}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()


def _selected(app: DataverseEmulator, query: Any) -> list[tuple[str, str]]:
    if not isinstance(query, dict) or not isinstance(query.get("EntityName"), str):
        raise odata.bad_request("Each QueryExpression needs EntityName.")
    table = app.catalog.definition(query["EntityName"])
    criteria = query.get("Criteria") or {}
    if criteria.get("FilterOperator", "And") != "And" or criteria.get("Filters"):
        raise odata.bad_request("The emulator's BulkDelete takes an And of conditions only.")
    filters: list[tuple[str, Any]] = []
    for condition in criteria.get("Conditions") or ():
        column, operator = condition.get("AttributeName"), condition.get("Operator")
        if column not in table.columns or operator not in _OPERATORS:
            raise odata.bad_request(f"The emulator's BulkDelete takes Equal/In conditions on columns of "
                                    f"'{table.logical_name}'.")
        values = tuple(v.get("Value") if isinstance(v, dict) else v for v in condition.get("Values") or ())
        filters.append((column, odata.AnyOf(values) if operator == "In" else values[0]))
    if not filters:
        raise odata.bad_request("The emulator's BulkDelete needs at least one condition (it never deletes a table).")
    return [(table.logical_name, r.id) for r in app.store.query(table.logical_name, filters)]
