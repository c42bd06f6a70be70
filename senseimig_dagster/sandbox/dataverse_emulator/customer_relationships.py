"""The ``CreateCustomerRelationships`` action (Microsoft's "Create and update column definitions using the Web API",
"Create a customer lookup column"): one Customer column on the referencing table and one 1:N relationship per
referenced table (account and contact), answered with the relationships' and the column's MetadataIds.

Each relationship's navigation property is ``<lookup SchemaName>_<referenced table>``, as Dataverse names the
standard customer lookups' (``parentcustomerid_account``); the article doesn't show the names it creates.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from senseimig_dagster.sandbox.dataverse_emulator import odata
from senseimig_dagster.sandbox.dataverse_emulator.metadata import metadata_id
from senseimig_dagster.sandbox.dataverse_emulator.metadata_shapes import (
    NS,
    label_text,
    required_level,
    required_text,
)

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import Response
    from senseimig_dagster.sandbox.dataverse_emulator.metadata_api import _Call

JSON_TYPE = "application/json; odata.metadata=minimal"


def create(call: _Call, body: dict[str, Any]) -> Response:
    lookup = body.get("Lookup")
    relationships = body.get("OneToManyRelationships")
    # The article sends AttributeType "Lookup" with @odata.type ComplexLookupAttributeMetadata: both accepted.
    if not isinstance(lookup, dict) or lookup.get("AttributeType", "Lookup") not in ("Lookup", "Customer") or \
            str(lookup.get("@odata.type", "")).lstrip("#") != f"{NS}ComplexLookupAttributeMetadata":
        raise odata.bad_request("CreateCustomerRelationships needs a Lookup of type ComplexLookupAttributeMetadata.")
    if not isinstance(relationships, list) or len(relationships) != 2:
        raise odata.bad_request("CreateCustomerRelationships needs two OneToManyRelationships (account and contact).")
    prefix, _ = call._publisher_prefixes()
    schema = required_text(lookup, "SchemaName")
    ids = []
    for relationship in relationships:
        referenced = call.catalog.definition(required_text(relationship, "ReferencedEntity"))
        name = required_text(relationship, "SchemaName")
        call.catalog.add_lookup(
            required_text(relationship, "ReferencingEntity"), schema, referenced.logical_name, relationship=name,
            navigation_property=f"{schema}_{referenced.logical_name}", prefix=prefix, customer=True,
            visible_after=time.time() + call.catalog.column_delay, required=required_level(lookup),
            display_name=label_text(lookup.get("DisplayName")))
        ids.append(metadata_id("relationship", name.lower()))
    referencing = required_text(relationships[0], "ReferencingEntity")
    body_out = {"@odata.context": f"{call.base}/$metadata#{NS}CreateCustomerRelationshipsResponse",
                "RelationshipIds": ids, "AttributeId": metadata_id("attribute", referencing, schema.lower())}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body_out).encode()
