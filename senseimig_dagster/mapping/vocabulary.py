"""Words the proposer knows: abbreviations, CRM and dental synonyms, the concepts behind standard columns, and the
labels of the standard choice columns the client-side copy lists without labels.

Everything is lower case; names are compared as token lists (see :func:`tokens`). Concept phrases name what a
column holds in the words a source system might use; they are the "synonym" evidence of a proposal.
"""

from __future__ import annotations

import re

# Abbreviation -> the words it stands for (applied to both sides, so "est" in a source and a display name agree).
ABBREVIATIONS: dict[str, str] = {
    "dob": "date of birth", "bday": "birthday", "addr": "address", "adr": "address", "ph": "phone", "phn": "phone",
    "tel": "phone", "num": "number", "nbr": "number", "no": "number", "nr": "number", "amt": "amount",
    "dt": "date", "fname": "first name", "lname": "last name", "cell": "mobile", "mob": "mobile",
    "pt": "patient", "pat": "patient", "prov": "provider", "appt": "appointment", "txn": "transaction",
    "trx": "transaction", "ins": "insurance", "desc": "description", "qty": "quantity", "svc": "service",
    "proc": "procedure", "cd": "code", "est": "estimated", "pct": "percent", "org": "organization",
    "loc": "location", "ref": "reference", "dept": "department", "emp": "employer", "grp": "group",
    "sub": "subscriber", "subscr": "subscriber", "eff": "effective", "term": "termination", "rel": "relationship",
    "sec": "secondary", "pri": "primary", "prim": "primary", "ts": "timestamp", "upd": "updated", "mod": "modified",
    "crt": "created", "cre": "created", "tx": "treatment", "hyg": "hygienist", "doc": "document", "msg": "message",
    "st": "state", "zipcode": "postal code", "postcode": "postal code", "mi": "middle name",
    "id": "id", "dur": "duration", "min": "minutes", "mins": "minutes", "stat": "status", "sts": "status",
    "chk": "check", "resp": "response", "max": "maximum", "rem": "remaining", "ded": "deductible",
    "mm": "millimetres", "perio": "periodontal",
}
# Sub-phrases with one meaning wherever they occur, rewritten to one canonical phrase before comparing.
SYNONYMS: dict[str, str] = {
    "surname": "last name", "family name": "last name", "given name": "first name", "forename": "first name",
    "birthday": "date of birth", "birth date": "date of birth", "birthdate": "date of birth",
    "cell phone": "mobile phone", "mobile number": "mobile phone", "e mail": "email", "email address": "email",
    "mail address": "email", "street address": "address line 1", "procedure code": "cdt code",
    "ada code": "cdt code", "tooth number": "tooth", "created on": "created at", "created date": "created at",
    "date created": "created at", "create date": "created at", "created timestamp": "created at",
    "modified at": "updated at", "modified on": "updated at", "last modified": "updated at",
    "date modified": "updated at", "modified date": "updated at", "last updated": "updated at",
    "updated date": "updated at", "updated timestamp": "updated at", "preferred name": "nickname",
    "nick name": "nickname", "chart number": "patient number", "zip code": "postal code", "note text": "notes",
}
# Whole names that mean a longer one (only when the name is exactly this: "address" alone, not "address line 2").
WHOLE_SYNONYMS: dict[str, str] = {
    "sex": "gender", "mobile": "mobile phone", "street": "address line 1", "address": "address line 1",
    "address 1": "address line 1", "address 2": "address line 2", "suite": "address line 2", "town": "city",
    "province": "state", "postal": "postal code", "zip": "postal code", "record id": "id", "source id": "id", "legacy id": "id",
    "external id": "id", "mrn": "patient number", "note": "notes", "comments": "notes", "remarks": "notes",
    "deleted": "is deleted", "active": "is active", "inactive": "is active", "created": "created at",
    "updated": "updated at", "modified": "updated at",
}
# Target concepts: column (standard tables, the plan's fixed columns; lookups by navigation property) -> phrases.
CONCEPTS: dict[str, tuple[str, ...]] = {
    "firstname": ("first name",), "lastname": ("last name",), "middlename": ("middle name",),
    "salutation": ("title", "salutation"), "birthdate": ("date of birth",),
    "gendercode": ("gender",), "mobilephone": ("mobile phone",), "telephone1": ("work phone", "business phone",
                                                                                 "office phone", "phone"),
    "telephone2": ("home phone",), "emailaddress1": ("email",),     "address1_line2": ("address line 2",), "address1_city": ("city",), "address1_stateorprovince": ("state",),
    "address1_postalcode": ("postal code",), "preferredcontactmethodcode": ("preferred contact method",
                                                                            "contact preference"),
    "statecode": ("status", "is active"), "description": ("description", "notes", "body", "message"),
    "name": ("name",), "address1_line1": ("address line 1", "claims address", "mailing address"),
    "nickname": ("nickname", "abbreviation", "initials"), "subject": ("subject", "category", "title"),
    "internalemailaddress": ("email",), "filename": ("file name",),
    "mimetype": ("mime type", "content type"), "actualstart": ("started at", "start time", "start"),
    "actualend": ("ended at", "end time", "end"), "directioncode": ("direction",),
    "smig_sourcesystemid": ("id",), "smig_sourcecreatedon": ("created at",),
    "smig_sourcemodifiedon": ("updated at",), "smig_providerstatus": ("provider status",),
    "smig_procedurecode": ("cdt code",),
    # plan columns by their name without prefix and slot ("smig_{Slot}CarrierId" -> "carrierid")
    "carrierid": ("payer id", "carrier id", "insurance company id"),
    "relationship": ("relationship to policyholder", "relationship to subscriber", "subscriber relationship"),
    "providerrole": ("role", "provider role", "provider type"), "payerid": ("payer code", "payer id",
                                                                             "carrier code", "edi payer id"),
    # lookups (navigation properties; "{table}" stands for a routed object's table)
    "parentcustomerid_account": ("location id", "primary location id", "default location id", "practice id"),
    "parentaccountid": ("organization id", "parent account id", "dso id", "parent id"),
    "objectid_contact": ("patient id", "contact id"), "regardingobjectid_contact_{table}": ("patient id",
                                                                                           "contact id"),
    "ownerid_{table}": ("user id", "owner id", "staff id"),
}
# Labels of standard choice columns (Microsoft's defaults; the client-side copy keeps values only) [memory].
STANDARD_OPTION_LABELS: dict[str, tuple[tuple[object, str], ...]] = {
    "statecode": ((0, "Active"), (1, "Inactive")),
    "gendercode": ((1, "Male"), (2, "Female")),
    "preferredcontactmethodcode": ((1, "Any"), (2, "Email"), (3, "Phone"), (4, "Fax"), (5, "Mail")),
    "directioncode": ((True, "Outgoing"), (False, "Incoming")),
}
# Source values and option labels meaning the same (both sides normalised to lower case).
VALUE_SYNONYMS: dict[str, str] = {
    "doctor": "dentist", "dr": "dentist", "child": "dependent", "son": "dependent", "daughter": "dependent",
    "outbound": "outgoing", "inbound": "incoming", "e mail": "email", "true": "active", "false": "inactive",
    "yes": "active", "no": "inactive", "m": "male", "f": "female", "wife": "spouse", "husband": "spouse",
}
# Decorations custom exports put around field names; stripped before comparing.
NOISE_PREFIXES = ("pt", "x", "c", "cust", "custom", "fld", "f", "usr", "src", "sensei", "s", "udf", "sm", "z")
NOISE_SUFFIXES = ("c", "fld", "field", "txt", "val", "value", "col")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def raw_tokens(name: str) -> list[str]:
    """``PtDOB_Date`` -> ``['pt', 'dob', 'date']``: camel case, digits and separators split, lower case."""
    return [t for t in _SPLIT.split(_CAMEL.sub(" ", name).lower()) if t]


