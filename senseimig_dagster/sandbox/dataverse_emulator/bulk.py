"""Bulk messages of the emulator: ``POST <entityset>/Microsoft.Dynamics.CRM.CreateMultiple|UpdateMultiple|
UpsertMultiple`` with ``{"Targets":[...]}`` (Microsoft's "Use bulk operation messages"), and the one
``sdkmessagefilters`` query a client uses to learn which tables support them.

Standard tables only: the whole request runs in one :meth:`RecordStore.transaction`, so one failing target fails the
request with that target's error and writes nothing. ``DataverseEmulator(bulk_unsupported={...})`` turns the
messages off per table (logical names), for both the actions and the ``sdkmessagefilters`` answer.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from senseimig_dagster.sandbox.dataverse_emulator import activity_parties, errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Table
from senseimig_dagster.sandbox.dataverse_emulator.store import not_found

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
MESSAGES = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")  # on standard tables
DELETE_MULTIPLE = "DeleteMultiple"  # elastic tables only
TYPE_PREFIX = "Microsoft.Dynamics.CRM."
_ACTION = re.compile(rf"^{re.escape(BASE_PATH)}/([A-Za-z_][A-Za-z0-9_]*)/Microsoft\.Dynamics\.CRM\.([A-Za-z]+)$")
_FILTERS_PATH = f"{BASE_PATH}/sdkmessagefilters"
_FILTER_QUERY = re.compile(r"^\s*sdkmessageid/name\s+eq\s+'([A-Za-z]+)'\s+and\s+primaryobjecttypecode\s+eq\s+"
                           r"'([A-Za-z0-9_]+)'\s*$")
_FILTER_NS = uuid.UUID("6f1c1b7e-3c39-4c8e-9a53-5d0b8f0e2a11")  # stable sdkmessagefilterid per (message, table)
_BODY = "senseimig.bulk.body"  # environ key: the parsed request body, read once (admission and handler)


def action(environ: dict) -> tuple[str, str] | None:
    """``(entity_set, message)`` when the path names a bulk message (or any bound action of that form)."""
    match = _ACTION.match(environ.get("PATH_INFO", ""))
    if match is None or match[2] not in (*MESSAGES, DELETE_MULTIPLE):
        return None
    return match[1], match[2]


def count_targets(environ: dict) -> int:
    """How many records the bulk request carries (service protection counts it as one request of that many
    records); 1 when it isn't a bulk POST or its body is unreadable (the handler answers that)."""
    if action(environ) is None or environ.get("REQUEST_METHOD") != "POST":
        return 1
    try:
        targets = _body(environ).get("Targets")
    except DataverseError:
        return 1
    return max(1, len(targets)) if isinstance(targets, list) else 1


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    """The response when the request is a bulk message or the ``sdkmessagefilters`` support query, else ``None``."""
    method = environ.get("REQUEST_METHOD", "GET")
    found = action(environ)
    if found is not None:
        if method != "POST":
            raise DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
        return _run(app, environ, *found)
    if method == "GET" and environ.get("PATH_INFO", "").rstrip("/") == _FILTERS_PATH:
        return _message_filters(app, environ)
    return None


def supports(app: DataverseEmulator, message: str, logical_name: str) -> bool:
    """Whether ``message`` is available on the table (every emulated table is a standard one)."""
    return (message in MESSAGES and logical_name in app.catalog.tables
            and logical_name not in app.bulk_unsupported)


# -- sdkmessagefilters -----------------------------------------------------------------------------------------
def _message_filters(app: DataverseEmulator, environ: dict) -> Response | None:
    params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
    match = _FILTER_QUERY.match(odata.resolve_aliases(params.get("$filter"), params))
    if match is None or params.get("$select", "sdkmessagefilterid") != "sdkmessagefilterid":
        return None  # only this query shape is emulated here; anything else goes to the generic list
    message, logical_name = match[1], match[2]
    rows = []
    if supports(app, message, logical_name):
        rows.append({"@odata.etag": 'W/"1"',  # every row read carries an ETag; this one never changes
                     "sdkmessagefilterid": str(uuid.uuid5(_FILTER_NS, f"{message}/{logical_name}"))})
    body = {"@odata.context": f"{app._base(environ)}/$metadata#sdkmessagefilters(sdkmessagefilterid)",
            "value": rows}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()


