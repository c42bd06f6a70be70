"""Schema reads and writes through the Dataverse metadata API, for the schema-setup
asset: tables, columns, 1:N lookups, alternate keys and column security, each inside a solution.

Wire rules followed (L/webapi/create-update-entity-definitions-using-web-api, .../create-update-column-definitions-
using-web-api, .../create-update-entity-relationships-using-web-api, L/define-alternate-keys-entity):

* Creates are ``POST`` with ``MSCRM.SolutionUniqueName: <solution>`` and answer 204 + ``OData-EntityId``.
* Definitions are changed by ``PUT`` of the whole definition (never PATCH), with ``MSCRM.MergeLabels: true`` so
  labels in other languages survive.
* A table is looked up with ``$filter=LogicalName eq 'x'`` (empty ``value`` when absent, as Microsoft's Python SDK
  does); other metadata reads by name retry a 404 five times from 0.4 s doubling, as the SDK does
  (``_request_metadata_with_retry``), because a definition just created may not have propagated yet.
* A new column is usable in data calls only after a lag: :meth:`DataverseMetadata.wait_for_column` probes
  ``GET /<set>?$top=1&$select=<col>`` like the SDK's ``_wait_for_attribute_visibility`` (0, 3, 10, 20 s).
* A new key's index is built asynchronously: :meth:`DataverseMetadata.wait_for_key` polls ``EntityKeyIndexStatus``
  until ``Active`` (``Failed`` raises).

Errors are :class:`~.errors.DataverseError` and carry names only (tables, columns, keys), never record values.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.dataverse.errors import DataverseError, DataverseNotFound
from senseimig_dagster.dataverse.standard_tables import standard_entity_sets

NS = "Microsoft.Dynamics.CRM."
LANGUAGE = 1033
METADATA_RETRIES, METADATA_BACKOFF = 5, 0.4  # attempts and first wait of the SDK's metadata 404 retry [ms-code]
COLUMN_PROBE_DELAYS = (0.0, 3.0, 10.0, 20.0)  # the SDK's visibility probe schedule [ms-code]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARALLEL_READS = 8  # table definitions read at once (every writer step and check asks for all of them)
_GUID = re.compile(r"\(([0-9a-fA-F-]{36})\)/?$")


# -- attribute bodies (the metadata API's attribute types) -----------------------------------------------------------
def label(text: str) -> dict[str, Any]:
    """A ``Label`` with one LocalizedLabel (only ``LocalizedLabels`` is settable)."""
    return {"@odata.type": f"{NS}Label",
            "LocalizedLabels": [{"@odata.type": f"{NS}LocalizedLabel", "Label": text, "LanguageCode": LANGUAGE}]}


def required_level(level: str = "None") -> dict[str, Any]:
    if level not in ("None", "Recommended", "ApplicationRequired"):
        raise ValueError(f"invalid required level {level!r}")
    return {"Value": level, "CanBeChanged": True, "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"}


def _attribute(kind: str, schema: str, display: str, required: str, **extra: Any) -> dict[str, Any]:
    _check_name(schema)
    return {"@odata.type": f"{NS}{kind}AttributeMetadata", "AttributeType": kind,
            "AttributeTypeName": {"Value": f"{kind}Type"}, "SchemaName": schema, "DisplayName": label(display),
            "RequiredLevel": required_level(required), **extra}


def string_attribute(schema: str, max_length: int, display: str, *, required: str = "None",
                     format_name: str = "Text") -> dict[str, Any]:
    """Text (``format_name`` Text, Email, Phone or Url), 1..4000 characters."""
    return _attribute("String", schema, display, required, MaxLength=max_length, FormatName={"Value": format_name})


def memo_attribute(schema: str, max_length: int, display: str, *, required: str = "None") -> dict[str, Any]:
    return _attribute("Memo", schema, display, required, MaxLength=max_length, Format="TextArea")


def datetime_attribute(schema: str, display: str, *, date_only: bool = False, behavior: str | None = None,
                       required: str = "None") -> dict[str, Any]:
    """``date_only`` sets Format DateOnly; ``behavior`` (UserLocal, DateOnly, TimeZoneIndependent) the
    DateTimeBehavior, which decides the wire type (DateOnly behaviour is ``YYYY-MM-DD``)."""
    body = _attribute("DateTime", schema, display, required, Format="DateOnly" if date_only else "DateAndTime")
    if behavior is not None:
        body["DateTimeBehavior"] = {"Value": behavior}
    return body


def money_attribute(schema: str, display: str, *, precision_source: int = 2, required: str = "None") -> dict[str, Any]:
    """Currency; ``precision_source`` 2 = the currency's precision."""
    return _attribute("Money", schema, display, required, PrecisionSource=precision_source)