def source_forms(name: str) -> tuple[str, ...]:
    """The canonical phrases a source field name may stand for: with and without its decorations (``pt_nbr`` is
    the patient number, ``pt_dob`` a date of birth)."""
    words = raw_tokens(name)
    return tuple(dict.fromkeys((canonical(words), canonical(words, strip_noise=False))))


def canonical(words: list[str], *, strip_noise: bool = True) -> str:
    """Tokens -> one canonical phrase: decorations stripped, abbreviations expanded, synonym phrases rewritten."""
    if strip_noise:
        while len(words) > 1 and words[0] in NOISE_PREFIXES:
            words = words[1:]
        while len(words) > 1 and words[-1] in NOISE_SUFFIXES:
            words = words[:-1]
    phrase = " ".join(ABBREVIATIONS.get(w, w) for w in words)
    for _ in range(2):  # a rewrite may expose another ("bday" -> "birthday" -> "date of birth")
        phrase = _rewrite(phrase)
    return WHOLE_SYNONYMS.get(phrase, phrase)


def _rewrite(phrase: str) -> str:
    padded = f" {phrase} "
    for old in sorted(SYNONYMS, key=len, reverse=True):  # longest first: "cell phone" before "mobile"
        if f" {old} " in padded:
            padded = padded.replace(f" {old} ", f" {SYNONYMS[old]} ")
    return padded.strip()


def value_form(value: str) -> str:
    text = " ".join(raw_tokens(value))
    return VALUE_SYNONYMS.get(text, text)
