"""The metadata API of the emulator: ``EntityDefinitions`` with their ``Attributes`` and ``Keys``,
``RelationshipDefinitions``, ``PublishXml``/``PublishAllXml``, and the prefix rules of ``publishers`` records.
Definitions live in the :class:`~.metadata.Catalog`; each change is journaled to the store
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

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from senseimig_dagster.sandbox.dataverse_emulator import customer_relationships, errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import (
    LOOKUP_TYPES,
    Catalog,
    Column,
    Relationship,
    Table,
    metadata_id,
)
from senseimig_dagster.sandbox.dataverse_emulator.metadata_removals import (
    remove_column,
    remove_key,
    remove_relationship,
    remove_table,
    replay_removal,
)
from senseimig_dagster.sandbox.dataverse_emulator.metadata_shapes import (
    CLASSES,
    CREATABLE,
    MAX_LENGTHS,
    NAMED,
    NS,
    OPTION_SET_PROPS,
    attribute_json,
    attribute_props,
    attribute_type,
    can_be_secured,
    check_publisher,
    column_id,
    entity_json,
    filtered,
    find_column,
    key_id,
    key_json,
    label_text,
    max_length,
    max_size_kb,
    option_set,
    options,
    required_level,
    required_text,
    select_text,
    selected,
    simple_types,
)

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9.]*)(?:\((?P<arg>[^()]*)\))?$")
_PUBLISHERS = re.compile(rf"^{re.escape(BASE_PATH)}/publishers(\(.*\))?$")
_ENTITY_PROPS = ("MetadataId", "LogicalName", "SchemaName", "EntitySetName", "PrimaryIdAttribute",
                 "PrimaryNameAttribute", "OwnershipType", "IsCustomEntity", "ObjectTypeCode",
                 "IsOptimisticConcurrencyEnabled", "DisplayName")
_RELATIONSHIP_PROPS = ("MetadataId", "SchemaName", "RelationshipType", "ReferencedEntity", "ReferencedAttribute",
                       "ReferencingEntity", "ReferencingAttribute", "ReferencingEntityNavigationPropertyName",
                       "IsCustomRelationship")
CANNOT_DELETE_DEPENDENCY = "0x8004f01f"  # "cannot be deleted because of dependencies" [memory]; unverified
def restore_custom_schema(catalog: Catalog, store: RecordStore) -> int:
    """Re-apply the custom schema journaled in ``store`` to ``catalog`` (a fresh :meth:`Catalog.load`), then journal
    later changes there. Returns how many changes were replayed."""
    changes = store.schema_changes()
    for change in changes:
        if str(change.get("op", "")).startswith("remove_"):
            replay_removal(catalog, change)  # deletions are this module's (the catalog only adds)
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
        check_publisher(environ)
        return None
    parts = path[len(BASE_PATH) + 1:].split("/") if path.startswith(BASE_PATH + "/") else []
    segments = [_SEGMENT.match(p) for p in parts]
    if not segments or segments[0] is None:
        return None
    first = segments[0]["name"]
    if first not in ("EntityDefinitions", "RelationshipDefinitions", "PublishXml", "PublishAllXml", "CreateEntities",
                     "CreateCustomerRelationships"):
        return None
    if any(s is None for s in segments):
        raise DataverseError(404, errors.INVALID_ARGUMENT, f"No HTTP resource was found that matches '{path}'.")
    call = _Call(app, environ, method, [(s["name"], s["arg"]) for s in segments])  # type: ignore[index]
    if first in ("PublishXml", "PublishAllXml"):
        call.only("POST")
        return 204, [], b""  # publishing matters for forms and views only [memory]
    if first == "CreateEntities":
        call.only("POST")
        return call.create_entities()
    if first == "CreateCustomerRelationships":
        call.only("POST")
        return customer_relationships.create(call, odata.read_json(environ))
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
            # Documented: definitions are updated with PUT, never PATCH. Code unverified.
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
            return self._json(f"EntityDefinitions({select_text(self.params)})/$entity",
                              selected(entity_json(table), self.params, _ENTITY_PROPS, "EntityMetadata"))
        kind, sub = rest[0]
        if kind == "Attributes":
            return self._attributes(table, sub, rest[1:])
        if kind == "Keys" and len(rest) == 1:
            return self._keys(table, sub)
        if kind == "ManyToOneRelationships" and len(rest) == 1 and sub is None:
            self.only("GET")
            rows = [self._relationship_json(r) for r in self.catalog.relationships.values()
                    if r.referencing == table.logical_name]
            rows = filtered(rows, self.params.get("$filter"), _RELATIONSHIP_PROPS, "OneToManyRelationshipMetadata")
            value = [selected(r, self.params, _RELATIONSHIP_PROPS, "OneToManyRelationshipMetadata") for r in rows]
            return self._json(f"EntityDefinitions('{table.logical_name}')/ManyToOneRelationships", {"value": value})
        raise _no_resource(self.environ)

    def _find_table(self, arg: str) -> Table:
        named = NAMED.match(arg)
        if named and named["prop"] == "LogicalName":
            if named["value"] in self.catalog.tables:
                return self.catalog.definition(named["value"])
        elif odata.is_guid(arg):
            for name in self.catalog.tables:
                if metadata_id("entity", name) == arg.lower():
                    return self.catalog.definition(name)
        # Code and text unverified (Microsoft documents the 404 only).
        raise DataverseError(404, "0x80040217", f"Could not find entity with key {arg}.")

    def _list_entities(self) -> Response:
        if "$expand" in self.params:
            raise odata.bad_request("The emulator does not support $expand on EntityDefinitions.")
        rows = [entity_json(self.catalog.definition(name)) for name in self.catalog.tables]
        rows = filtered(rows, self.params.get("$filter"), _ENTITY_PROPS, "EntityMetadata")
        value = [selected(r, self.params, _ENTITY_PROPS, "EntityMetadata") for r in rows]
        return self._json(f"EntityDefinitions({select_text(self.params)})", {"value": value})

    def _create_entity(self) -> Response:
        table = self._create_table(odata.read_json(self.environ))
        return 204, [("OData-EntityId", f"{self.base}/EntityDefinitions({metadata_id('entity', table.logical_name)})")], b""

    def create_entities(self) -> Response:
        """The ``CreateEntities`` action (what Microsoft's Python SDK sends to create a table): ``Entities``, a list
        of ``ComplexEntityMetadata`` whose ``Attributes`` are ``Complex*AttributeMetadata``, each created as a POST
        to EntityDefinitions would be; the solution comes as the ``SolutionUniqueName`` parameter or the
        ``MSCRM.SolutionUniqueName`` header. The response is undocumented: chosen here as 200 with the new
        tables' MetadataIds in ``EntityIds`` (a client that needs more reads EntityDefinitions, as the SDK does)."""
        body = odata.read_json(self.environ)
        entities = body.get("Entities") if isinstance(body, dict) else None
        if not isinstance(entities, list) or not entities or not all(isinstance(e, dict) for e in entities):
            raise odata.bad_request("CreateEntities needs Entities, a non-empty array of ComplexEntityMetadata.")
        tables = [self._create_table(simple_types(entity)) for entity in entities]
        return self._json(f"{NS}CreateEntitiesResponse",
                          {"EntityIds": [metadata_id("entity", t.logical_name) for t in tables]})

    def _create_table(self, body: dict[str, Any]) -> Table:
        if not isinstance(body, dict):
            raise odata.bad_request("An entity definition must be a JSON object.")
        prefix, option_prefix = self._publisher_prefixes()
        schema = required_text(body, "SchemaName")
        if body.get("IsActivity"):
            raise odata.bad_request("The emulator does not create activity tables.")
        ownership = body.get("OwnershipType", "UserOwned")
        if ownership not in ("UserOwned", "OrganizationOwned"):
            raise odata.bad_request(f"OwnershipType '{ownership}' is not valid for a new table.")
        attributes = body.get("Attributes") or []
        primaries = [a for a in attributes if isinstance(a, dict) and a.get("IsPrimaryName") is True]
        if len(primaries) != 1 or attribute_type(primaries[0]) != "String":
            # Documented: a primary name StringAttributeMetadata with IsPrimaryName is required.
            # Text unverified.
            raise odata.bad_request("The entity must have exactly one primary name attribute of type "
                                    "StringAttributeMetadata with IsPrimaryName true.")
        primary = primaries[0]
        name_length = max_length(primary, "String")
        table = self.catalog.add_custom_table(
            schema, primary_name_schema=required_text(primary, "SchemaName"), primary_name_max_length=name_length,
            ownership=ownership, entity_set=body.get("EntitySetName"), prefix=prefix,
            display_name=label_text(body.get("DisplayName")), primary_name_display=label_text(primary.get("DisplayName")),
            primary_name_required=required_level(primary))
        for attribute in attributes:
            if attribute is not primary:
                self._add_attribute(table.logical_name, attribute, prefix, option_prefix)
        return table

    # -- Attributes ------------------------------------------------------------------------------------------
    def _attributes(self, table: Table, arg: str | None, rest: list[tuple[str, str | None]]) -> Response:
        cast = None
        if rest:
            if len(rest) > 1 or rest[0][1] is not None or not rest[0][0].startswith(NS):
                raise _no_resource(self.environ)
            cast = rest[0][0][len(NS):]
            if cast not in set(CLASSES.values()):
                raise _no_resource(self.environ)
        if arg is None:
            if cast is None:
                self.only("GET", "POST")
            else:
                self.only("GET")
            if self.method == "POST":
                return self._create_attribute(table)
            columns = [c for c in table.columns.values() if cast is None or CLASSES.get(c.type) == cast]
            rows = filtered([attribute_json(table, c) for c in columns], self.params.get("$filter"),
                             attribute_props(cast), cast or "AttributeMetadata")
            value = [self._shape_attribute(table, r, cast) for r in rows]
            suffix = f"/{NS}{cast}" if cast else ""
            return self._json(f"EntityDefinitions('{table.logical_name}')/Attributes{suffix}", {"value": value})
        column = find_column(table, arg)
        if cast is not None:
            self.only("GET")
            if CLASSES.get(column.type) != cast:
                raise _no_resource(self.environ)
        else:
            self.only("GET", "PUT", "DELETE")
        if self.method == "PUT":
            return self._update_attribute(table, column)
        if self.method == "DELETE":
            return self._delete_attribute(table, column)
        body = self._shape_attribute(table, attribute_json(table, column), cast)
        suffix = f"/{NS}{cast}" if cast else ""
        return self._json(f"EntityDefinitions('{table.logical_name}')/Attributes{suffix}/$entity", body)

    def _shape_attribute(self, table: Table, row: dict[str, Any], cast: str | None) -> dict[str, Any]:
        shaped = selected(row, self.params, attribute_props(cast), cast or "AttributeMetadata")
        for item in odata.split_expand(self.params.get("$expand")):
            name, nested = odata.parse_expand_item(item)
            if name not in ("OptionSet", "GlobalOptionSet") or cast not in (
                    "PicklistAttributeMetadata", "StateAttributeMetadata", "StatusAttributeMetadata"):
                # OptionSet/GlobalOptionSet are navigation properties of the enum attribute types only.
                raise odata.bad_request(f"Could not find a property named '{name}' on type "
                                        f"'{NS}{cast or 'AttributeMetadata'}'.")
            # Nested options as OData 4.0 writes them: OptionSet($select=Options) (what Microsoft's SDK sends).
            # Documented: either property gives the options, local or global (the emulator's are all local).
            shaped[name] = selected(option_set(table, table.columns[row["LogicalName"]]), nested,
                                    OPTION_SET_PROPS, "OptionSetMetadata")
        return shaped

    def _create_attribute(self, table: Table) -> Response:
        prefix, option_prefix = self._publisher_prefixes()
        column = self._add_attribute(table.logical_name, odata.read_json(self.environ), prefix, option_prefix)
        url = f"{self.base}/EntityDefinitions(LogicalName='{table.logical_name}')/Attributes({column_id(table, column)})"
        return 204, [("OData-EntityId", url)], b""

    def _add_attribute(self, table: str, body: Any, prefix: str | None, option_prefix: int) -> Column:
        if not isinstance(body, dict):
            raise odata.bad_request("An attribute definition must be a JSON object.")
        kind = attribute_type(body)
        if kind in LOOKUP_TYPES:
            # Lookups come from RelationshipDefinitions; message as the catalog's.
            raise odata.bad_request("Attribute of type LookupAttributeMetadata cannot be created through the SDK.")
        if kind not in CREATABLE:
            raise odata.bad_request(f"The emulator does not create attributes of type '{kind}'.")
        attrs: dict[str, Any] = {"required": required_level(body), "display_name": label_text(body.get("DisplayName")),
                                 "visible_after": time.time() + self.catalog.column_delay}
        if kind in MAX_LENGTHS:
            attrs["max_length"] = max_length(body, kind)
            attrs["format"] = (body.get("FormatName") or {}).get("Value", "Text") if kind == "String" else "TextArea"
        elif kind == "DateTime":
            attrs["format"] = body.get("Format") or "DateAndTime"
            attrs["datetime_behavior"] = (body.get("DateTimeBehavior") or {}).get("Value") or "UserLocal"
        elif kind in ("Integer", "Decimal", "Money", "Double"):
            attrs["min"], attrs["max"] = body.get("MinValue"), body.get("MaxValue")
            if kind in ("Decimal", "Double") and isinstance(body.get("Precision"), int):
                attrs["precision"] = body["Precision"]
        elif kind == "Picklist":
            attrs["options"], attrs["option_labels"] = options(body, option_prefix)
        elif kind == "File":
            attrs["max_size_kb"] = max_size_kb(body)
        schema = required_text(body, "SchemaName")
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
        if secured and not can_be_secured(table, column):
            raise odata.bad_request(f"The attribute '{column.logical_name}' cannot be secured.")
        if secured and any(column.logical_name in k.attributes for k in table.keys):
            raise odata.bad_request(f"The attribute '{column.logical_name}' is part of an entity key and cannot be "
                                    "secured.")  # keys can't use column-secured columns [doc]
        changes: dict[str, Any] = {"is_secured": secured}
        if "RequiredLevel" in body:
            changes["required"] = required_level(body)
        if "DisplayName" in body:
            changes["display_name"] = label_text(body.get("DisplayName")) or column.display_name
        self.catalog.update_column(table.logical_name, column.logical_name, **changes)
        url = (f"{self.base}/EntityDefinitions(LogicalName='{table.logical_name}')"
               f"/Attributes(LogicalName='{column.logical_name}')")
        return 204, [("OData-EntityId", url)], b""

    # -- Keys ------------------------------------------------------------------------------------------------
    def _keys(self, table: Table, arg: str | None) -> Response:
        if arg is None:
            self.only("GET", "POST")
            if self.method == "GET":
                rows = [key_json(table, k) for k in table.keys]
                return self._json(f"EntityDefinitions('{table.logical_name}')/Keys", {"value": rows})
            body = odata.read_json(self.environ)
            attributes = body.get("KeyAttributes")
            if not isinstance(attributes, list) or not all(isinstance(a, str) for a in attributes):
                raise odata.bad_request("KeyAttributes must be an array of attribute logical names.")
            prefix, _ = self._publisher_prefixes()
            now, delay = time.time(), self.catalog.key_delay
            key = self.catalog.add_alternate_key(table.logical_name, required_text(body, "SchemaName"), attributes,
                                                 prefix=prefix, in_progress_at=now + delay / 2, active_at=now + delay)
            url = (f"{self.base}/EntityDefinitions({metadata_id('entity', table.logical_name)})"
                   f"/Keys({key_id(table, key)})")
            return 204, [("OData-EntityId", url)], b""
        self.only("GET", "DELETE")
        named = NAMED.match(arg)
        for key in table.keys:
            if key_id(table, key) == arg.lower() or (
                    named and named["prop"] == "LogicalName" and key.schema_name.lower() == named["value"].lower()):
                if self.method == "DELETE":
                    remove_key(self.catalog, self.app.store, table.logical_name, key.schema_name)
                    return 204, [], b""
                return self._json(f"EntityDefinitions('{table.logical_name}')/Keys/$entity", key_json(table, key))
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
        named = NAMED.match(arg)
        for rel in self.catalog.relationships.values():
            if (named and named["prop"] == "SchemaName" and rel.schema_name == named["value"]) or \
                    metadata_id("relationship", rel.schema_name.lower()) == arg.lower():
                if self.method == "DELETE":
                    remove_relationship(self.catalog, self.app.store, rel.schema_name)
                    return 204, [], b""
                return self._json("RelationshipDefinitions/$entity", self._relationship_json(rel))
        raise DataverseError(404, "0x80040217", f"Could not find relationship with key {arg}.")  # code unverified

    def _create_relationship(self, body: dict[str, Any]) -> Response:
        if body.get("@odata.type", f"{NS}OneToManyRelationshipMetadata").lstrip("#") != \
                f"{NS}OneToManyRelationshipMetadata":
            raise odata.bad_request("The emulator creates OneToManyRelationshipMetadata relationships only.")
        lookup = body.get("Lookup")
        if not isinstance(lookup, dict) or attribute_type(lookup, "Lookup") != "Lookup":
            raise odata.bad_request("A one-to-many relationship needs a Lookup of type LookupAttributeMetadata.")
        referenced = self.catalog.definition(required_text(body, "ReferencedEntity"))
        referencing = required_text(body, "ReferencingEntity")
        self.catalog.definition(referencing)
        if body.get("ReferencedAttribute", referenced.primary_id) != referenced.primary_id:
            raise odata.bad_request(f"ReferencedAttribute must be '{referenced.primary_id}'.")
        prefix, _ = self._publisher_prefixes()
        schema = required_text(body, "SchemaName")
        self.catalog.add_lookup(
            referencing, required_text(lookup, "SchemaName"), referenced.logical_name, relationship=schema,
            navigation_property=body.get("ReferencingEntityNavigationPropertyName"), prefix=prefix,
            visible_after=time.time() + self.catalog.column_delay, required=required_level(lookup),
            display_name=label_text(lookup.get("DisplayName")))
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
        remove_table(self.catalog, self.app.store, table.logical_name)
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
        remove_column(self.catalog, self.app.store, table.logical_name, column.logical_name)
        return 204, [], b""

    # -- helpers ---------------------------------------------------------------------------------------------
    def _publisher_prefixes(self) -> tuple[str | None, int]:
        """(SchemaName prefix incl. ``_``, option-value prefix) of the solution named by ``MSCRM.SolutionUniqueName``;
        without the header the catalog's prefix and the default publisher's 10000 [memory]."""
        name = (self.environ.get("HTTP_MSCRM.SOLUTIONUNIQUENAME") or self.environ.get("HTTP_MSCRM_SOLUTIONUNIQUENAME")
                or self.params.get("SolutionUniqueName"))
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



def _no_resource(environ: dict) -> DataverseError:
    return DataverseError(404, errors.INVALID_ARGUMENT,
                          f"No HTTP resource was found that matches '{environ.get('PATH_INFO', '')}'.")
