"""The metadata API of the emulator (reference/dataverse.md §7, must-have 12): ``EntityDefinitions`` with their
``Attributes`` and ``Keys``, ``RelationshipDefinitions``, ``PublishXml``/``PublishAllXml``, and the prefix rules of
``publishers`` records. Definitions live in the :class:`~.metadata.Catalog`; each change is journaled to the store
(:func:`restore_custom_schema`) so custom schema survives a restart.

Wire facts (L/webapi/create-update-entity-definitions-using-web-api, .../create-update-column-definitions-using-web-api,
L/define-alternate-keys-entity): creates answer 204 with ``OData-EntityId``; an attribute's is
``.../EntityDefinitions(LogicalName='t')/Attributes(<id>)``; definitions are updated by PUT of the whole definition
(PATCH is refused); the ``MSCRM.SolutionUniqueName`` header names the solution whose publisher's prefix every new
SchemaName must carry. A new column reaches data calls after :attr:`Catalog.column_delay`, a new key's index is Active
after :attr:`Catalog.key_delay` (InProgress half-way). Error codes for metadata faults are unverified
(INVALID_ARGUMENT) unless cited.
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import (
    LOOKUP_TYPES,
    AlternateKey,
    Catalog,
    Column,
    Relationship,
    Table,
    metadata_id,
)

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
NS = "Microsoft.Dynamics.CRM."
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9.]*)(?:\((?P<arg>[^()]*)\))?$")
_NAMED = re.compile(r"^(?P<prop>LogicalName|SchemaName)='(?P<value>[^']*)'$")
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,7}$")  # 2-8 alphanumerics starting with a letter [community/memory]
_PUBLISHERS = re.compile(rf"^{re.escape(BASE_PATH)}/publishers(\(.*\))?$")
# Attribute types the metadata API creates here, with their metadata class (reference §7 table; Double extra).
_CREATABLE = {"String": "StringAttributeMetadata", "Memo": "MemoAttributeMetadata",
              "DateTime": "DateTimeAttributeMetadata", "Money": "MoneyAttributeMetadata",
              "Decimal": "DecimalAttributeMetadata", "Integer": "IntegerAttributeMetadata",
              "Boolean": "BooleanAttributeMetadata", "Picklist": "PicklistAttributeMetadata",
              "Double": "DoubleAttributeMetadata", "File": "FileAttributeMetadata"}
_CLASSES = {**_CREATABLE, "Lookup": "LookupAttributeMetadata", "Customer": "LookupAttributeMetadata",
            "Owner": "LookupAttributeMetadata", "State": "StateAttributeMetadata", "Status": "StatusAttributeMetadata",
            "Uniqueidentifier": "UniqueIdentifierAttributeMetadata", "BigInt": "BigIntAttributeMetadata",
            "EntityName": "EntityNameAttributeMetadata", "Image": "ImageAttributeMetadata"}
_MAX_LENGTHS = {"String": 4000, "Memo": 1048576}  # StringAttributeMetadata/MemoAttributeMetadata limits [doc]
_SYSTEM_COLUMNS = frozenset({"createdon", "modifiedon", "createdby", "modifiedby", "versionnumber", "statecode",
                             "statuscode", "ownerid", "overriddencreatedon"})
# ObjectTypeCodes of the standard tables [memory]; custom tables get 10000 and up (reference §7).
_STANDARD_CODES = {"account": 1, "contact": 2, "annotation": 5, "systemuser": 8, "team": 9, "businessunit": 10,
                   "activityparty": 135, "organization": 1019, "fieldsecurityprofile": 1200,
                   "fieldpermission": 1201, "appointment": 4201, "email": 4202, "phonecall": 4210,
                   "sdkmessagefilter": 4607, "solution": 7100, "publisher": 7101, "sharepointsite": 4502,
                   "sharepointdocumentlocation": 9508, "transactioncurrency": 9105}
_ENTITY_PROPS = ("MetadataId", "LogicalName", "SchemaName", "EntitySetName", "PrimaryIdAttribute",
                 "PrimaryNameAttribute", "OwnershipType", "IsCustomEntity", "ObjectTypeCode",
                 "IsOptimisticConcurrencyEnabled", "DisplayName")
_ATTRIBUTE_PROPS = ("MetadataId", "LogicalName", "SchemaName", "EntityLogicalName", "AttributeType",
                    "AttributeTypeName", "IsCustomAttribute", "IsPrimaryId", "IsPrimaryName", "IsValidForCreate",
                    "IsValidForUpdate", "IsSecured", "CanBeSecuredForCreate", "CanBeSecuredForRead",
                    "CanBeSecuredForUpdate", "RequiredLevel", "DisplayName")
_DERIVED_PROPS = {"String": ("MaxLength", "FormatName"), "Memo": ("MaxLength", "Format"),
                  "DateTime": ("Format", "DateTimeBehavior"), "Integer": ("MinValue", "MaxValue"),
                  "Decimal": ("MinValue", "MaxValue"), "Money": ("MinValue", "MaxValue"),
                  "Double": ("MinValue", "MaxValue"), "Lookup": ("Targets",), "Customer": ("Targets",),
                  "Owner": ("Targets",), "File": ("MaxSizeInKB",)}
_RELATIONSHIP_PROPS = ("MetadataId", "SchemaName", "RelationshipType", "ReferencedEntity", "ReferencedAttribute",
                       "ReferencingEntity", "ReferencingAttribute", "ReferencingEntityNavigationPropertyName",
                       "IsCustomRelationship")
CANNOT_DELETE_DEPENDENCY = "0x8004f01f"  # "cannot be deleted because of dependencies" [memory]; unverified
# FileAttributeMetadata.MaxSizeInKB: default 32768 (32 MB), maximum 10,485,760 (10 GB) (reference §8 [doc]).
FILE_DEFAULT_KB, FILE_MAX_KB = 32_768, 10_485_760


def restore_custom_schema(catalog: Catalog, store: RecordStore) -> int:
    """Re-apply the custom schema journaled in ``store`` to ``catalog`` (a fresh :meth:`Catalog.load`), then journal
    later changes there. Returns how many changes were replayed."""
    changes = store.schema_changes()
    for change in changes:
        if str(change.get("op", "")).startswith("remove_"):
            _replay_removal(catalog, change)  # deletions are this module's (the catalog only adds)
        else:
            catalog.apply(change)
    catalog.journal = store.log_schema_change
    return len(changes)


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    """The response when the request is a metadata request, else ``None`` (publisher writes are checked here and
    then fall through to the record endpoints)."""
    path = environ.get("PATH_INFO", "")
    method = environ.get("REQUEST_METHOD", "GET")
    if _PUBLISHERS.match(path) and method in ("POST", "PATCH"):
        _check_publisher(environ)
        return None
    parts = path[len(BASE_PATH) + 1:].split("/") if path.startswith(BASE_PATH + "/") else []
    segments = [_SEGMENT.match(p) for p in parts]
    if not segments or segments[0] is None:
        return None
    first = segments[0]["name"]
    if first not in ("EntityDefinitions", "RelationshipDefinitions", "PublishXml", "PublishAllXml"):
        return None
    if any(s is None for s in segments):
        raise DataverseError(404, errors.INVALID_ARGUMENT, f"No HTTP resource was found that matches '{path}'.")
    call = _Call(app, environ, method, [(s["name"], s["arg"]) for s in segments])  # type: ignore[index]
    if first in ("PublishXml", "PublishAllXml"):
        call.only("POST")
        return 204, [], b""  # publishing matters for forms and views only (reference §7)
    if first == "RelationshipDefinitions":
        return call.relationships()
    return call.entities()


class _Call:
    """One metadata request: method, path segments ``[(name, arg)]``, query options, solution header."""

    def __init__(self, app: DataverseEmulator, environ: dict, method: str, segments: list[tuple[str, str | None]]):
        self.app, self.environ, self.method, self.segments = app, environ, method, segments
        self.catalog: Catalog = app.catalog
        self.params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        self.base = app._base(environ)

    def only(self, *methods: str) -> None:
        if self.method not in methods:
            # Reference §7: definitions are updated with PUT, never PATCH. Code unverified.
            raise DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{self.method}' is not allowed here.")

    # -- EntityDefinitions ----------------------------------------------------------------------------------
    def entities(self) -> Response:
        (_, arg), rest = self.segments[0], self.segments[1:]
        if arg is None:
            if rest:
                raise _no_resource(self.environ)
            self.only("GET", "POST")
            return self._list_entities() if self.method == "GET" else self._create_entity()
        table = self._find_table(arg)
        if not rest and self.method == "DELETE":
            return self._delete_entity(table)
        if not rest:
            self.only("GET")
            return self._json(f"EntityDefinitions({_select_text(self.params)})/$entity",
                              _selected(_entity_json(table), self.params, _ENTITY_PROPS, "EntityMetadata"))
        kind, sub = rest[0]
        if kind == "Attributes":
            return self._attributes(table, sub, rest[1:])
        if kind == "Keys" and len(rest) == 1:
            return self._keys(table, sub)
        if kind == "ManyToOneRelationships" and len(rest) == 1 and sub is None:
            self.only("GET")
            rows = [self._relationship_json(r) for r in self.catalog.relationships.values()
                    if r.referencing == table.logical_name]
            rows = _filtered(rows, self.params.get("$filter"), _RELATIONSHIP_PROPS, "OneToManyRelationshipMetadata")
            value = [_selected(r, self.params, _RELATIONSHIP_PROPS, "OneToManyRelationshipMetadata") for r in rows]
            return self._json(f"EntityDefinitions('{table.logical_name}')/ManyToOneRelationships", {"value": value})
        raise _no_resource(self.environ)

    def _find_table(self, arg: str) -> Table:
        named = _NAMED.match(arg)
        if named and named["prop"] == "LogicalName":
            if named["value"] in self.catalog.tables:
                return self.catalog.definition(named["value"])
        elif odata.is_guid(arg):
            for name in self.catalog.tables:
                if metadata_id("entity", name) == arg.lower():
                    return self.catalog.definition(name)
        # Code and text unverified (reference §7 documents the 404 only).
        raise DataverseError(404, "0x80040217", f"Could not find entity with key {arg}.")

    def _list_entities(self) -> Response:
        if "$expand" in self.params:
            raise odata.bad_request("The emulator does not support $expand on EntityDefinitions.")
        rows = [_entity_json(self.catalog.definition(name)) for name in self.catalog.tables]
        rows = _filtered(rows, self.params.get("$filter"), _ENTITY_PROPS, "EntityMetadata")
        value = [_selected(r, self.params, _ENTITY_PROPS, "EntityMetadata") for r in rows]
        return self._json(f"EntityDefinitions({_select_text(self.params)})", {"value": value})

    def _create_entity(self) -> Response:
        body = odata.read_json(self.environ)
        prefix, option_prefix = self._publisher_prefixes()
        schema = _required_text(body, "SchemaName")
        if body.get("IsActivity"):
            raise odata.bad_request("The emulator does not create activity tables.")
        ownership = body.get("OwnershipType", "UserOwned")
        if ownership not in ("UserOwned", "OrganizationOwned"):
            raise odata.bad_request(f"OwnershipType '{ownership}' is not valid for a new table.")
        attributes = body.get("Attributes") or []
        primaries = [a for a in attributes if isinstance(a, dict) and a.get("IsPrimaryName") is True]
        if len(primaries) != 1 or _attribute_type(primaries[0]) != "String":
            # Reference §7: the primary name StringAttributeMetadata with IsPrimaryName is required. Text unverified.
            raise odata.bad_request("The entity must have exactly one primary name attribute of type "
                                    "StringAttributeMetadata with IsPrimaryName true.")
        primary = primaries[0]
        max_length = _max_length(primary, "String")
        table = self.catalog.add_custom_table(
            schema, primary_name_schema=_required_text(primary, "SchemaName"), primary_name_max_length=max_length,
            ownership=ownership, entity_set=body.get("EntitySetName"), prefix=prefix,
            display_name=_label_text(body.get("DisplayName")), primary_name_display=_label_text(primary.get("DisplayName")),
            primary_name_required=_required_level(primary))
        for attribute in attributes:
            if attribute is not primary:
                self._add_attribute(table.logical_name, attribute, prefix, option_prefix)
        return 204, [("OData-EntityId", f"{self.base}/EntityDefinitions({metadata_id('entity', table.logical_name)})")], b""

    # -- Attributes ------------------------------------------------------------------------------------------
    def _attributes(self, table: Table, arg: str | None, rest: list[tuple[str, str | None]]) -> Response:
        cast = None
        if rest:
            if len(rest) > 1 or rest[0][1] is not None or not rest[0][0].startswith(NS):
                raise _no_resource(self.environ)
            cast = rest[0][0][len(NS):]
            if cast not in set(_CLASSES.values()):
                raise _no_resource(self.environ)
        if arg is None:
            if cast is None:
                self.only("GET", "POST")
            else:
                self.only("GET")
            if self.method == "POST":
                return self._create_attribute(table)
            columns = [c for c in table.columns.values() if cast is None or _CLASSES.get(c.type) == cast]
            rows = _filtered([_attribute_json(table, c) for c in columns], self.params.get("$filter"),
                             _attribute_props(cast), cast or "AttributeMetadata")
            value = [self._shape_attribute(table, r, cast) for r in rows]
            suffix = f"/{NS}{cast}" if cast else ""
            return self._json(f"EntityDefinitions('{table.logical_name}')/Attributes{suffix}", {"value": value})
        column = _find_column(table, arg)
        if cast is not None:
            self.only("GET")
            if _CLASSES.get(column.type) != cast:
                raise _no_resource(self.environ)
        else:
            self.only("GET", "PUT", "DELETE")
        if self.method == "PUT":
            return self._update_attribute(table, column)
        if self.method == "DELETE":
            return self._delete_attribute(table, column)
        body = self._shape_attribute(table, _attribute_json(table, column), cast)
        suffix = f"/{NS}{cast}" if cast else ""
        return self._json(f"EntityDefinitions('{table.logical_name}')/Attributes{suffix}/$entity", body)

    def _shape_attribute(self, table: Table, row: dict[str, Any], cast: str | None) -> dict[str, Any]:
        shaped = _selected(row, self.params, _attribute_props(cast), cast or "AttributeMetadata")
        expand = self.params.get("$expand")
        if expand:
            if expand != "OptionSet" or cast not in ("PicklistAttributeMetadata", "StateAttributeMetadata",
                                                     "StatusAttributeMetadata"):
                # OptionSet is a navigation property of the enum attribute types only.
                raise odata.bad_request(f"Could not find a property named '{expand}' on type "
                                        f"'{NS}{cast or 'AttributeMetadata'}'.")
            shaped["OptionSet"] = _option_set(table, table.columns[row["LogicalName"]])
        return shaped

    def _create_attribute(self, table: Table) -> Response:
        prefix, option_prefix = self._publisher_prefixes()
        column = self._add_attribute(table.logical_name, odata.read_json(self.environ), prefix, option_prefix)
        url = f"{self.base}/EntityDefinitions(LogicalName='{table.logical_name}')/Attributes({_column_id(table, column)})"
        return 204, [("OData-EntityId", url)], b""

    def _add_attribute(self, table: str, body: Any, prefix: str | None, option_prefix: int) -> Column:
        if not isinstance(body, dict):
            raise odata.bad_request("An attribute definition must be a JSON object.")
        kind = _attribute_type(body)
        if kind in LOOKUP_TYPES:
            # Lookups come from RelationshipDefinitions (reference §7); message as the catalog's.
            raise odata.bad_request("Attribute of type LookupAttributeMetadata cannot be created through the SDK.")
        if kind not in _CREATABLE:
            raise odata.bad_request(f"The emulator does not create attributes of type '{kind}'.")
        attrs: dict[str, Any] = {"required": _required_level(body), "display_name": _label_text(body.get("DisplayName")),
                                 "visible_after": time.time() + self.catalog.column_delay}
        if kind in _MAX_LENGTHS:
            attrs["max_length"] = _max_length(body, kind)
            attrs["format"] = (body.get("FormatName") or {}).get("Value", "Text") if kind == "String" else "TextArea"
        elif kind == "DateTime":
            attrs["format"] = body.get("Format") or "DateAndTime"
            attrs["datetime_behavior"] = (body.get("DateTimeBehavior") or {}).get("Value") or "UserLocal"
        elif kind in ("Integer", "Decimal", "Money", "Double"):
            attrs["min"], attrs["max"] = body.get("MinValue"), body.get("MaxValue")
        elif kind == "Picklist":
            attrs["options"], attrs["option_labels"] = _options(body, option_prefix)
        elif kind == "File":
            attrs["max_size_kb"] = _max_size_kb(body)
        schema = _required_text(body, "SchemaName")
        column = self.catalog.add_column(table, schema, kind, prefix=prefix, **attrs)
        if kind == "File":
            # L/file-column-data "File name column": a read-only string column <SchemaName>_Name holds the file's
            # name (its length is not documented; 255 as annotation.filename [inference]).
            self.catalog.add_column(table, f"{schema}_Name", "String", prefix=prefix, max_length=255,
                                    valid_for_create=False, valid_for_update=False,
                                    visible_after=attrs["visible_after"], display_name=attrs["display_name"])
        return column

    def _update_attribute(self, table: Table, column: Column) -> Response:
        body = odata.read_json(self.environ)
        if body.get("SchemaName", column.schema_name) != column.schema_name or (
                "AttributeType" in body and body["AttributeType"] != column.type):
            raise odata.bad_request("The SchemaName and AttributeType of an attribute cannot be changed.")
        secured = body.get("IsSecured", column.is_secured)
        if not isinstance(secured, bool):
            raise odata.bad_request("IsSecured must be a boolean.")
        if secured and not _can_be_secured(table, column):
            raise odata.bad_request(f"The attribute '{column.logical_name}' cannot be secured.")
        if secured and any(column.logical_name in k.attributes for k in table.keys):
            raise odata.bad_request(f"The attribute '{column.logical_name}' is part of an entity key and cannot be "
                                    "secured.")  # keys can't use column-secured columns (reference §7)
        changes: dict[str, Any] = {"is_secured": secured}
        if "RequiredLevel" in body:
            changes["required"] = _required_level(body)
        if "DisplayName" in body:
            changes["display_name"] = _label_text(body.get("DisplayName")) or column.display_name
        self.catalog.update_column(table.logical_name, column.logical_name, **changes)
        url = (f"{self.base}/EntityDefinitions(LogicalName='{table.logical_name}')"
               f"/Attributes(LogicalName='{column.logical_name}')")
        return 204, [("OData-EntityId", url)], b""

    # -- Keys ------------------------------------------------------------------------------------------------
    def _keys(self, table: Table, arg: str | None) -> Response:
        if arg is None:
            self.only("GET", "POST")
            if self.method == "GET":
                rows = [_key_json(table, k) for k in table.keys]
                return self._json(f"EntityDefinitions('{table.logical_name}')/Keys", {"value": rows})
            body = odata.read_json(self.environ)
            attributes = body.get("KeyAttributes")
            if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
                raise odata.bad_request("KeyAttributes must be an array of attribute logical names.")
            prefix, _ = self._publisher_prefixes()
            now, delay = time.time(), self.catalog.key_delay
            key = self.catalog.add_alternate_key(table.logical_name, _required_text(body, "SchemaName"), attributes,
                                                 prefix=prefix, in_progress_at=now + delay / 2, active_at=now + delay)
            url = (f"{self.base}/EntityDefinitions({metadata_id('entity', table.logical_name)})"
                   f"/Keys({_key_id(table, key)})")
            return 204, [("OData-EntityId", url)], b""
        self.only("GET", "DELETE")
        named = _NAMED.match(arg)
        for key in table.keys:
            if _key_id(table, key) == arg.lower() or (
                    named and named["prop"] == "LogicalName" and key.schema_name.lower() == named["value"].lower()):
                if self.method == "DELETE":
                    _remove_key(self.catalog, self.app.store, table.logical_name, key.schema_name)
                    return 204, [], b""
                return self._json(f"EntityDefinitions('{table.logical_name}')/Keys/$entity", _key_json(table, key))
        raise DataverseError(404, "0x80040217", f"Could not find entity key with id {arg}.")  # code unverified

    # -- RelationshipDefinitions -------------------------------------------------------------------------------
    def relationships(self) -> Response:
        (_, arg), rest = self.segments[0], self.segments[1:]
        if rest:
            raise _no_resource(self.environ)
        if arg is None:
            self.only("POST")
            return self._create_relationship(odata.read_json(self.environ))
        self.only("GET", "DELETE")
        named = _NAMED.match(arg)
        for rel in self.catalog.relationships.values():
            if (named and named["prop"] == "SchemaName" and rel.schema_name == named["value"]) or \
                    metadata_id("relationship", rel.schema_name.lower()) == arg.lower():
                if self.method == "DELETE":
                    _remove_relationship(self.catalog, self.app.store, rel.schema_name)
                    return 204, [], b""
                return self._json("RelationshipDefinitions/$entity", self._relationship_json(rel))
        raise DataverseError(404, "0x80040217", f"Could not find relationship with key {arg}.")  # code unverified

    def _create_relationship(self, body: dict[str, Any]) -> Response:
        if body.get("@odata.type", f"{NS}OneToManyRelationshipMetadata").lstrip("#") != \
                f"{NS}OneToManyRelationshipMetadata":
            raise odata.bad_request("The emulator creates OneToManyRelationshipMetadata relationships only.")
        lookup = body.get("Lookup")
        if not isinstance(lookup, dict) or _attribute_type(lookup, "Lookup") != "Lookup":
            raise odata.bad_request("A one-to-many relationship needs a Lookup of type LookupAttributeMetadata.")
        referenced = self.catalog.definition(_required_text(body, "ReferencedEntity"))
        referencing = _required_text(body, "ReferencingEntity")
        self.catalog.definition(referencing)
        if body.get("ReferencedAttribute", referenced.primary_id) != referenced.primary_id:
            raise odata.bad_request(f"ReferencedAttribute must be '{referenced.primary_id}'.")
        prefix, _ = self._publisher_prefixes()
        schema = _required_text(body, "SchemaName")
        self.catalog.add_lookup(
            referencing, _required_text(lookup, "SchemaName"), referenced.logical_name, relationship=schema,
            navigation_property=body.get("ReferencingEntityNavigationPropertyName"), prefix=prefix,
            visible_after=time.time() + self.catalog.column_delay, required=_required_level(lookup),
            display_name=_label_text(lookup.get("DisplayName")))
        url = f"{self.base}/RelationshipDefinitions({metadata_id('relationship', schema.lower())})"
        return 204, [("OData-EntityId", url)], b""

    def _relationship_json(self, rel: Relationship) -> dict[str, Any]:
        return {"@odata.type": f"#{NS}OneToManyRelationshipMetadata",
                "MetadataId": metadata_id("relationship", rel.schema_name.lower()), "SchemaName": rel.schema_name,
                "RelationshipType": "OneToManyRelationship", "ReferencedEntity": rel.referenced,
                "ReferencedAttribute": self.catalog.definition(rel.referenced).primary_id,
                "ReferencingEntity": rel.referencing, "ReferencingAttribute": rel.attribute,
                "ReferencingEntityNavigationPropertyName": rel.navigation_property, "IsCustomRelationship": True}

    # -- deletes (L/webapi/use-web-api-metadata: definitions are deleted with DELETE on their URI) -------------
    def _delete_entity(self, table: Table) -> Response:
        if not table.is_custom:
            # Standard tables can't be deleted; status, code and text unverified.
            raise DataverseError(400, errors.INVALID_ARGUMENT, f"The entity '{table.logical_name}' is not a custom "
                                 "entity and cannot be deleted.")
        referenced_by = sorted(r.schema_name for r in self.catalog.relationships.values()
                               if r.referenced == table.logical_name and r.referencing != table.logical_name)
        if referenced_by:
            # A table other tables look up can't be deleted before those relationships [memory]; code unverified.
            raise DataverseError(400, CANNOT_DELETE_DEPENDENCY,
                                 f"The entity '{table.logical_name}' cannot be deleted because it is referenced by "
                                 f"the relationships {', '.join(referenced_by)}.")
        _remove_table(self.catalog, self.app.store, table.logical_name)
        return 204, [], b""

    def _delete_attribute(self, table: Table, column: Column) -> Response:
        if not column.is_custom or column.logical_name in (table.primary_id, table.primary_name):
            raise DataverseError(400, errors.INVALID_ARGUMENT,  # code and text unverified
                                 f"The attribute '{column.logical_name}' cannot be deleted.")
        if column.type in LOOKUP_TYPES:
            # A lookup goes with its relationship (DELETE RelationshipDefinitions) [memory]; code unverified.
            raise DataverseError(400, CANNOT_DELETE_DEPENDENCY, f"The attribute '{column.logical_name}' is the lookup "
                                 "of a relationship; delete the relationship instead.")
        if any(column.logical_name in k.attributes for k in table.keys):
            raise DataverseError(400, CANNOT_DELETE_DEPENDENCY, f"The attribute '{column.logical_name}' is part of "
                                 "an entity key; delete the key first.")  # [memory]; code unverified
        _remove_column(self.catalog, self.app.store, table.logical_name, column.logical_name)
        return 204, [], b""

    # -- helpers ---------------------------------------------------------------------------------------------
    def _publisher_prefixes(self) -> tuple[str | None, int]:
        """(SchemaName prefix incl. ``_``, option-value prefix) of the solution named by ``MSCRM.SolutionUniqueName``;
        without the header the catalog's prefix and the default publisher's 10000 [memory]."""
        name = self.environ.get("HTTP_MSCRM.SOLUTIONUNIQUENAME") or self.environ.get("HTTP_MSCRM_SOLUTIONUNIQUENAME")
        if not name:
            return None, 10000
        store = self.app.store
        solutions = store.query("solution", [("uniquename", name)], limit=1)
        publisher = store.retrieve("publisher", solutions[0].values.get("publisherid") or "") if solutions else None
        if publisher is None:
            # Status, code and text unverified.
            raise DataverseError(400, errors.INVALID_ARGUMENT, f"The solution with unique name '{name}' does not exist.")
        prefix = publisher.values.get("customizationprefix") or ""
        return f"{prefix.lower()}_", int(publisher.values.get("customizationoptionvalueprefix") or 10000)

    def _json(self, context: str, body: dict[str, Any]) -> Response:
        payload = {"@odata.context": f"{self.base}/$metadata#{context}", **body}
        return 200, [("Content-Type", JSON_TYPE)], json.dumps(payload).encode()


# -- JSON shapes ---------------------------------------------------------------------------------------------------
def _label(text: str | None) -> dict[str, Any]:
    if text is None:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {"Label": text, "LanguageCode": 1033}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def _entity_json(table: Table) -> dict[str, Any]:
    return {"MetadataId": metadata_id("entity", table.logical_name), "LogicalName": table.logical_name,
            "SchemaName": table.schema_name, "EntitySetName": table.entity_set,
            "PrimaryIdAttribute": table.primary_id, "PrimaryNameAttribute": table.primary_name,
            "OwnershipType": table.ownership, "IsCustomEntity": table.is_custom,
            "ObjectTypeCode": table.object_type_code or _STANDARD_CODES.get(table.logical_name),
            "IsOptimisticConcurrencyEnabled": True,  # true for custom tables (reference §7); standard [memory]
            "DisplayName": _label(table.display_name)}


def _column_id(table: Table, column: Column) -> str:
    return metadata_id("attribute", table.logical_name, column.logical_name)


def _key_id(table: Table, key: AlternateKey) -> str:
    return metadata_id("key", table.logical_name, key.schema_name.lower())


def _can_be_secured(table: Table, column: Column) -> bool:
    return column.logical_name not in (table.primary_id, table.primary_name, *_SYSTEM_COLUMNS) and \
        column.type in _CLASSES and column.type not in ("Uniqueidentifier", "State", "Status", "Owner")


def _attribute_json(table: Table, column: Column) -> dict[str, Any]:
    securable = _can_be_secured(table, column)
    row: dict[str, Any] = {
        "@odata.type": f"#{NS}{_CLASSES.get(column.type, 'AttributeMetadata')}",
        "MetadataId": _column_id(table, column), "LogicalName": column.logical_name,
        "SchemaName": column.schema_name, "EntityLogicalName": table.logical_name, "AttributeType": column.type,
        "AttributeTypeName": {"Value": f"{column.type}Type"}, "IsCustomAttribute": column.is_custom,
        "IsPrimaryId": column.logical_name == table.primary_id,
        "IsPrimaryName": column.logical_name == table.primary_name,
        "IsValidForCreate": column.valid_for_create, "IsValidForUpdate": column.valid_for_update,
        "IsSecured": column.is_secured, "CanBeSecuredForCreate": securable, "CanBeSecuredForRead": securable,
        "CanBeSecuredForUpdate": securable,
        "RequiredLevel": {"Value": column.required, "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DisplayName": _label(column.display_name),
    }
    if column.type in ("String", "Memo"):
        row["MaxLength"] = column.max_length
        if column.type == "String":
            row["FormatName"] = {"Value": column.format or "Text"}
        else:
            row["Format"] = column.format or "TextArea"
    elif column.type == "DateTime":
        row["Format"] = column.format or ("DateOnly" if column.datetime_behavior == "DateOnly" else "DateAndTime")
        row["DateTimeBehavior"] = {"Value": column.datetime_behavior or "UserLocal"}
    elif column.type in ("Integer", "Decimal", "Money", "Double"):
        row["MinValue"], row["MaxValue"] = column.min, column.max
    elif column.type in LOOKUP_TYPES:
        row["Targets"] = list(column.targets)
    elif column.type == "File":
        # A file column reads back as AttributeType Virtual with AttributeTypeName FileType [community, memory].
        row["AttributeType"], row["AttributeTypeName"] = "Virtual", {"Value": "FileType"}
        row["MaxSizeInKB"] = column.max_size_kb
    return row


def _option_set(table: Table, column: Column) -> dict[str, Any]:
    labels = column.option_labels or (None,) * len(column.options)
    return {"MetadataId": metadata_id("optionset", table.logical_name, column.logical_name), "IsGlobal": False,
            "OptionSetType": column.type,
            "Options": [{"Value": v, "Label": _label(text)} for v, text in zip(column.options, labels, strict=True)]}


def _key_json(table: Table, key: AlternateKey) -> dict[str, Any]:
    return {"MetadataId": _key_id(table, key), "SchemaName": key.schema_name, "LogicalName": key.schema_name.lower(),
            "EntityLogicalName": table.logical_name, "KeyAttributes": list(key.attributes),
            "EntityKeyIndexStatus": key.status}


def _attribute_props(cast: str | None) -> tuple[str, ...]:
    kinds = [k for k, c in _CLASSES.items() if c == cast]
    return _ATTRIBUTE_PROPS + tuple(p for k in kinds for p in _DERIVED_PROPS.get(k, ()))


def _select_text(params: dict[str, str]) -> str:
    return params.get("$select", "")


def _unknown(prop: str, type_name: str) -> DataverseError:
    # OData's message for an unknown property in a query option (as for records, reference §11 [memory]).
    return DataverseError(400, "0x80060888", f"Could not find a property named '{prop}' on type '{NS}{type_name}'.")


def _selected(row: dict[str, Any], params: dict[str, str], allowed: tuple[str, ...], type_name: str) -> dict[str, Any]:
    select = odata.parse_select(params.get("$select"))
    if select is None:
        return row
    for prop in select:
        if prop not in allowed:
            raise _unknown(prop, type_name)
    keep = {*select, "MetadataId"}  # MetadataId comes back whatever $select says [memory]
    return {k: v for k, v in row.items() if k in keep or k == "@odata.type"}


def _filtered(rows: list[dict[str, Any]], text: str | None, allowed: tuple[str, ...],
              type_name: str) -> list[dict[str, Any]]:
    conditions = odata.parse_filter(text)
    for prop, _ in conditions:
        if prop not in allowed:
            raise _unknown(prop, type_name)
    return [r for r in rows if all(r.get(p) in (v.values if isinstance(v, odata.AnyOf) else (v,))
                                   for p, v in conditions)]


def _find_column(table: Table, arg: str) -> Column:
    named = _NAMED.match(arg)
    for column in table.columns.values():
        if (named and named["prop"] == "LogicalName" and column.logical_name == named["value"]) or \
                _column_id(table, column) == arg.lower():
            return column
    raise DataverseError(404, "0x80040217",  # code and text unverified
                         f"Could not find attribute with key {arg} on entity '{table.logical_name}'.")


# -- request bodies ------------------------------------------------------------------------------------------------


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise odata.bad_request(f"The property '{name}' is required.")
    return value


def _attribute_type(body: dict[str, Any], default: str | None = None) -> str:
    """AttributeType, which must agree with ``@odata.type`` when both are sent."""
    odata_type = str(body.get("@odata.type") or "").lstrip("#")
    from_type = next((k for k, c in _CLASSES.items() if odata_type == NS + c), None)
    if from_type == "File" and body.get("AttributeType") in (None, "Virtual", "File"):
        return "File"  # FileAttributeMetadata's AttributeType is Virtual [community, memory]
    kind = body.get("AttributeType") or from_type or default
    if not isinstance(kind, str) or (odata_type and from_type is None and odata_type != f"{NS}AttributeMetadata") \
            or (from_type is not None and _CLASSES.get(kind) != _CLASSES[from_type]):
        raise odata.bad_request(f"The attribute type '{kind}' does not match '@odata.type' '{odata_type}'.")
    return kind


def _label_text(label: Any) -> str | None:
    if not isinstance(label, dict):
        return None
    for item in label.get("LocalizedLabels") or ():
        if isinstance(item, dict) and isinstance(item.get("Label"), str):
            return item["Label"]
    return None


def _required_level(body: dict[str, Any]) -> str:
    level = (body.get("RequiredLevel") or {}).get("Value", "None")
    if level not in ("None", "Recommended", "ApplicationRequired"):  # SystemRequired is the platform's own
        raise odata.bad_request(f"RequiredLevel '{level}' is not valid for a custom attribute.")
    return level


def _max_length(body: dict[str, Any], kind: str) -> int:
    value = body.get("MaxLength", 100 if kind == "String" else 2000)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_LENGTHS[kind]:
        raise odata.bad_request(f"MaxLength must be between 1 and {_MAX_LENGTHS[kind]} for a {kind} attribute.")
    return value


def _max_size_kb(body: dict[str, Any]) -> int:
    value = body.get("MaxSizeInKB", FILE_DEFAULT_KB)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= FILE_MAX_KB:
        raise odata.bad_request(f"MaxSizeInKB must be between 1 and {FILE_MAX_KB} for a File attribute.")
    return value


def _options(body: dict[str, Any], option_prefix: int) -> tuple[list[int], list[str]]:
    """Option values as given; a missing Value gets the next from the publisher's prefix × 10000 (reference §7)."""
    raw = (body.get("OptionSet") or {}).get("Options")
    if not isinstance(raw, list) or not raw:
        raise odata.bad_request("A Picklist attribute needs OptionSet.Options.")
    values: list[int] = []
    labels: list[str] = []
    for option in raw:
        value = option.get("Value") if isinstance(option, dict) else None
        if value is None:
            value = option_prefix * 10000 + len(values)
        if isinstance(value, bool) or not isinstance(value, int) or value in values:
            raise odata.bad_request("Option values must be distinct integers.")
        values.append(value)
        labels.append(_label_text(option.get("Label")) or str(value))
    return values, labels


