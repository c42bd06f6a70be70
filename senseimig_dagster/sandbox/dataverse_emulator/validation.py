"""Validate a create/update body against table metadata, as Dataverse does on every write.

The bind *target's existence* is the store's job: this module returns the parsed binds.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from importlib import resources
from typing import Any, Literal

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import LOOKUP_TYPES, Catalog, Column, Table

Operation = Literal["create", "update"]

_EDM = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "EntityName": "Edm.String",
    "Image": "Edm.Binary",
    "Integer": "Edm.Int32",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Boolean": "Edm.Boolean",
    "Double": "Edm.Double",
    "Decimal": "Edm.Decimal",
    "Money": "Edm.Decimal",
    "DateTime": "Edm.DateTimeOffset",
    "Uniqueidentifier": "Edm.Guid",
}
# Bind values: "/accounts(<guid>)", "accounts(<guid>)", "/accounts(accountnumber='A1')" or several key pairs
# (L/webapi/create-entity-web-api, L/use-alternate-key-reference-record; docs show both with and without "/").
_BIND = re.compile(r"^/?(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<key>.+)\)$")
_KEY_PAIR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(?:'((?:[^']|'')*)'|([^,']+))(?:,|$)")


@dataclass(frozen=True)
class BindTarget:
    """Where a navigation property points: entity set plus either the primary key or alternate-key values."""

    entity_set: str
    table: str
    id: str | None = None
    alternate_key: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class NormalizedRecord:
    table: str
    operation: Operation
    values: dict[str, Any]  # column logical name -> value (lookups cleared with null appear here as None)
    binds: dict[str, BindTarget | None]  # navigation property -> target (None clears it)

    def lookup_attributes(self, table: Table) -> dict[str, BindTarget | None]:
        """Binds keyed by the lookup column they set."""
        return {table.lookups[nav].attribute: target for nav, target in self.binds.items()}


def _payload_error(table: Table, inner: str) -> DataverseError:
    # L/webapi/web-api-client-errors: payload faults are 400 0x80048d19 wrapping the OData exception text.
    return DataverseError(
        400,
        errors.PAYLOAD_ERROR,
        f"Error identified in Payload provided by the user for Entity :'{table.entity_set}'  ---->  "
        f"InnerException : Microsoft.OData.ODataException: {inner}",
    )


def _unknown_property(table: Table, name: str) -> DataverseError:
    # OData's message for an undeclared property in a request body; the Web API batch doc shows it
    # for 'subjct' on task (L/webapi/execute-batch-operations-using-web-api, older copy).
    return _payload_error(
        table,
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM."
        f"{table.logical_name}'. Make sure to only use property names that are defined by the type.",
    )


def _undeclared_nav(table: Table, name: str) -> DataverseError:
    # L/webapi/web-api-client-errors: "parentcustomerid@odata.bind" on contact gives exactly this.
    return _payload_error(
        table,
        f"An undeclared property '{name}' which only has property annotations in the "
        "payload but no property value was found in the payload. In OData, only declared "
        "navigation properties and declared named streams can be represented as properties "
        "without values.",
    )


def _not_valid_for(table: Table, column: Column, operation: Operation) -> DataverseError:
    # IsValidForCreate/IsValidForUpdate False (L/reference/entities/*). Code and text unverified: Dataverse
    # may silently ignore some of these (community reports); the emulator refuses so clients never rely on it.
    return DataverseError(
        400,
        errors.INVALID_ARGUMENT,
        f"The '{column.logical_name}' attribute of the '{table.logical_name}' entity is not valid "
        f"for {operation}.",
    )


def _convert_error(table: Table, value: Any, column: Column) -> DataverseError:
    edm = _EDM.get(column.type, "Edm.String")
    if column.type == "DateTime" and column.datetime_behavior == "DateOnly":
        edm = "Edm.Date"
    return _payload_error(table, f"Cannot convert the literal '{value}' to the expected type '{edm}'.")


def _check_value(table: Table, column: Column, value: Any) -> None:
    kind = column.type
    if value is None:
        return
    if kind in ("String", "Memo", "EntityName", "Image"):
        if not isinstance(value, str):
            raise _convert_error(table, value, column)
        if column.max_length is not None and len(value) > column.max_length:
            # Exact text of L/reference/web-service-error-codes (note the two spaces).
            raise DataverseError(
                400,
                errors.MAX_LENGTH_EXCEEDED,
                f"A validation error occurred.  The length of the '{column.logical_name}' attribute of the "
                f"'{table.logical_name}' entity exceeded the maximum allowed length of '{column.max_length}'.",
            )
    elif kind in ("Integer", "BigInt", "Picklist", "State", "Status"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _convert_error(table, value, column)
        if kind in ("Picklist", "State", "Status") and value not in column.options:
            # Text as in Microsoft's Project Operations troubleshooting page; code [community].
            accepted = ",".join(str(o) for o in column.options)
            raise DataverseError(
                400,
                errors.OPTION_OUT_OF_RANGE,
                f"A validation error occurred. The value {value} of '{column.logical_name}' on record "
                f"of type '{table.logical_name}' is outside the valid range. Accepted Values: {accepted}",
            )
        if (column.min is not None and value < column.min) or (column.max is not None and value > column.max):
            raise DataverseError(
                400,
                errors.INVALID_ARGUMENT,  # code unverified
                f"A validation error occurred. The value {value} of '{column.logical_name}' on record "
                f"of type '{table.logical_name}' is outside the valid range.",
            )
    elif kind == "Boolean":
        if not isinstance(value, bool):
            raise _convert_error(table, value, column)
    elif kind in ("Double", "Decimal", "Money"):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise _convert_error(table, value, column)
    elif kind == "DateTime":
        if not isinstance(value, str) or not _is_datetime(
            value, date_only=column.datetime_behavior == "DateOnly"
        ):
            raise _convert_error(table, value, column)
    elif kind == "Uniqueidentifier":
        if not isinstance(value, str) or not _is_guid(value):
            raise _convert_error(table, value, column)
    else:  # File and other types not settable through a record body
        raise _not_valid_for(table, column, "create or update through the record body")


def _is_guid(text: str) -> bool:
    try:
        return len(text) == 36 and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _is_datetime(text: str, *, date_only: bool) -> bool:
    # DateOnly behaviour is Edm.Date ("YYYY-MM-DD"); others are Edm.DateTimeOffset (ISO 8601 [memory]).
    try:
        if date_only:
            date.fromisoformat(text)
            return len(text) == 10
        return "T" in text and datetime.fromisoformat(text.replace("Z", "+00:00")) is not None
    except ValueError:
        return False


def parse_bind(catalog: Catalog, table: Table, nav: str, value: Any) -> BindTarget:
    """Parse an ``@odata.bind`` value and check its entity set is a target of the navigation property."""
    lookup = table.lookups[nav]
    text = value if isinstance(value, str) else ""
    text = re.sub(r"^https?://[^/]+/api/data/v9\.\d/", "", text)  # absolute URLs are accepted too
    match = _BIND.match(text)
    if match is None:
        raise DataverseError(
            400,
            errors.INVALID_ARGUMENT,  # code unverified
            f"The value '{value}' of '{nav}@odata.bind' is not a valid entity reference URL.",
        )
    target = catalog.table_by_entity_set(match["set"])
    if target is None or target.logical_name not in lookup.targets:
        raise DataverseError(
            400,
            errors.INVALID_ARGUMENT,  # code unverified
            f"The entity set '{match['set']}' is not a valid target of navigation property '{nav}'.",
        )
    key = match["key"]
    if _is_guid(key):
        return BindTarget(target.entity_set, target.logical_name, id=key.lower())
    pairs = _parse_key(key)
    if pairs is None:
        raise DataverseError(
            400,
            errors.INVALID_ARGUMENT,
            f"The value '{value}' of '{nav}@odata.bind' is not a valid entity reference URL.",
        )
    odata.reject_reserved_key_values(pairs)  # a bind by key fails on these as a GET by key does
    return BindTarget(target.entity_set, target.logical_name, alternate_key=pairs)


def _parse_key(text: str) -> tuple[tuple[str, str], ...] | None:
    pairs, pos = [], 0
    for m in _KEY_PAIR.finditer(text):
        if m.start() != pos:
            return None
        pairs.append((m[1], m[2].replace("''", "'") if m[2] is not None else m[3]))
        pos = m.end()
    return tuple(pairs) if pairs and pos == len(text) and not text.endswith(",") else None


def validate_write(
    catalog: Catalog, table: str, body: dict[str, Any], *, operation: Operation
) -> NormalizedRecord:
    """Check ``body`` the way Dataverse checks a POST (create) or PATCH (update); raise ``DataverseError``."""
    meta = catalog.table(table)
    values: dict[str, Any] = {}
    binds: dict[str, BindTarget | None] = {}
    for name, value in body.items():
        if name.startswith("@"):  # instance annotations such as @odata.type (bulk messages need it)
            continue
        if "@" in name:
            prop, annotation = name.split("@", 1)
            if annotation != "odata.bind":
                if prop not in body:
                    raise _undeclared_nav(meta, prop)
                continue
            lookup = meta.lookups.get(prop)  # exact match: custom navigation properties are case-sensitive
            if lookup is None:
                raise _undeclared_nav(meta, prop)
            column = meta.columns.get(lookup.attribute)
            if column is not None and not (
                column.valid_for_create if operation == "create" else column.valid_for_update
            ):
                raise _not_valid_for(meta, column, operation)
            binds[prop] = None if value is None else parse_bind(catalog, meta, prop, value)
            continue
        column = meta.columns.get(name)  # logical names are lower-case; "FirstName" is unknown
        if column is None:
            raise _unknown_property(meta, name)
        if not (column.valid_for_create if operation == "create" else column.valid_for_update):
            raise _not_valid_for(meta, column, operation)
        if column.type in LOOKUP_TYPES and value is not None:
            # A lookup is set through its navigation property; only null (clear) is accepted on the column.
            raise _payload_error(
                meta, f"Cannot set lookup '{name}' directly; use a navigation property with @odata.bind."
            )
        _check_value(meta, column, value)
        if column.precision is not None and column.type in ("Double", "Decimal") and isinstance(value, float):
            # Stored with the column's precision (Microsoft's create example: address1_latitude, Precision 5,
            # sent 47.639583, read back 47.63958).
            value = round(value, column.precision)
        values[name] = value
    return NormalizedRecord(meta.logical_name, operation, values, binds)


# -- state and status ----------------------------------------------------------------------------------------
INVALID_STATE_STATUS = "0x80048408"  # [community]; Microsoft's error list doesn't name it for this case
# Activity tables (IsActivity in the entity reference) whose Completed (1) and Canceled (2) states are read-only.
ACTIVITY_TABLES = frozenset({"appointment", "phonecall", "email"})
CLOSED_ACTIVITY_STATES = frozenset({1, 2})
# Code and text unverified: Microsoft's error list gives no code for "update of a closed activity" that we could find.
CLOSED_ACTIVITY = errors.INVALID_ARGUMENT
_STATE_COLUMNS = frozenset({"statecode", "statuscode"})


@dataclass(frozen=True)
class StateModel:
    """A table's state/status pairs: each status reason's state, each state's default status and label."""

    status_state: dict[int, int]
    default_status: dict[int, int]
    state_labels: dict[int, str]