def decimal_attribute(schema: str, display: str, *, precision: int = 2, min_value: float = -100_000_000_000,
                      max_value: float = 100_000_000_000, required: str = "None") -> dict[str, Any]:
    """Defaults are DecimalAttributeMetadata's full range [memory]."""
    return _attribute("Decimal", schema, display, required, Precision=precision, MinValue=min_value,
                      MaxValue=max_value)


def integer_attribute(schema: str, display: str, *, min_value: int = -2_147_483_648, max_value: int = 2_147_483_647,
                      required: str = "None") -> dict[str, Any]:
    return _attribute("Integer", schema, display, required, MinValue=min_value, MaxValue=max_value, Format="None")


def boolean_attribute(schema: str, display: str, *, default: bool = False, true_label: str = "Yes",
                      false_label: str = "No", required: str = "None") -> dict[str, Any]:
    option_set = {"TrueOption": {"Value": 1, "Label": label(true_label)},
                  "FalseOption": {"Value": 0, "Label": label(false_label)}, "OptionSetType": "Boolean"}
    return _attribute("Boolean", schema, display, required, DefaultValue=default, OptionSet=option_set)


def picklist_attribute(schema: str, display: str, options: Mapping[int, str], *,
                       required: str = "None") -> dict[str, Any]:
    """A local choice; option values as given (custom values start at the publisher's option-value prefix × 10000)."""
    if not options:
        raise ValueError("a picklist needs at least one option")
    option_set = {"@odata.type": f"{NS}OptionSetMetadata", "IsGlobal": False, "OptionSetType": "Picklist",
                  "Options": [{"Value": value, "Label": label(text)} for value, text in options.items()]}
    return _attribute("Picklist", schema, display, required, OptionSet=option_set)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid metadata name {name!r}")
    return name


def _quoted(name: str) -> str:
    return f"'{_check_name(name)}'"


