"""The one error type of the emulator, shaped like Dataverse's error body.

Shape from L/webapi/compose-http-requests-handle-errors: ``{"error":{"code","message"}}``; the code is a hex
string unrelated to the HTTP status.
"""

from __future__ import annotations

from typing import Any

# Codes the emulator uses. Where Microsoft documents the code for a situation it is cited at the use site;
# INVALID_ARGUMENT is used where no source gives the exact code (flagged "unverified" there).
MAX_LENGTH_EXCEEDED = "0x80044331"  # L/reference/web-service-error-codes
PAYLOAD_ERROR = "0x80048d19"  # ODataClientPayloadError ("Error identified in Payload"), web-service-error-codes
OPTION_OUT_OF_RANGE = "0x8004431A"
KEY_NAME_EXISTS = "0x80060893"  # EntityKeyNameExists, L/define-alternate-keys-entity
KEY_ATTRIBUTES_EXIST = "0x80060894"  # EntityKeyWithSelectedAttributesExists
INVALID_ARGUMENT = "0x80040203"
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist: verified in L/reference/web-service-error-codes (include file)


class DataverseError(Exception):
    """An error Dataverse would return: HTTP status, Dataverse error code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(table: str, record_id: str) -> DataverseError:
    # Message as in Microsoft's "Perform conditional operations using the Web API"; code ObjectDoesNotExist
    # (web-service-error-codes).
    return DataverseError(404, NOT_FOUND, f"{table} With Id = {record_id} Does Not Exist")