# Custom tables get Active (0, status 1) and Inactive (1, status 2), as L/create-update-entity-definitions describes.
_CUSTOM_MODEL = StateModel({1: 0, 2: 1}, {0: 1, 1: 2}, {0: "Active", 1: "Inactive"})


@functools.cache
def _standard_models() -> dict[str, StateModel]:
    # The pairs are in standard_tables.json (statecode "states" with default_status; statuscode options with state);
    # the Catalog keeps only option values, so they are read from the file here.
    raw = json.loads(resources.files(__package__).joinpath("standard_tables.json").read_text("utf-8"))
    models = {}
    for name, table in raw.items():
        state, status = table["columns"].get("statecode"), table["columns"].get("statuscode")
        if not state or not status or not state.get("states"):
            continue
        models[name] = StateModel(
            {o["value"]: o["state"] for o in status.get("options") or () if o.get("state") is not None},
            {s["value"]: s["default_status"] for s in state["states"]},
            {s["value"]: s.get("invariant_name") or s["label"] for s in state["states"]})
    return models


def state_model(table: Table) -> StateModel | None:
    """The table's state/status pairs, or ``None`` when it has no statecode/statuscode columns."""
    if not table.columns.keys() >= _STATE_COLUMNS:
        return None
    return _standard_models().get(table.logical_name) or _CUSTOM_MODEL