# -- the messages ------------------------------------------------------------------------------------------------
def _run(app: DataverseEmulator, environ: dict, entity_set: str, message: str) -> Response:
    table = app.catalog.table_by_entity_set(entity_set)
    if table is None:
        # Same answer as the app's for an unknown entity set; code unverified.
        raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{entity_set}'.")
    if message == DELETE_MULTIPLE:
        # Microsoft documents the text on a standard table; status and code unverified.
        raise DataverseError(400, errors.INVALID_ARGUMENT, "DeleteMultiple has not yet been implemented.")
    if not supports(app, message, table.logical_name):
        # UNVERIFIED: text after the community-observed "The 'Create' method does not support entities of type
        # 'activityparty'"; status 400 and code are guesses.
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             f"The '{message}' method does not support entities of type '{table.logical_name}'.")
    targets = _targets(environ, table)
    if message == "CreateMultiple":
        with app.store.transaction():
            ids = [app.store.create(table.logical_name, body).id for body, _ in targets]
        body = {"@odata.context": f"{app._base(environ)}/$metadata#{TYPE_PREFIX}CreateMultipleResponse", "Ids": ids}
        return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()
    with app.store.transaction():
        for body, odata_id in targets:
            if message == "UpdateMultiple":
                _update(app, table, body)
            else:
                _upsert(app, table, body, odata_id)
    return 204, [], b""  # L/webapi/reference/upsertmultiple: 204, no UpsertMultipleResponse


def _update(app: DataverseEmulator, table: Table, body: dict[str, Any]) -> None:
    record_id = body.pop(table.primary_id, None)
    if not isinstance(record_id, str) or not odata.is_guid(record_id.lower()):
        # Documented: each target has its primary key. Code and text unverified.
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             f"UpdateMultiple requires the primary key '{table.primary_id}' on every target.")
    app.store.update(table.logical_name, record_id, body, if_match="*")


def _upsert(app: DataverseEmulator, table: Table, body: dict[str, Any], odata_id: str | None) -> None:
    if odata_id is not None:
        resource = odata.parse_resource("/" + odata_id.rsplit("/", 1)[-1])
        if resource.entity_set != table.entity_set or not resource.addresses_record or resource.count:
            # Code and text unverified.
            raise odata.bad_request(f"The '@odata.id' value '{odata_id}' does not address a {table.logical_name} "
                                    f"record of '{table.entity_set}'.")
        if resource.key is not None:
            pairs = dict(resource.key)
            app.store.key_for(table.logical_name, list(pairs))
            app.store.upsert(table.logical_name, body, key=pairs)
        else:
            app.store.upsert(table.logical_name, body, id=resource.id)
        return
    record_id = body.get(table.primary_id)
    if record_id is None:
        app.store.create(table.logical_name, body)  # documented: no key means create
        return
    if not isinstance(record_id, str) or not odata.is_guid(record_id.lower()):
        raise not_found(table.logical_name, str(record_id))
    rest = {k: v for k, v in body.items() if k != table.primary_id}
    app.store.upsert(table.logical_name, rest, id=record_id.lower())


def _targets(environ: dict, table: Table) -> list[tuple[dict[str, Any], str | None]]:
    """Each target without its ``@odata.type``/``@odata.id`` annotations, with its ``@odata.id``; 400 when
    ``Targets`` is missing or a target lacks the table's ``@odata.type``."""
    targets = _body(environ).get("Targets")
    if not isinstance(targets, list) or not targets:
        # Code and text unverified.
        raise odata.bad_request("The 'Targets' parameter must be a non-empty array of records.")
    expected = TYPE_PREFIX + table.logical_name
    out = []
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            raise odata.bad_request(f"Targets[{index}] is not a record.")  # unverified
        odata_type = target.get("@odata.type")
        if odata_type != expected:
            # L/webapi/reference/upsertmultiple: @odata.type is required on every target.
            # Dataverse's code and text for a missing or wrong one are unverified.
            raise odata.bad_request(
                f"Targets[{index}]: the '@odata.type' annotation must be '{expected}'"
                + (f", not '{odata_type}'." if odata_type is not None else " and is missing."))
        odata_id = target.get("@odata.id")
        body = {k: v for k, v in target.items() if k not in ("@odata.type", "@odata.id")}
        activity_parties.refuse_nested(table.logical_name, body, "a bulk message")  # undocumented: refused
        out.append((body, odata_id if isinstance(odata_id, str) else None))
    return out


def _body(environ: dict) -> dict[str, Any]:
    if _BODY not in environ:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        environ[_BODY] = body
    body = environ[_BODY]
    if not isinstance(body, dict):
        raise odata.bad_request("The request body must be a JSON object.")
    return body
