"""Activity parties of the emulator: who sent and who received a phone call or e-mail.

Documented [doc]:
- Deep insert: ``POST /phonecalls`` with ``"phonecall_activity_parties": [{"partyid_contact@odata.bind":
  "/contacts(<id>)", "participationtypemask": 2}, ...]`` creates the activity and its parties in one operation
  (L/webapi/create-entity-web-api "Create related table rows in one operation").
- Replace: ``PUT /emails(<id>)/email_activity_parties`` with ``{"value": [...]}`` -> 204, "possible only with
  activityparty" (L/webapi/associate-disassociate-entities-using-web-api). The emulator replaces *all* parties of the
  activity (OData PUT on a collection; unverified).
- Read: ``activityparties`` supports RetrieveMultiple only (L/webapi/reference/activityparty), e.g.
  ``GET /activityparties?$filter=_activityid_value eq <id>``; also ``GET /phonecalls(<id>)/phonecall_activity_parties``.
- Party types per activity (L/activityparty-entity): phone call Sender 1 / To 2; e-mail 1-4; appointment 5-7.
- Deleting an activity deletes its parties (``activitypointer_activity_parties`` cascades Delete, standard_tables.json).

Stricter than documented, so a client never relies on it (codes and texts unverified): the collection inside a
PATCH (update or upsert) or inside a bulk message's ``Targets`` (neither documented); ``POST``/``PATCH``/``DELETE``
on ``activityparties`` (text after "The 'Create' method does not support entities of type 'activityparty'",
community-reported); a mask the activity doesn't take; a party of a completed or canceled activity (those are
read-only). A disabled user may be a party (only owners must be enabled; [memory]).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.validation import (
    CLOSED_ACTIVITY,
    is_closed_activity,
    parse_bind,
)

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response
    from senseimig_dagster.sandbox.dataverse_emulator.metadata import Table
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore, StoredRecord

TABLE = "activityparty"
BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist, as store.not_found
# L/activityparty-entity "Activity Party types available for each activity".
MASKS: dict[str, frozenset[int]] = {
    "appointment": frozenset({5, 6, 7}), "recurringappointmentmaster": frozenset({5, 6, 7}),
    "email": frozenset({1, 2, 3, 4}), "phonecall": frozenset({1, 2}), "fax": frozenset({1, 2}),
    "letter": frozenset({1, 2, 4}),
}
_PARTY_KEYS = frozenset({"participationtypemask", "addressused"})
_COLLECTION = re.compile(rf"^{re.escape(BASE_PATH)}/(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<key>[^)]*)\)"
                         r"/(?P<nav>[A-Za-z_]+_activity_parties)$")


def navigation(table: str) -> str:
    """The activity's collection-valued navigation property to its parties (``<table>_activity_parties``)."""
    return f"{table}_activity_parties"


def _invalid(message: str) -> DataverseError:
    return DataverseError(400, errors.INVALID_ARGUMENT, message)  # code unverified


# -- hooks of the store and of bulk.py ---------------------------------------------------------------------------
def take(table: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Any] | None]:
    """A create body without its deep-inserted parties, and the parties (``None`` when it has none)."""
    nav = navigation(table)
    if table not in MASKS or nav not in body:
        return body, None
    parties = body[nav]
    if not isinstance(parties, list):
        raise _invalid(f"The value of '{nav}' must be an array of activityparty records.")
    return {k: v for k, v in body.items() if k != nav}, parties


def refuse_nested(table: str, body: dict[str, Any], operation: str) -> None:
    """400 when a PATCH or a bulk target carries the parties collection (undocumented: refused, unverified)."""
    if table in MASKS and navigation(table) in body:
        raise _invalid(f"The navigation property '{navigation(table)}' can't be set by {operation}: create the "
                       f"{table} with POST, or PUT {navigation(table)} of the existing record.")


def insert(store: RecordStore, activity: StoredRecord, parties: list[Any] | None) -> None:
    """Create ``parties`` of ``activity`` (inside the caller's transaction: a bad party fails the whole write)."""
    for party in parties or ():
        values = _validate(store, activity.table, party)
        store.put_system_record(TABLE, {"activitypartyid": str(uuid.uuid4()), "activityid": activity.id,
                                        "ispartydeleted": False, **values})


def _validate(store: RecordStore, activity_table: str, party: Any) -> dict[str, Any]:
    if not isinstance(party, dict):
        raise _invalid("An activity party must be a JSON object.")
    meta = store.catalog.table(TABLE)
    values: dict[str, Any] = {}
    binds = [k for k in party if k.endswith("@odata.bind")]
    for name in party:
        if name not in _PARTY_KEYS and name not in binds and not name.startswith("@"):
            raise _invalid(f"The property '{name}' can't be set on an activity party here.")
    if len(binds) > 1 or any(not b.startswith("partyid_") for b in binds):
        raise _invalid("An activity party takes one partyid_<table>@odata.bind.")
    mask = party.get("participationtypemask")
    if not isinstance(mask, int) or isinstance(mask, bool) or mask not in MASKS[activity_table]:
        allowed = ",".join(str(m) for m in sorted(MASKS[activity_table]))
        raise _invalid(f"The participation type mask {mask} is not valid for {activity_table}. "
                       f"Accepted Values: {allowed}")
    values["participationtypemask"] = mask
    if isinstance(party.get("addressused"), str):
        values["addressused"] = party["addressused"]
    if binds:
        nav = binds[0][: -len("@odata.bind")]
        if nav not in meta.lookups:
            raise _invalid(f"An undeclared property '{nav}' which only has property annotations in the payload "
                           "but no property value was found in the payload.")
        target = parse_bind(store.catalog, meta, nav, party[binds[0]])
        _check_target(store, activity_table, mask, target.table)
        found = (store.retrieve(target.table, target.id) if target.id is not None
                 else store.find_by_key(target.table, dict(target.alternate_key or ())))
        if found is None:
            raise DataverseError(404, NOT_FOUND, f"{target.table} With Id = {target.id or 'key'} Does Not Exist")
        values["partyid"] = found.id
        values["partyobjecttypecode"] = target.table  # EntityName, SystemRequired: the party's table [metadata]
    elif "addressused" not in values:
        raise _invalid("An activity party needs a partyid bind or an addressused.")
    return values


