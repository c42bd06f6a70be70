"""Navigation property names for appointment and phonecall, missing from ``standard_tables.json``.

``standard_tables.json`` is Microsoft's published metadata (from MicrosoftDocs/powerapps-docs), copied
unchanged; its appointment and phonecall pages are in the old format without navigation property names. The
names below come from the Many-to-One relationship tables of Microsoft's entity reference:
https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/appointment and
https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/phonecall
(e.g. ``Contact_Appointments`` -> ``regardingobjectid_contact_appointment``, ``owner_phonecalls`` ->
``ownerid_phonecall``, ``manualsla_phonecall`` -> ``sla_phonecall_sla``). They follow the same scheme as the email
page, which the JSON does carry (``regardingobjectid_contact_email``, ``ownerid_email``).
"""

from __future__ import annotations

_MISSING = ("appointment", "phonecall")


def navigation_property(table: str, attribute: str, target: str) -> str | None:
    """The documented single-valued navigation property of ``table.attribute`` pointing at ``target``."""
    if table not in _MISSING:
        return None
    if attribute == "regardingobjectid":
        return f"regardingobjectid_{target}_{table}"
    if attribute == "slaid":
        return f"sla_{table}_sla"
    if attribute == "slainvokedid":
        return f"slainvokedid_{table}_sla"
    if attribute in {
        "ownerid",  # one property for both systemuser and team targets (relationship owner_<table>s)
        "createdby",
        "createdonbehalfby",
        "modifiedby",
        "modifiedonbehalfby",
        "owningbusinessunit",
        "owningteam",
        "owninguser",
        "transactioncurrencyid",
    }:
        return f"{attribute}_{table}"
    return None