def is_closed_activity(table: Table, values: dict[str, Any]) -> bool:
    return table.logical_name in ACTIVITY_TABLES and values.get("statecode") in CLOSED_ACTIVITY_STATES


def apply_state_rules(table: Table, changes: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """``changes`` with statecode/statuscode completed as Dataverse completes them; raises for a wrong pair and for
    any change to a completed or canceled activity other than re-opening it (``existing`` is ``None`` on create)."""
    model = state_model(table)
    if model is None:
        return changes
    if existing is not None and is_closed_activity(table, existing):
        new_state = changes.get("statecode")
        if new_state is None:
            new_state = model.status_state.get(changes.get("statuscode"))
        reopening = changes.keys() <= _STATE_COLUMNS and new_state not in (None, *CLOSED_ACTIVITY_STATES)
        if not reopening:
            # Re-opening (SetState back to Open) is allowed [memory: widely reported as the way to edit a closed
            # activity]; everything else is refused. Code and text unverified (see CLOSED_ACTIVITY).
            raise DataverseError(
                400, CLOSED_ACTIVITY,
                f"The {table.logical_name} with id {existing.get(table.primary_id)} is closed "
                f"({model.state_labels.get(existing['statecode'])}) and cannot be modified; re-open it first.")
    state, status = changes.get("statecode"), changes.get("statuscode")
    out = dict(changes)
    if state is None and status is None:
        if existing is None:  # a new record starts in state 0 with that state's default status
            out.update(statecode=0, statuscode=model.default_status.get(0, 1))
        return out
    if state is None:
        out["statecode"] = model.status_state.get(status, 0)  # statuscode alone implies its state
    elif status is None:
        out["statuscode"] = model.default_status.get(state)
    elif model.status_state.get(status) != state:
        # Text as Dataverse reports it for a custom table [community], with the state's invariant name.
        raise DataverseError(
            400, INVALID_STATE_STATUS,
            f"{status} is not a valid status code for state code {table.schema_name}State."
            f"{model.state_labels.get(state, state)} on {table.logical_name}.")
    return out


# -- owners --------------------------------------------------------------------------------------------------
OWNER_DISABLED = "0x8004022b"  # unManagedidsownernotenabled [doc]
USER_NOT_ENABLED = "0x80040225"  # unManagedidsusernotenabled [doc]
OWNER_ERROR_STATUS = 400  # HTTP status undocumented: 400 chosen, unverified


def check_owner(target_table: str, target: dict[str, Any]) -> None:
    """Refuse an owner that is a disabled user, or a user outside any business unit; teams may own records."""
    if target_table != "systemuser":
        return
    if target.get("isdisabled"):
        raise DataverseError(OWNER_ERROR_STATUS, OWNER_DISABLED, "The specified owner has been disabled.")
    if not target.get("businessunitid"):
        raise DataverseError(OWNER_ERROR_STATUS, USER_NOT_ENABLED,
                             "The specified user is either disabled or is not a member of any business unit.")


def check_location_urls(table: Table, changes: dict[str, Any], existing: dict[str, Any] | None) -> None:
    """A SharePoint document location has an absolute URL or a relative one under its parent, never both
    (community-reported text; code as reported)."""
    if table.logical_name != "sharepointdocumentlocation":
        return
    merged = {**(existing or {}), **changes}
    if merged.get("absoluteurl") and merged.get("relativeurl"):
        raise DataverseError(400, "0x80040203", "A document location cannot have both absoluteurl and relative url.")
