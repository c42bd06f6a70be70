"""Seed data of the Dataverse emulator: the records every Dataverse environment ships with.

An organization (``maxuploadfilesize`` 5 MB) with its base currency (US Dollar), a business unit, system users (enabled, disabled, non-interactive and
one application user per app registration) and a team, plus the app registrations (client id and secret) the token
endpoint accepts; optionally (``sharepoint``) server-based SharePoint integration: the default ``sharepointsite`` and,
per table with document management on, its library's ``sharepointdocumentlocation`` (relative URL = the table's
logical name, as Dynamics names the library) and the ``regardingobjectid_<table>`` lookup the table gains
(:func:`enable_document_management`; Microsoft's published metadata lists a fresh environment's targets only). The default is the package's ``seed.json``; ``senseimig sandbox dataverse --seed PATH`` takes
another JSON or YAML file of the same shape. GUIDs come from the file, so tests and demos can name them.

Seeding happens once per store: a store that already holds an organization record is left alone (restarts keep
what the previous run wrote), but its default owner is always set from the seed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from senseimig_dagster.sandbox.dataverse_emulator.metadata import Catalog, Lookup
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore

DEFAULT_SEED_FILE = "seed.json"
LOCATION_TABLE = "sharepointdocumentlocation"


@dataclass(frozen=True)
class Seed:
    tenant: str
    apps: dict[str, str]  # client id -> client secret (never logged or printed)
    application_users: dict[str, str]  # client id -> systemuserid of its application user
    organization: dict[str, Any]
    businessunit: dict[str, Any]
    systemusers: tuple[dict[str, Any], ...]
    teams: tuple[dict[str, Any], ...]
    sharepoint: dict[str, Any] | None = None  # {"site": {...}, "libraries": {table: location id}}
    currency: dict[str, Any] | None = None  # the organization's base transactioncurrency

    @property
    def document_tables(self) -> tuple[str, ...]:
        """Tables with document management on (a library each)."""
        return tuple((self.sharepoint or {}).get("libraries") or ())

    def __repr__(self) -> str:  # never the secrets
        return f"Seed(tenant={self.tenant!r}, apps={sorted(self.apps)!r}, users={len(self.systemusers)})"

    @property
    def default_owner(self) -> str:
        """The application user owning records created without an owner (the first app registration's)."""
        return next(iter(self.application_users.values()))

    def user(self, email: str) -> dict[str, Any]:
        """A seeded system user by ``internalemailaddress`` (case-insensitive, like Dataverse's collation)."""
        return next(u for u in self.systemusers if u["internalemailaddress"].lower() == email.lower())


def load_seed(path: str | Path | None = None) -> Seed:
    """Read a seed file (JSON, or YAML for ``.yaml``/``.yml``); ``None`` is the packaged default."""
    if path is None:
        raw = json.loads(resources.files(__package__).joinpath(DEFAULT_SEED_FILE).read_text("utf-8"))
    else:
        path = Path(path)
        text = path.read_text("utf-8")
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml  # PyYAML comes with dagster

            raw = yaml.safe_load(text)
        else:
            raw = json.loads(text)
    return _parse(raw)


def _parse(raw: Any) -> Seed:
    if not isinstance(raw, dict):
        raise ValueError("seed file: the top level must be a mapping")
    missing = [k for k in ("tenant", "applications", "organization", "businessunit", "systemusers") if k not in raw]
    if missing:
        raise ValueError(f"seed file: missing {', '.join(missing)}")
    bu = dict(raw["businessunit"])
    users = []
    for user in raw["systemusers"]:
        user = dict(user)
        user.setdefault("businessunitid", bu["businessunitid"])  # explicit null: a user outside any business unit
        user.setdefault("fullname", f"{user.get('firstname', '')} {user.get('lastname', '')}".strip())
        user.setdefault("isdisabled", False)
        users.append(user)
    user_ids = {u["systemuserid"].lower() for u in users}
    apps, app_users = {}, {}
    for app in raw["applications"]:
        client_id, secret, user_id = app.get("client_id"), app.get("client_secret"), app.get("systemuserid")
        if not client_id or not secret or not user_id:
            raise ValueError("seed file: each application needs client_id, client_secret and systemuserid")
        if user_id.lower() not in user_ids:
            raise ValueError(f"seed file: application {client_id}: systemuserid {user_id} is not a seeded user")
        apps[client_id], app_users[client_id] = secret, user_id.lower()
    if not apps:
        raise ValueError("seed file: at least one application is needed")
    teams = tuple({"businessunitid": bu["businessunitid"], **t} for t in raw.get("teams") or ())
    sharepoint = raw.get("sharepoint")
    if sharepoint is not None and not (isinstance(sharepoint, dict) and isinstance(sharepoint.get("site"), dict)):
        raise ValueError("seed file: sharepoint needs a site")
    return Seed(str(raw["tenant"]), apps, app_users, dict(raw["organization"]), bu, tuple(users), teams,
                sharepoint, raw.get("currency"))


def enable_document_management(catalog: Catalog, tables: Iterable[str]) -> None:
    """What turning document management on for ``tables`` does to the schema: a location's ``regardingobjectid``
    may point at their records (navigation ``regardingobjectid_<table>`` [memory]). Applied at every start."""
    locations = catalog.definition(LOCATION_TABLE)
    lookups = dict(locations.lookups)
    for table in tables:
        lookups.setdefault(f"regardingobjectid_{table}", Lookup(f"regardingobjectid_{table}", "regardingobjectid",
                                                                (table,)))
    catalog._put(replace(locations, lookups=lookups))


def apply_seed(store: RecordStore, seed: Seed) -> bool:
    """Write the seed's records into a fresh store (``True``), or leave a seeded one alone (``False``); either way
    records created without an owner go to the seed's application user from now on."""
    store.default_owner = seed.default_owner
    store.base_currency = (seed.currency or {}).get("transactioncurrencyid")
    enable_document_management(store.catalog, seed.document_tables)  # schema: at every start, like custom schema
    if store.count("organization"):
        return False
    with store.transaction():  # all or nothing: a half-seeded store would never be completed
        if seed.currency:
            store.put_system_record("transactioncurrency", seed.currency)
        store.put_system_record("organization", seed.organization)
        store.put_system_record("businessunit", seed.businessunit)
        for user in seed.systemusers:
            store.put_system_record("systemuser", user)
        for team in seed.teams:
            store.put_system_record("team", team)
        if seed.sharepoint:
            site = seed.sharepoint["site"]
            store.put_system_record("sharepointsite", site)
            for table, location_id in seed.sharepoint.get("libraries", {}).items():
                store.put_system_record(LOCATION_TABLE, {
                    "sharepointdocumentlocationid": location_id, "name": f"Documents on {site['name']} ({table})",
                    "relativeurl": table, "parentsiteorlocation": site["sharepointsiteid"]})
    return True
