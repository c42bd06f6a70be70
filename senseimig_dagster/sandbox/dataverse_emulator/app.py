"""The Dataverse Web API record endpoints as a plain WSGI app (in-process via ``httpx.WSGITransport`` or served
by ``sandbox.tls.serve_wsgi``). Semantics from Microsoft's Web API documentation (CRUD, upsert, conditional
headers, keys, paging, error bodies); every error is ``{"error":{"code","message"}}``.

With ``protection`` (a :class:`~.limits.ServiceProtection`) every request is admitted under the limits of
Microsoft's "Service protection API limits": the user is the bearer token's client id (``"anonymous"`` without
auth), the simulated web server comes from the ``ARRAffinity`` cookie (set on the response when the request
didn't carry it), a refused request gets 429 with ``Retry-After`` and Dataverse's body, and every response
carries ``x-ms-dop-hint``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from senseimig_dagster.sandbox.dataverse_emulator import (
    activity_parties,
    annotations,
    batch,
    bulk,
    bulk_delete,
    errors,
    fetchxml,
    file_columns,
    files,
    functions,
    metadata_api,
    navigation,
    odata,
    properties,
)
from senseimig_dagster.sandbox.dataverse_emulator.errors import DataverseError
from senseimig_dagster.sandbox.dataverse_emulator.limits import (
    AFFINITY_COOKIE,
    DOP_HINT_HEADER,
    Admission,
    ServiceProtection,
    Throttled,
)
from senseimig_dagster.sandbox.dataverse_emulator.metadata import Catalog, Table
from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore, StoredRecord, not_found

BASE_PATH = "/api/data/v9.2"
JSON_TYPE = "application/json; odata.metadata=minimal"
_REASONS = {200: "OK", 201: "Created", 204: "No Content", 206: "Partial Content", 304: "Not Modified",
            400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            412: "Precondition Failed", 413: "Request Entity Too Large", 429: "Too Many Requests",
            500: "Internal Server Error"}
_PRINCIPALS = frozenset({"systemuser", "team"})
ANONYMOUS = "anonymous"  # the service-protection user when there is no token validator

StartResponse = Callable[..., object]
TokenValidator = Callable[[str], object | None]  # e.g. EntraStandIn.token_info: None = unknown or expired
Response = tuple[int, list[tuple[str, str]], bytes]


class DataverseEmulator:
    """WSGI app for ``/api/data/v9.2/<entityset>...`` over ``store``; ``token_validator`` turns on bearer auth
    (tokens issued by ``tenant`` for ``audience``), ``protection`` service protection limits,
    ``bulk_unsupported`` the tables refusing bulk messages."""

    def __init__(self, catalog: Catalog, store: RecordStore, *, token_validator: TokenValidator | None = None,
                 tenant: str = "00000000-0000-0000-0000-000000000000",
                 protection: ServiceProtection | None = None, bulk_unsupported: Iterable[str] = (),
                 audience: str | None = None) -> None:
        self.catalog = catalog
        # The environment URL tokens must be issued for (their ``aud``); None: the URL the request was sent to.
        self.audience = None if audience is None else _origin(audience)
        self.bulk_unsupported = set(bulk_unsupported)  # tables (logical names) without bulk messages (bulk.py)
        self.store = store
        self.token_validator = token_validator
        self.tenant = tenant
        self.protection = protection

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        extra: list[tuple[str, str]] = []  # protection headers, on every response (errors and 429 included)
        admission: Admission | None = None
        try:
            user = self._authenticate(environ)
            outcome = self._admit(environ, user, extra)
            if isinstance(outcome, Throttled):
                status, headers = outcome.status, [("Content-Type", JSON_TYPE), *outcome.headers().items()]
                body = json.dumps(outcome.body()).encode()
            else:
                admission = outcome
                status, headers, body = self._handle(environ)
        except DataverseError as e:
            status, headers, body = e.status, [("Content-Type", JSON_TYPE)], json.dumps(e.to_json()).encode()
            if e.status == 401:
                headers.append(("WWW-Authenticate", self._challenge(environ)))
        finally:
            if admission is not None:
                admission.release()  # even when the handler raised something unexpected
            if self.protection is not None:
                extra.append((DOP_HINT_HEADER, str(self.protection.dop_hint())))
        headers = [*headers, *extra, ("OData-Version", "4.0"), ("Content-Length", str(len(body)))]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return [body]

    # -- dispatch ------------------------------------------------------------------------------------------
    def _handle(self, environ: dict) -> Response:
        path = environ.get("PATH_INFO", "")
        if batch.is_batch(environ):
            return batch.handle(self, environ)
        if not path.startswith(BASE_PATH + "/"):
            raise DataverseError(404, errors.INVALID_ARGUMENT, f"No HTTP resource was found that matches '{path}'.")
        routed = bulk.route(self, environ)  # bulk messages and the sdkmessagefilters support query
        routed = routed or bulk_delete.route(self, environ)  # the BulkDelete action
        routed = routed or activity_parties.route(self, environ)  # PUT/GET <activity>(id)/<table>_activity_parties
        routed = routed or metadata_api.route(self, environ)  # EntityDefinitions etc.
        routed = routed or functions.route(self, environ)  # WhoAmI()
        if routed is None:
            routed = files.route(self, environ)  # note block upload/download actions, documentbody/$value
        if routed is None:
            routed = file_columns.route(self, environ)  # PATCH/GET/DELETE of a record's File column
        if routed is None:
            routed = navigation.route(self, environ)  # collection-valued navigation properties, $ref
        if routed is None:
            routed = properties.route(self, environ)  # one property of a record, a related record
        if routed is not None:
            return routed
        resource = odata.parse_resource(path[len(BASE_PATH):])
        table = self.catalog.table_by_entity_set(resource.entity_set)
        if table is None:
            # OData's text for an unknown segment; code unverified.
            raise DataverseError(404, "0x8006088a", f"Resource not found for the segment '{resource.entity_set}'.")
        params = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}
        prefs = odata.parse_prefer(environ.get("HTTP_PREFER"))
        method = environ.get("REQUEST_METHOD", "GET")
        if resource.count:
            if method != "GET":
                raise _method_not_allowed(method)
            return self._count(table, params)
        if not resource.addresses_record:
            if method == "GET":
                return self._list(environ, table, params, prefs)
            if method == "POST":
                return self._create(environ, table, params, prefs)
            raise _method_not_allowed(method)
        if method == "GET":
            return self._retrieve(environ, table, resource, params)
        if method == "PATCH":
            return self._upsert(environ, table, resource, params, prefs)
        if method == "DELETE":
            existing = self._locate(table, resource)
            if existing is None:
                raise not_found(table.logical_name, resource.id or "")
            self.store.delete(table.logical_name, existing.id, if_match=environ.get("HTTP_IF_MATCH"))
            return 204, [], b""
        raise _method_not_allowed(method)

    def _authenticate(self, environ: dict) -> str:
        """The calling user (the token's client id), or :data:`ANONYMOUS` without a token validator."""
        if self.token_validator is None:
            return ANONYMOUS
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        info = self.token_validator(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        # A token for another resource (Graph, another environment) or from another tenant is no token for this
        # environment: Dataverse answers it as it answers a missing one, 401 with the challenge naming its
        # authority and resource. The body of Dataverse's 401 is undocumented; code and text here are
        # AccessTokenExpired's (https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes).
        if info is None or not self._for_this_environment(environ, info):
            raise DataverseError(401, "0x8005F101", "The requested resource requires authentication.")
        return str(getattr(info, "client_id", None) or ANONYMOUS)

    def _for_this_environment(self, environ: dict, info: object) -> bool:
        """The token's audience is this environment's URL (Entra ID's ``aud``, compared without case or trailing
        slash) and its issuer is this environment's tenant."""
        audience = _origin(str(getattr(info, "resource", "")))
        tenant = getattr(info, "tenant", None)
        return audience == (self.audience or _origin(self._base(environ))) and tenant in (None, self.tenant)

    def _challenge(self, environ: dict) -> str:
        """Dataverse's ``WWW-Authenticate`` on a 401: the tenant's authorize endpoint and the environment URL as
        the resource, unquoted and comma-separated as Dataverse sends it (as quoted in Microsoft's "Walkthrough:
        Multi-tenant server-to-server authentication" for Dynamics 365 Customer Engagement)."""
        resource = self.audience or _origin(self._base(environ))
        return (f"Bearer authorization_uri=https://login.microsoftonline.com/{self.tenant}/oauth2/authorize, "
                f"resource_id={resource}/")

    def _admit(self, environ: dict, user: str, extra: list[tuple[str, str]]) -> Admission | Throttled | None:
        """Route to a simulated web server (appending its affinity cookie to ``extra`` when the request didn't
        carry it) and admit the request; ``None`` without protection or for a ``$batch``'s inner request (the batch
        is admitted once, as one request carrying its inner requests as records). Other requests are one record
        except a bulk message, one request carrying its targets as records."""
        if self.protection is None or environ.get(batch.INNER_REQUEST):
            return None
        sent = _cookie(environ, AFFINITY_COOKIE)
        server, cookie = self.protection.route(sent)
        if cookie != sent:
            secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
            extra.append(("Set-Cookie", f"{AFFINITY_COOKIE}={cookie}; Path=/; HttpOnly{secure}"))
        records = batch.count_requests(environ) if batch.is_batch(environ) else bulk.count_targets(environ)
        return self.protection.admit(user, server, records=records)

    # -- operations ----------------------------------------------------------------------------------------
    def _create(self, environ: dict, table: Table, params: dict[str, str], prefs: dict[str, str]) -> Response:
        record = self.store.create(table.logical_name, odata.read_json(environ))
        if prefs.get("return") == "representation":
            # Documented: 201 + body + Preference-Applied, and no OData-EntityId.
            expanded = properties.expand(self, environ, table, record, params.get("$expand"))
            body = self._entity(environ, table, record, odata.parse_select(params.get("$select")), expanded)
            return 201, [("Content-Type", JSON_TYPE), ("Preference-Applied", "return=representation")], body
        return 204, [("OData-EntityId", self._record_url(environ, table, record.id))], b""

    def _retrieve(self, environ: dict, table: Table, resource: odata.Resource, params: dict[str, str]) -> Response:
        record = self._locate(table, resource)
        if record is None:
            if resource.id is not None:
                raise not_found(table.logical_name, resource.id)
            raise DataverseError(404, "0x80060891",  # code [community]; text unverified
                                 f"A record with the specified key values does not exist in {table.logical_name} entity")
        select = odata.parse_select(params.get("$select"))
        expanded = properties.expand(self, environ, table, record, params.get("$expand"))
        if_none_match = environ.get("HTTP_IF_NONE_MATCH")
        if if_none_match and if_none_match == record.etag and not expanded and not annotations.requested(environ):
            # Documented: never 304 with $expand or annotations (related records may have changed). The 304
            # carries the Content-Type the article shows.
            return 304, [("Content-Type", JSON_TYPE), ("ETag", record.etag)], b""
        return 200, [("Content-Type", JSON_TYPE), ("ETag", record.etag), *annotations.applied_header(environ)], \
            self._entity(environ, table, record, select, expanded)

    def _upsert(self, environ: dict, table: Table, resource: odata.Resource, params: dict[str, str],
                prefs: dict[str, str]) -> Response:
        key = None
        if resource.key is not None:
            key = dict(resource.key)
            self.store.key_for(table.logical_name, [k for k, _ in resource.key])
        record, created = self.store.upsert(
            table.logical_name, odata.read_json(environ), id=resource.id, key=key,
            if_match=environ.get("HTTP_IF_MATCH"), if_none_match=environ.get("HTTP_IF_NONE_MATCH"))
        if prefs.get("return") == "representation":
            # OData 4.0 §11.4.2/§11.4.3: a PATCH that created answers 201 with the entity, one that updated 200;
            # with the record's ETag (L/use-upsert-insert-update-record shows it on both).
            body = self._entity(environ, table, record, odata.parse_select(params.get("$select")))
            return (201 if created else 200), [("Content-Type", JSON_TYPE), ("ETag", record.etag),
                                               ("Preference-Applied", "return=representation")], body
        if resource.key_text is not None:
            # Documented (L/use-upsert-insert-update-record): addressed by alternate key, the answer names the record
            # by that key (example_records(example_key1=2,example_key2=2)), not by its id.
            key_url = f"{self._base(environ)}/{table.entity_set}({_url_key(resource.key_text)})"
            return 204, [("OData-EntityId", key_url)], b""
        return 204, [("OData-EntityId", self._record_url(environ, table, record.id))], b""

    def _list(self, environ: dict, table: Table, params: dict[str, str], prefs: dict[str, str]) -> Response:
        if "$skip" in params:
            # Documented: $skip is not supported; page with nextLink. Code/text unverified.
            raise odata.bad_request("The query parameter $skip is not supported.")
        filter_text = odata.resolve_aliases(params.get("$filter"), params)
        order_text = odata.resolve_aliases(params.get("$orderby"), params)
        filters = self._filters(table, filter_text)
        orderby = [(self._column(table, c), d) for c, d in odata.parse_orderby(order_text)]
        select = odata.parse_select(params.get("$select"))
        for name in select or ():
            self._column(table, name)
        max_page = odata.page_size(prefs)
        top = params.get("$top")
        if top is not None and (not top.isdigit() or int(top) < 1):
            raise odata.bad_request(f"Invalid value '{top}' for $top query option.")
        # Documented: $top is ignored when odata.maxpagesize is also sent.
        paged = max_page is not None or top is None
        limit = max_page or (odata.MAX_PAGE_SIZE if top is None else min(int(top), odata.MAX_PAGE_SIZE))
        offset = 0
        if "fetchXml" in params:  # FetchXML replaces the OData options; it pages with count/page, no nextLink here
            fetch = fetchxml.parse(params["fetchXml"], table)
            select, filters, orderby, paged = fetch.select, fetch.filters, fetch.orderby, False
            limit = fetch.count or odata.MAX_PAGE_SIZE
            offset = (fetch.page - 1) * limit
        elif "$skiptoken" in params:
            offset = odata.decode_skiptoken(params["$skiptoken"], table.entity_set, filter_text, order_text, limit)
        rows = self.store.query(table.logical_name, filters, orderby, offset=offset, limit=limit + 1)
        body: dict[str, Any] = {"@odata.context": f"{self._base(environ)}/$metadata#{table.entity_set}"}
        count = self.store.count(table.logical_name, filters) if params.get("$count") == "true" else None
        if count is not None:  # documented: @odata.count is capped at 5000
            body["@odata.count"] = min(count, odata.MAX_PAGE_SIZE)
        body.update(annotations.collection(environ, count, self.store.version()))
        expand_text = params.get("$expand")
        # Documented (L/webapi/query/join-tables): with a nested $expand anywhere, odata.maxpagesize pages each
        # expanded collection too; without one, expanded collections are not paged.
        nested_page = max_page if expand_text and "$expand" in expand_text else None
        body["value"] = [{**self._shape(environ, table, r, select),
                          **properties.expand(self, environ, table, r, expand_text, in_collection=True,
                                              page=nested_page)}
                         for r in rows[:limit]]
        if len(rows) > limit and paged:
            token = odata.encode_skiptoken(table.entity_set, filter_text, order_text, offset + limit)
            query = {k: v for k, v in params.items() if k != "$skiptoken"} | {"$skiptoken": token}
            body["@odata.nextLink"] = (f"{self._base(environ)}/{table.entity_set}?"
                                       f"{urlencode(query, quote_via=quote, safe='$,')}")
        headers = [("Content-Type", JSON_TYPE)]
        if max_page is not None:
            headers.append(("Preference-Applied", f"odata.maxpagesize={max_page}"))
        headers += annotations.applied_header(environ)
        return 200, headers, json.dumps(body).encode()

    def _count(self, table: Table, params: dict[str, str]) -> Response:
        filters = self._filters(table, odata.resolve_aliases(params.get("$filter"), params))
        n = min(self.store.count(table.logical_name, filters), odata.MAX_PAGE_SIZE)  # capped like $count=true
        return 200, [("Content-Type", "text/plain")], str(n).encode()

    # -- helpers -------------------------------------------------------------------------------------------
    def _locate(self, table: Table, resource: odata.Resource) -> StoredRecord | None:
        if resource.id is not None:
            return self.store.retrieve(table.logical_name, resource.id)
        return self.store.find_by_key(table.logical_name, dict(resource.key or ()))

    def _filters(self, table: Table, text: str) -> list[tuple[str, Any]]:
        """``$filter`` text as conditions on stored columns (an ``or`` group's conditions mapped each)."""
        return [self._condition(table, c, v) for c, v in odata.parse_filter(text)]

    def _condition(self, table: Table, column: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, odata.AnyCondition):
            return "", odata.AnyCondition(tuple(self._condition(table, c, v) for c, v in value.conditions))
        nav, slash, rest = column.partition("/")
        lookup = table.lookups.get(nav) if slash else None
        if lookup is not None and len(lookup.targets) == 1 and \
                rest != self.catalog.table(lookup.targets[0]).primary_id:
            # A column of the related record, or of a record related to it in turn (L/webapi/query/filter-rows,
            # "Filter using lookup column property values": primarycontactid/createdby/fullname): the lookup is
            # one of the related records matching the condition.
            target = self.catalog.table(lookup.targets[0])
            related = self.store.query(target.logical_name, [self._condition(target, rest, value)])
            return lookup.attribute, odata.AnyOf(tuple(r.id for r in related))
        return self._column(table, column), value

    def _column(self, table: Table, name: str) -> str:
        """A column in a query option: logical name, ``_<lookup>_value`` for a lookup's GUID, or (in ``$filter``)
        ``<navigation property>/<its target's primary key>``, the same GUID."""
        nav, slash, key = name.partition("/")
        lookup = table.lookups.get(nav) if slash else None
        if lookup is not None and any(key == self.catalog.definition(t).primary_id for t in lookup.targets
                                      if t in self.catalog.tables):
            return lookup.attribute
        if name.startswith("_") and name.endswith("_value") and name[1:-6] in table.columns:
            return name[1:-6]
        if name in table.columns and table.columns[name].type not in ("Lookup", "Customer", "Owner"):
            return name
        raise DataverseError(400, "0x80060888",  # [memory]
                             f"Could not find a property named '{name}' on type "
                             f"'Microsoft.Dynamics.CRM.{table.logical_name}'.")

    def _shape(self, environ: dict, table: Table, record: StoredRecord, select: list[str] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.etag": record.etag}
        wanted = None if select is None else {self._column(table, c) for c in select} | {table.primary_id}
        if wanted is not None and "transactioncurrencyid" in table.columns and \
                any(table.columns[c].type == "Money" for c in wanted if c in table.columns):
            wanted.add("transactioncurrencyid")  # documented: a money value comes with its currency
        # A selected column without a value reads as null (Microsoft's examples: "description": null).
        values = record.values if wanted is None else {**dict.fromkeys(wanted), **record.values}
        for name, value in values.items():
            if wanted is not None and name not in wanted:
                continue
            column = table.columns.get(name)
            is_lookup = column is not None and column.type in ("Lookup", "Customer", "Owner")
            out[f"_{name}_value" if is_lookup else name] = value  # lookups read as _x_value [memory]
        if table.logical_name in _PRINCIPALS:
            # systemuser and team inherit principal's key ownerid, returned with theirs (L/webapi/query/join-tables).
            out["ownerid"] = record.id
        return annotations.annotate(self, environ, table, out)

    def _entity(self, environ: dict, table: Table, record: StoredRecord, select: list[str] | None,
                expanded: dict[str, Any] | None = None) -> bytes:
        body = {"@odata.context": f"{self._base(environ)}/$metadata#{table.entity_set}/$entity",
                **self._shape(environ, table, record, select), **(expanded or {})}
        return json.dumps(body).encode()

    @staticmethod
    def _base(environ: dict) -> str:
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
        return f"{environ.get('wsgi.url_scheme', 'http')}://{host}{BASE_PATH}"

    def _record_url(self, environ: dict, table: Table, record_id: str) -> str:
        return f"{self._base(environ)}/{table.entity_set}({record_id})"


def _url_key(key_text: str) -> str:
    """The key as written in the request path (decoded by WSGI), percent-encoded again for a header."""
    return quote(key_text, safe="'=,@-._~")


def _origin(url: str) -> str:
    """``https://Org.crm.dynamics.com/api/data/v9.2`` -> ``https://org.crm.dynamics.com``: what an audience is
    compared by."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.lower()}{sep}{rest.split('/', 1)[0].lower()}" if sep else url.rstrip("/").lower()


def _cookie(environ: dict, name: str) -> str | None:
    jar = SimpleCookie()
    try:
        jar.load(environ.get("HTTP_COOKIE", ""))
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def _method_not_allowed(method: str) -> DataverseError:
    return DataverseError(405, errors.INVALID_ARGUMENT, f"The HTTP method '{method}' is not allowed here.")