def _check_publisher(environ: dict) -> None:
    """Prefix rules of a publisher write (reference §7 [community]); the record endpoints then do the rest (the
    option-value prefix range 10000-99999 comes from the column's metadata). The body is put back for them."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return  # the record endpoint answers the bad JSON
    prefix = body.get("customizationprefix") if isinstance(body, dict) else None
    if prefix is not None and (not isinstance(prefix, str) or not _PREFIX.match(prefix)
                               or prefix.lower().startswith("mscrm")):
        # Code and text unverified.
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             "The customization prefix must be 2 to 8 letters or digits, start with a letter and not "
                             "start with 'mscrm'.")


# -- removals: the catalog only adds definitions, so deletes edit its state here (under its lock) and journal a
# ``remove_*`` change that restore_custom_schema replays. Records lose the deleted table or column with it. ---------
def _remove_table(catalog: Catalog, store: RecordStore | None, table: str) -> None:
    with catalog._lock:
        catalog._tables.pop(table, None)
        catalog._timed.discard(table)
        for name, rel in list(catalog._relationships.items()):
            if rel.referencing == table:
                del catalog._relationships[name]
        catalog._record("remove_table", table=table)
    if store is not None:
        with store.transaction():
            for sql in ("DELETE FROM records WHERE tbl=?", "DELETE FROM key_index WHERE tbl=?",
                        "DELETE FROM keys_built WHERE tbl=?", "DELETE FROM files WHERE tbl=?"):
                store._conn.execute(sql, (table,))


def _remove_column(catalog: Catalog, store: RecordStore | None, table: str, column: str) -> None:
    with catalog._lock:
        current = catalog._tables[table]
        columns = {n: c for n, c in current.columns.items() if n != column}
        lookups = {nav: lk for nav, lk in current.lookups.items() if lk.attribute != column}
        catalog._tables[table] = replace(current, columns=columns, lookups=lookups)
        catalog._record("remove_column", table=table, column=column)
    if store is not None:
        with store.transaction():  # the column's values go with it; record versions are left alone [inference]
            store._conn.execute("UPDATE records SET data=json_remove(data, ?) WHERE tbl=?", (f'$."{column}"', table))


def _remove_key(catalog: Catalog, store: RecordStore | None, table: str, key: str) -> None:
    with catalog._lock:
        current = catalog._tables[table]
        catalog._tables[table] = replace(current, keys=tuple(k for k in current.keys if k.schema_name != key))
        catalog._record("remove_key", table=table, schema_name=key)
    if store is not None:
        with store.transaction():
            store._conn.execute("DELETE FROM key_index WHERE tbl=? AND keyname=?", (table, key))
            store._conn.execute("DELETE FROM keys_built WHERE tbl=? AND keyname=?", (table, key))


def _remove_relationship(catalog: Catalog, store: RecordStore | None, schema_name: str) -> None:
    """The relationship and its lookup column (and the lookup's values on every record)."""
    with catalog._lock:
        rel = catalog._relationships.pop(schema_name.lower())
        catalog._record("remove_relationship", schema_name=schema_name)
        if rel.referencing in catalog._tables and rel.attribute in catalog._tables[rel.referencing].columns:
            journal, catalog.journal = catalog.journal, None  # one journal entry replays the whole removal
            try:
                _remove_column(catalog, store, rel.referencing, rel.attribute)
            finally:
                catalog.journal = journal


def _replay_removal(catalog: Catalog, change: dict[str, Any]) -> None:
    journal, catalog.journal = catalog.journal, None  # replayed, not journaled again
    try:
        _apply_removal(catalog, change)
    finally:
        catalog.journal = journal


def _apply_removal(catalog: Catalog, change: dict[str, Any]) -> None:
    op = change["op"]
    if op == "remove_table":
        _remove_table(catalog, None, change["table"])
    elif op == "remove_column":
        _remove_column(catalog, None, change["table"], change["column"])
    elif op == "remove_key":
        _remove_key(catalog, None, change["table"], change["schema_name"])
    elif op == "remove_relationship":
        _remove_relationship(catalog, None, change["schema_name"])
    else:
        raise ValueError(f"unknown schema change {op!r}")


def _no_resource(environ: dict) -> DataverseError:
    return DataverseError(404, errors.INVALID_ARGUMENT,
                          f"No HTTP resource was found that matches '{environ.get('PATH_INFO', '')}'.")
