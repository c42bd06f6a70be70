"""Unbound functions of the Web API (Microsoft's "Use Web API functions"): ``WhoAmI()``.

``WhoAmI`` answers the calling user's ids (L/webapi/reference/whoamiresponse: BusinessUnitId, UserId,
OrganizationId). The emulator's caller is the application user records are created for (``store.default_owner``,
set by the seed); without a seed there is no user and the function answers 404, as for an unknown resource.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.app import DataverseEmulator, Response

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"


def route(app: DataverseEmulator, environ: dict) -> Response | None:
    if environ.get("PATH_INFO", "") != f"{BASE_PATH}/WhoAmI()" or environ.get("REQUEST_METHOD") != "GET":
        return None
    user = app.store.retrieve("systemuser", app.store.default_owner) if app.store.default_owner else None
    organization = next(iter(app.store.query("organization", limit=1)), None)
    if user is None or organization is None:
        raise DataverseError(404, "0x8006088a", "Resource not found for the segment 'WhoAmI'.")
    body = {"@odata.context": f"{app._base(environ)}/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
            "BusinessUnitId": user.values.get("businessunitid"), "UserId": user.id, "OrganizationId": organization.id}
    return 200, [("Content-Type", JSON_TYPE)], json.dumps(body).encode()
