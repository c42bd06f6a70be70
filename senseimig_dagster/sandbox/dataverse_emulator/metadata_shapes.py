"""JSON shapes of the metadata API (``EntityDefinitions``, ``Attributes``, ``Keys``) and the parsing of the request
bodies that create them: the definitions side of :mod:`.metadata_api`, kept apart so the routes read as routes."""

from __future__ import annotations

import io
import json
import re
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator import errors, odata
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.metadata import (
    LOOKUP_TYPES,
    AlternateKey,
    Column,
    Table,
    metadata_id,
)

NS = "Microsoft.Dynamics.CRM."
NAMED = re.compile(r"^(?P<prop>LogicalName|SchemaName)='(?P<value>[^']*)'$")
PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,7}$")  # 2-8 alphanumerics starting with a letter [community/memory]
# Attribute types the metadata API creates here, with their metadata class (those of Microsoft's
# "Create and update column definitions using the Web API", plus Double).
CREATABLE = {"String": "StringAttributeMetadata", "Memo": "MemoAttributeMetadata",
              "DateTime": "DateTimeAttributeMetadata", "Money": "MoneyAttributeMetadata",
              "Decimal": "DecimalAttributeMetadata", "Integer": "IntegerAttributeMetadata",
              "Boolean": "BooleanAttributeMetadata", "Picklist": "PicklistAttributeMetadata",
              "Double": "DoubleAttributeMetadata", "File": "FileAttributeMetadata"}
CLASSES = {**CREATABLE, "Lookup": "LookupAttributeMetadata", "Customer": "LookupAttributeMetadata",
            "Owner": "LookupAttributeMetadata", "State": "StateAttributeMetadata", "Status": "StatusAttributeMetadata",
            "Uniqueidentifier": "UniqueIdentifierAttributeMetadata", "BigInt": "BigIntAttributeMetadata",
            "EntityName": "EntityNameAttributeMetadata", "Image": "ImageAttributeMetadata"}
MAX_LENGTHS = {"String": 4000, "Memo": 1048576}  # StringAttributeMetadata/MemoAttributeMetadata limits [doc]
SYSTEM_COLUMNS = frozenset({"createdon", "modifiedon", "createdby", "modifiedby", "versionnumber", "statecode",
                             "statuscode", "ownerid", "overriddencreatedon"})
# ObjectTypeCodes of the standard tables [memory]; custom tables get 10000 and up [doc].
STANDARD_CODES = {"account": 1, "contact": 2, "annotation": 5, "systemuser": 8, "team": 9, "businessunit": 10,
                   "activityparty": 135, "organization": 1019, "fieldsecurityprofile": 1200,
                   "fieldpermission": 1201, "appointment": 4201, "email": 4202, "phonecall": 4210,
                   "sdkmessagefilter": 4607, "solution": 7100, "publisher": 7101, "sharepointsite": 4502,
                   "sharepointdocumentlocation": 9508, "transactioncurrency": 9105}
ATTRIBUTE_PROPS = ("MetadataId", "LogicalName", "SchemaName", "EntityLogicalName", "AttributeType",
                    "AttributeTypeName", "IsCustomAttribute", "IsPrimaryId", "IsPrimaryName", "IsValidForCreate",
                    "IsValidForUpdate", "IsSecured", "CanBeSecuredForCreate", "CanBeSecuredForRead",
                    "CanBeSecuredForUpdate", "RequiredLevel", "DisplayName")
DERIVED_PROPS = {"String": ("MaxLength", "FormatName"), "Memo": ("MaxLength", "Format"),
                  "DateTime": ("Format", "DateTimeBehavior"), "Integer": ("MinValue", "MaxValue"),
                  "Decimal": ("MinValue", "MaxValue"), "Money": ("MinValue", "MaxValue"),
                  "Double": ("MinValue", "MaxValue"), "Lookup": ("Targets",), "Customer": ("Targets",),
                  "Owner": ("Targets",), "File": ("MaxSizeInKB",)}
# FileAttributeMetadata.MaxSizeInKB: default 32768 (32 MB), maximum 10,485,760 (10 GB)
# (Microsoft's "File columns").
FILE_DEFAULT_KB, FILE_MAX_KB = 32_768, 10_485_760


# -- JSON shapes ---------------------------------------------------------------------------------------------------
def label(text: str | None, managed: bool = False) -> dict[str, Any]:
    """A Label as Dataverse returns it (LocalizedLabel: Label, LanguageCode, IsManaged, MetadataId, HasChanged)."""
    if text is None:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    localized = {"Label": text, "LanguageCode": 1033, "IsManaged": managed,
                 "MetadataId": metadata_id("label", text), "HasChanged": None}
    return {"LocalizedLabels": [localized], "UserLocalizedLabel": localized}