# The PartyList column each mask fills (L/activityparty-entity): its Targets in Microsoft's published metadata say
# which tables may take that role, e.g. an e-mail's ``from`` only queue and systemuser (standard_tables.json).
ROLE_COLUMNS = {1: "from", 2: "to", 3: "cc", 4: "bcc", 5: "requiredattendees", 6: "optionalattendees",
                7: "organizer"}


def _check_target(store: RecordStore, activity_table: str, mask: int, party_table: str) -> None:
    column = store.catalog.table(activity_table).columns.get(ROLE_COLUMNS.get(mask, ""))
    if column is not None and column.targets and party_table not in column.targets:
        # Code and text unverified; Dataverse refuses a party of a table the PartyList doesn't target.
        raise _invalid(f"The party of type {party_table} is not valid for the '{column.logical_name}' field of "
                       f"{activity_table}. Accepted entities: {', '.join(column.targets)}")


# A partial expression index (created by the store) keeps the cascade cheap when a rollback deletes many activities.
INDEX_SQL = ("CREATE INDEX IF NOT EXISTS activityparty_by_activity ON records (json_extract(data, '$.activityid')) "
             "WHERE tbl = 'activityparty'")
_DELETE_SQL = "DELETE FROM records WHERE tbl = 'activityparty' AND json_extract(data, '$.activityid') = ?"


def delete_for(store: RecordStore, activity_id: str) -> None:
    """The cascade: every party of the activity (the caller holds the store's lock and transaction)."""
    with store.transaction():
        store._conn.execute(_DELETE_SQL, (activity_id,))


# -- HTTP routes --------------------------------------------------------------------------------------------------
def route(app: DataverseEmulator, environ: dict) -> Response | None:
    """Writes to ``activityparties`` (refused), and GET/PUT of ``<activities>(<id>)/<table>_activity_parties``."""
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
    resource = path[len(BASE_PATH):]
    if resource.startswith(f"/{app.catalog.table(TABLE).entity_set}"):
        if method != "GET":
            verb = {"POST": "Create", "PATCH": "Update", "DELETE": "Delete"}.get(method, method)
            raise _invalid(f"The '{verb}' method does not support entities of type 'activityparty'.")
        if odata.parse_resource(resource).addresses_record:  # RetrieveMultiple only (L/webapi/reference)
            raise _invalid("The 'Retrieve' method does not support entities of type 'activityparty'.")
        return None
    match = _COLLECTION.match(path)
    if match is None:
        return None
    table = app.catalog.table_by_entity_set(match["set"])
    if table is None or match["nav"] != navigation(table.logical_name) or table.logical_name not in MASKS:
        return None
    activity = _locate(app, table, match["key"])
    if method == "GET":
        return _list(app, environ, activity)
    if method != "PUT":
        raise DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
    body = odata.read_json(environ)
    if not isinstance(body.get("value"), list):
        raise _invalid("The request body must be {\"value\": [ ...activity parties... ]}.")
    _replace(app.store, table, activity, body["value"])
    return 204, [], b""


def _locate(app: DataverseEmulator, table: Table, key: str) -> StoredRecord:
    resource = odata.parse_resource(f"/{table.entity_set}({key})")
    found = app._locate(table, resource)
    if found is None:
        raise DataverseError(404, NOT_FOUND, f"{table.logical_name} With Id = {resource.id or key} Does Not Exist")
    return found


def _replace(store: RecordStore, table: Table, activity: StoredRecord, parties: list[Any]) -> None:
    with store.transaction():
        current = store.retrieve(table.logical_name, activity.id)
        if current is None:
            raise DataverseError(404, NOT_FOUND, f"{table.logical_name} With Id = {activity.id} Does Not Exist")
        if is_closed_activity(table, current.values):
            # A completed or canceled activity is read-only, its parties too. Code and text unverified.
            raise DataverseError(400, CLOSED_ACTIVITY, f"This {table.logical_name} is closed and can't be changed.")
        delete_for(store, current.id)
        insert(store, current, parties)
        store.update(table.logical_name, current.id, {}, if_match="*")  # the activity's version moves [memory]


def _list(app: DataverseEmulator, environ: dict, activity: StoredRecord) -> Response:
    meta = app.catalog.table(TABLE)
    rows = app.store.query(TABLE, [("activityid", activity.id)], [], offset=0, limit=odata.MAX_PAGE_SIZE)
    body = {"@odata.context": f"{app._base(environ)}/$metadata#{meta.entity_set}",
            "value": [app._shape(environ, meta, r, None) for r in rows]}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()