class DataverseMetadata:
    """Metadata operations over a :class:`~.client.DataverseClient` (its auth, retries and throttling)."""

    def __init__(self, client: DataverseClient) -> None:
        self.client = client

    # -- tables ------------------------------------------------------------------------------------------------
    def find_table(self, logical: str) -> dict[str, Any] | None:
        """The table's definition (MetadataId, LogicalName, SchemaName, EntitySetName, PrimaryIdAttribute,
        PrimaryNameAttribute, OwnershipType, IsCustomEntity, ObjectTypeCode), or ``None``."""
        params = {"$filter": f"LogicalName eq {_quoted(logical)}",
                  "$select": "LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,"
                             "OwnershipType,IsCustomEntity,ObjectTypeCode"}
        rows = self._get("EntityDefinitions", logical, "find table", params=params).get("value") or []
        return rows[0] if rows else None

    def entity_sets(self, tables: Iterable[str]) -> dict[str, str]:
        """Entity set per table: the standard ones from Microsoft's metadata, every other table's ``EntitySetName``
        from ``EntityDefinitions`` (never a guessed plural). One GET per table, sent together."""
        out = dict(standard_entity_sets())
        wanted = sorted(set(tables) - out.keys())
        with ThreadPoolExecutor(max(1, min(_PARALLEL_READS, len(wanted))), thread_name_prefix="dataverse-meta") as pool:
            definitions = list(pool.map(self.find_table, wanted))
        for table, found in zip(wanted, definitions, strict=True):
            if not found or not found.get("EntitySetName"):
                raise DataverseError(404, None, None, "EntityDefinitions", "entity set",
                                     cause=f"table {table} is not in this Dataverse environment: run "
                                           "dataverse/schema first")
            out[table] = found["EntitySetName"]
        return out

    def custom_tables(self) -> list[str]:
        """Logical names of every custom table in the environment (for the tier's custom-table limit)."""
        params = {"$filter": "IsCustomEntity eq true", "$select": "LogicalName"}
        rows = self._get("EntityDefinitions", "EntityDefinitions", "custom tables", params=params).get("value") or []
        return sorted(row["LogicalName"] for row in rows)

    def create_table(self, schema_name: str, display: str, primary_name_schema: str,
                     primary_name_max_length: int = 100, ownership: str = "UserOwned", solution: str | None = None,
                     *, display_collection: str | None = None, description: str | None = None) -> None:
        """``POST EntityDefinitions`` with the required primary name column; read EntitySetName back with
        :meth:`find_table` (the server derives it)."""
        primary = string_attribute(primary_name_schema, primary_name_max_length, "Name")
        primary["IsPrimaryName"] = True
        body = {"@odata.type": f"{NS}EntityMetadata", "SchemaName": _check_name(schema_name),
                "DisplayName": label(display), "DisplayCollectionName": label(display_collection or display),
                "Description": label(description or display), "OwnershipType": ownership, "IsActivity": False,
                "HasActivities": False, "HasNotes": True, "Attributes": [primary]}
        self._post("EntityDefinitions", schema_name, "create table", body, solution)

    # -- columns -----------------------------------------------------------------------------------------------
    def columns(self, logical: str) -> dict[str, dict[str, Any]]:
        """Every column's definition by logical name (AttributeType, SchemaName, MaxLength, IsSecured,
        RequiredLevel, MetadataId...)."""
        rows = self._get_retrying(f"{self._table_path(logical)}/Attributes", logical, "columns").get("value") or []
        return {row["LogicalName"]: row for row in rows}

    def column(self, table: str, column: str) -> dict[str, Any]:
        """One column's full definition (404 retried, then :class:`DataverseNotFound`)."""
        return self._get_retrying(self._column_path(table, column), table, "column")

    def create_column(self, table: str, attribute_body: Mapping[str, Any], solution: str | None = None) -> None:
        self._post(f"{self._table_path(table)}/Attributes", table, "create column", attribute_body, solution)

    def secure_column(self, table: str, column: str, solution: str | None = None) -> bool:
        """Turn column security on (GET the definition, PUT it back with ``IsSecured: true``); ``False`` when it was
        already on."""
        definition = self.column(table, column)
        if definition.get("IsSecured") is True:
            return False
        body = {k: v for k, v in definition.items() if not k.startswith("@odata.") or k == "@odata.type"}
        if "@odata.type" in body:
            body["@odata.type"] = str(body["@odata.type"]).lstrip("#")
        body["IsSecured"] = True
        headers = {"MSCRM.MergeLabels": "true", **_solution_header(solution)}
        self.client._request("PUT", self._column_path(table, column), table, "secure column", json_body=body,
                             headers=headers)
        return True

    def wait_for_column(self, entity_set: str, column: str, timeout_s: float = 33.0) -> None:
        """Until data calls accept ``column`` on ``entity_set`` (the SDK's probe); raises after ``timeout_s``."""
        path = _check_name(entity_set)
        params = {"$top": "1", "$select": _check_name(column).lower()}
        deadline = time.monotonic() + timeout_s
        # The SDK's schedule, then its last step again until the timeout.
        for delay in itertools.chain(COLUMN_PROBE_DELAYS, itertools.repeat(COLUMN_PROBE_DELAYS[-1])):
            if delay:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DataverseError(None, None, None, entity_set, "wait for column",
                                         cause=f"column {column} not visible after {timeout_s:g} s")
                self.client._sleep(min(delay, remaining))
            try:
                self.client._request("GET", path, entity_set, "column probe", params=params)
                return
            except DataverseError as exc:
                if exc.status not in (400, 404):  # unknown column (400) until it has propagated
                    raise

    # -- lookups -----------------------------------------------------------------------------------------------
    def create_lookup(self, referencing: str, referenced: str, schema_name: str, relationship_schema_name: str,
                      solution: str | None = None, *, display: str | None = None,
                      navigation_property: str | None = None, required: str = "None") -> None:
        """A 1:N relationship whose lookup ``schema_name`` on ``referencing`` points at ``referenced``; its
        navigation property is ``schema_name``, case kept (or ``navigation_property``)."""
        target = self.find_table(referenced)
        if target is None:
            raise DataverseNotFound(404, None, None, referenced, "create lookup", cause="referenced table not found")
        lookup = {"@odata.type": f"{NS}LookupAttributeMetadata", "AttributeType": "Lookup",
                  "AttributeTypeName": {"Value": "LookupType"}, "SchemaName": _check_name(schema_name),
                  "DisplayName": label(display or schema_name), "RequiredLevel": required_level(required)}
        body: dict[str, Any] = {
            "@odata.type": f"{NS}OneToManyRelationshipMetadata", "SchemaName": _check_name(relationship_schema_name),
            "ReferencedEntity": referenced, "ReferencedAttribute": target["PrimaryIdAttribute"],
            "ReferencingEntity": _check_name(referencing),
            # Safer than the doc example's cascade-all.
            "CascadeConfiguration": {"Assign": "NoCascade", "Delete": "RemoveLink", "Merge": "NoCascade",
                                     "Reparent": "NoCascade", "Share": "NoCascade", "Unshare": "NoCascade"},
            "Lookup": lookup}
        if navigation_property is not None:
            body["ReferencingEntityNavigationPropertyName"] = _check_name(navigation_property)
        self._post("RelationshipDefinitions", referencing, "create lookup", body, solution)

    # -- keys --------------------------------------------------------------------------------------------------
    def keys(self, table: str) -> list[dict[str, Any]]:
        """Each key with SchemaName, KeyAttributes and EntityKeyIndexStatus."""
        return self._get_retrying(f"{self._table_path(table)}/Keys", table, "keys").get("value") or []

    def create_key(self, table: str, schema_name: str, attributes: Sequence[str], solution: str | None = None,
                   *, display: str | None = None) -> None:
        body = {"SchemaName": _check_name(schema_name), "DisplayName": label(display or schema_name),
                "KeyAttributes": [_check_name(a) for a in attributes]}
        self._post(f"{self._table_path(table)}/Keys", table, "create key", body, solution)

    def wait_for_key(self, table: str, schema_name: str, timeout_s: float = 600.0,
                     poll_s: float = 2.0) -> dict[str, Any]:
        """Poll until the key's index is Active; raises when it is Failed, missing, or not Active
        within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        wait = min(0.25, poll_s)
        while True:
            key = next((k for k in self.keys(table) if str(k.get("SchemaName", "")).lower() == schema_name.lower()),
                       None)
            status = None if key is None else key.get("EntityKeyIndexStatus")
            if status == "Active":
                return key  # type: ignore[return-value]
            if key is None or status == "Failed":
                # Failed: reactivate with ReactivateEntityKey.
                raise DataverseError(None, None, None, table, "wait for key",
                                     cause=f"key {schema_name} {'not found' if key is None else 'index Failed'}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DataverseError(None, None, None, table, "wait for key",
                                     cause=f"key {schema_name} still {status} after {timeout_s:g} s")
            self.client._sleep(min(wait, remaining))
            wait = min(wait * 2, poll_s)  # quick first looks: a small table's index is often built in seconds

    # -- deletes (rollback's schema removal) ----------------------------------------------------------------------
    # L/webapi/create-update-entity-relationships-using-web-api "Delete relationships": DELETE on the definition's URI;
    # Microsoft's Python SDK deletes a relationship by MetadataId with If-Match: * [ms-code]; a key by
    # DELETE .../Keys(<id>). Each returns False when the definition was already gone (404), so a
    # rollback that stopped half-way can simply run again.
    def delete_table(self, logical: str) -> bool:
        """Delete a custom table and every record in it."""
        return self._delete(self._table_path(logical), logical, "delete table")

    def delete_column(self, table: str, column: str) -> bool:
        """Delete a (non-lookup) column and its values; a lookup goes with :meth:`delete_relationship`."""
        return self._delete(self._column_path(table, column), table, "delete column")

    def delete_key(self, table: str, schema_name: str) -> bool:
        key = next((k for k in self.keys(table) if str(k.get("SchemaName", "")).lower() == schema_name.lower()), None)
        if key is None:
            return False
        return self._delete(f"{self._table_path(table)}/Keys({key['MetadataId']})", table, "delete key")

    def delete_relationship(self, schema_name: str) -> bool:
        """Delete a 1:N relationship and its lookup column."""
        return self._delete(f"RelationshipDefinitions(SchemaName={_quoted(schema_name)})", schema_name,
                            "delete relationship")

    def lookup_relationship(self, table: str, lookup: str) -> str | None:
        """SchemaName of the N:1 relationship whose lookup column on ``table`` is ``lookup`` (None when absent)."""
        params = {"$filter": f"ReferencingAttribute eq {_quoted(lookup.lower())}", "$select": "SchemaName"}
        try:
            rows = self._get(f"{self._table_path(table)}/ManyToOneRelationships", table, "find relationship",
                             params=params).get("value") or []
        except DataverseNotFound:  # the table itself is gone
            return None
        return str(rows[0]["SchemaName"]) if rows else None

    def _delete(self, path: str, subject: str, operation: str) -> bool:
        try:
            self.client._request("DELETE", path, subject, operation, headers={"If-Match": "*"})
        except DataverseNotFound:
            return False
        return True

    # -- records -----------------------------------------------------------------------------------------------
    def find_record(self, entity_set: str, filter: str, select: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The first record matching an OData ``filter`` (quote literals yourself), e.g. a publisher by
        ``uniquename eq 'senseimig'``; ``None`` when there is none."""
        params = {"$filter": filter, "$top": "1"}
        if select:
            params["$select"] = ",".join(_check_name(c) for c in select)
        rows = self._get(_check_name(entity_set), entity_set, "find record", params=params).get("value") or []
        return rows[0] if rows else None

    def publish(self, tables: Sequence[str] = ()) -> None:
        """``PublishXml`` for ``tables``, or ``PublishAllXml`` (matters for forms and views, not data calls)."""
        if not tables:
            self.client._request("POST", "PublishAllXml", "PublishAllXml", "publish")
            return
        entities = "".join(f"<entity>{_check_name(t)}</entity>" for t in tables)
        xml = f"<importexportxml><entities>{entities}</entities></importexportxml>"
        self.client._request("POST", "PublishXml", "PublishXml", "publish", json_body={"ParameterXml": xml})

    # -- plumbing ----------------------------------------------------------------------------------------------
    @staticmethod
    def _table_path(logical: str) -> str:
        return f"EntityDefinitions(LogicalName={_quoted(logical)})"

    def _column_path(self, table: str, column: str) -> str:
        return f"{self._table_path(table)}/Attributes(LogicalName={_quoted(column)})"

    def _get(self, path: str, subject: str, operation: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = self.client._request("GET", path, subject, operation, params=params)
        return DataverseClient._json_object(response, subject, operation)

    def _get_retrying(self, path: str, subject: str, operation: str) -> dict[str, Any]:
        """GET a definition, retrying 404s like the SDK (a definition just created may not have propagated)."""
        for attempt in range(METADATA_RETRIES):
            try:
                return self._get(path, subject, operation)
            except DataverseNotFound:
                if attempt == METADATA_RETRIES - 1:
                    raise
                self.client._sleep(METADATA_BACKOFF * 2 ** attempt)
        raise AssertionError("unreachable")

    def _post(self, path: str, subject: str, operation: str, body: Mapping[str, Any],
              solution: str | None) -> str | None:
        response: httpx.Response = self.client._request("POST", path, subject, operation, json_body=body,
                                                        headers=_solution_header(solution))
        match = _GUID.search(response.headers.get("OData-EntityId", ""))
        return match[1].lower() if match else None


def _solution_header(solution: str | None) -> dict[str, str]:
    return {"MSCRM.SolutionUniqueName": _check_name(solution)} if solution else {}


__all__ = ["DataverseMetadata", "boolean_attribute", "datetime_attribute", "decimal_attribute", "integer_attribute",
           "label", "memo_attribute", "money_attribute", "picklist_attribute", "required_level", "string_attribute"]