def entity_json(table: Table) -> dict[str, Any]:
    return {"MetadataId": metadata_id("entity", table.logical_name), "LogicalName": table.logical_name,
            "SchemaName": table.schema_name, "EntitySetName": table.entity_set,
            "PrimaryIdAttribute": table.primary_id, "PrimaryNameAttribute": table.primary_name,
            "OwnershipType": table.ownership, "IsCustomEntity": table.is_custom,
            "ObjectTypeCode": table.object_type_code or STANDARD_CODES.get(table.logical_name),
            "IsOptimisticConcurrencyEnabled": True,  # true for custom tables [doc]; standard [memory]
            "DisplayName": label(table.display_name)}


def column_id(table: Table, column: Column) -> str:
    return metadata_id("attribute", table.logical_name, column.logical_name)


def key_id(table: Table, key: AlternateKey) -> str:
    return metadata_id("key", table.logical_name, key.schema_name.lower())


def can_be_secured(table: Table, column: Column) -> bool:
    return column.logical_name not in (table.primary_id, table.primary_name, *SYSTEM_COLUMNS) and \
        column.type in CLASSES and column.type not in ("Uniqueidentifier", "State", "Status", "Owner")


def attribute_json(table: Table, column: Column) -> dict[str, Any]:
    securable = can_be_secured(table, column)
    row: dict[str, Any] = {
        "@odata.type": f"#{NS}{CLASSES.get(column.type, 'AttributeMetadata')}",
        "MetadataId": column_id(table, column), "LogicalName": column.logical_name,
        "SchemaName": column.schema_name, "EntityLogicalName": table.logical_name, "AttributeType": column.type,
        "AttributeTypeName": {"Value": f"{column.type}Type"}, "IsCustomAttribute": column.is_custom,
        "IsPrimaryId": column.logical_name == table.primary_id,
        "IsPrimaryName": column.logical_name == table.primary_name,
        "IsValidForCreate": column.valid_for_create, "IsValidForUpdate": column.valid_for_update,
        "IsSecured": column.is_secured, "CanBeSecuredForCreate": securable, "CanBeSecuredForRead": securable,
        "CanBeSecuredForUpdate": securable,
        "RequiredLevel": {"Value": column.required, "CanBeChanged": True,
                          "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings"},
        "DisplayName": label(column.display_name),
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


def option_set(table: Table, column: Column) -> dict[str, Any]:
    labels = column.option_labels or (None,) * len(column.options)
    return {"MetadataId": metadata_id("optionset", table.logical_name, column.logical_name), "IsGlobal": False,
            "OptionSetType": column.type,
            "Options": [_option(v, text, managed=not column.is_custom)
                        for v, text in zip(column.options, labels, strict=True)]}


def _option(value: int, text: str | None, *, managed: bool) -> dict[str, Any]:
    """An OptionMetadata with the properties Microsoft's examples show (no colors, tags or parents here)."""
    return {"Value": value, "Color": None, "IsManaged": managed, "ExternalValue": None, "ParentValues": [],
            "Tag": None, "IsHidden": False, "MetadataId": None, "HasChanged": None,
            "Label": label(text, managed), "Description": label(None)}


OPTION_SET_PROPS = ("MetadataId", "IsGlobal", "OptionSetType", "Options")


def simple_types(definition: Any) -> Any:
    """A ``CreateEntities`` definition with its ``Complex*Metadata`` types named as the EntityDefinitions API names
    them (``ComplexStringAttributeMetadata`` -> ``StringAttributeMetadata``), nested objects included."""
    if isinstance(definition, list):
        return [simple_types(d) for d in definition]
    if not isinstance(definition, dict):
        return definition
    out = {k: simple_types(v) for k, v in definition.items()}
    kind = out.get("@odata.type")
    if isinstance(kind, str) and kind.lstrip("#").startswith(f"{NS}Complex"):
        out["@odata.type"] = NS + kind.lstrip("#")[len(NS) + len("Complex"):]
    return out


def key_json(table: Table, key: AlternateKey) -> dict[str, Any]:
    return {"MetadataId": key_id(table, key), "SchemaName": key.schema_name, "LogicalName": key.schema_name.lower(),
            "EntityLogicalName": table.logical_name, "KeyAttributes": list(key.attributes),
            "EntityKeyIndexStatus": key.status}


def attribute_props(cast: str | None) -> tuple[str, ...]:
    kinds = [k for k, c in CLASSES.items() if c == cast]
    return ATTRIBUTE_PROPS + tuple(p for k in kinds for p in DERIVED_PROPS.get(k, ()))


def select_text(params: dict[str, str]) -> str:
    return params.get("$select", "")


def unknown(prop: str, type_name: str) -> DataverseError:
    # OData's message for an unknown property in a query option (as for records [memory]).
    return DataverseError(400, "0x80060888", f"Could not find a property named '{prop}' on type '{NS}{type_name}'.")


def selected(row: dict[str, Any], params: dict[str, str], allowed: tuple[str, ...], type_name: str) -> dict[str, Any]:
    select = odata.parse_select(params.get("$select"))
    if select is None:
        return row
    for prop in select:
        if prop not in allowed:
            raise unknown(prop, type_name)
    keep = {*select, "MetadataId"}  # MetadataId comes back whatever $select says [memory]
    return {k: v for k, v in row.items() if k in keep or k == "@odata.type"}


def filtered(rows: list[dict[str, Any]], text: str | None, allowed: tuple[str, ...],
              type_name: str) -> list[dict[str, Any]]:
    conditions = odata.parse_filter(text)
    for prop, _ in conditions:
        if prop not in allowed:
            raise unknown(prop, type_name)
    return [r for r in rows if all(r.get(p) in (v.values if isinstance(v, odata.AnyOf) else (v,))
                                   for p, v in conditions)]


def find_column(table: Table, arg: str) -> Column:
    named = NAMED.match(arg)
    for column in table.columns.values():
        if (named and named["prop"] == "LogicalName" and column.logical_name == named["value"]) or \
                column_id(table, column) == arg.lower():
            return column
    raise DataverseError(404, "0x80040217",  # code and text unverified
                         f"Could not find attribute with key {arg} on entity '{table.logical_name}'.")


# -- request bodies ------------------------------------------------------------------------------------------------


def required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise odata.bad_request(f"The property '{name}' is required.")
    return value


def attribute_type(body: dict[str, Any], default: str | None = None) -> str:
    """AttributeType, which must agree with ``@odata.type`` when both are sent."""
    odata_type = str(body.get("@odata.type") or "").lstrip("#")
    from_type = next((k for k, c in CLASSES.items() if odata_type == NS + c), None)
    if from_type == "File" and body.get("AttributeType") in (None, "Virtual", "File"):
        return "File"  # FileAttributeMetadata's AttributeType is Virtual [community, memory]
    kind = body.get("AttributeType") or from_type or default
    if not isinstance(kind, str) or (odata_type and from_type is None and odata_type != f"{NS}AttributeMetadata") \
            or (from_type is not None and CLASSES.get(kind) != CLASSES[from_type]):
        raise odata.bad_request(f"The attribute type '{kind}' does not match '@odata.type' '{odata_type}'.")
    return kind


def label_text(label: Any) -> str | None:
    if not isinstance(label, dict):
        return None
    for item in label.get("LocalizedLabels") or ():
        if isinstance(item, dict) and isinstance(item.get("Label"), str):
            return item["Label"]
    return None


def required_level(body: dict[str, Any]) -> str:
    level = (body.get("RequiredLevel") or {}).get("Value", "None")
    if level not in ("None", "Recommended", "ApplicationRequired"):  # SystemRequired is the platform's own
        raise odata.bad_request(f"RequiredLevel '{level}' is not valid for a custom attribute.")
    return level


def max_length(body: dict[str, Any], kind: str) -> int:
    value = body.get("MaxLength", 100 if kind == "String" else 2000)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LENGTHS[kind]:
        raise odata.bad_request(f"MaxLength must be between 1 and {MAX_LENGTHS[kind]} for a {kind} attribute.")
    return value


def max_size_kb(body: dict[str, Any]) -> int:
    value = body.get("MaxSizeInKB", FILE_DEFAULT_KB)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= FILE_MAX_KB:
        raise odata.bad_request(f"MaxSizeInKB must be between 1 and {FILE_MAX_KB} for a File attribute.")
    return value


def options(body: dict[str, Any], option_prefix: int) -> tuple[list[int], list[str]]:
    """Option values as given; a missing Value gets the next from the publisher's prefix × 10000."""
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
        labels.append(label_text(option.get("Label")) or str(value))
    return values, labels


def check_publisher(environ: dict) -> None:
    """Prefix rules of a publisher write [community]; the record endpoints then do the rest (the
    option-value prefix range 10000-99999 comes from the column's metadata). The body is put back for them."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return  # the record endpoint answers the bad JSON
    prefix = body.get("customizationprefix") if isinstance(body, dict) else None
    if prefix is not None and (not isinstance(prefix, str) or not PREFIX.match(prefix)
                               or prefix.lower().startswith("mscrm")):
        # Code and text unverified.
        raise DataverseError(400, errors.INVALID_ARGUMENT,
                             "The customization prefix must be 2 to 8 letters or digits, start with a letter and not "
                             "start with 'mscrm'.")
