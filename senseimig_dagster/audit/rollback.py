"""Rollback: return a Dataverse environment to its state before the migration, from the audit log.

Order, and why:

1. **Restore** the records the migration updated (updates, state changes, links) from their before-images, one
   PATCH per record with the earliest before-image of each column, before anything is deleted: a restored lookup may
   still point at a record the migration created, and deleting that first would change the updated record (Dataverse
   clears the link) and make it look changed by a person.
2. **Delete** what the migration created, children before parents: tables in reverse dependency order (``table_order``
   is parents-first, e.g. the registry's ``load_order()`` mapped to tables), and within a table newest first.
3. Optionally **remove the schema** it created (``audit.schema_changes``): field permissions and the profile,
   lookups (their relationships), keys, columns, tables (refused while a table still holds records, unless
   ``force``), solution, publisher.

Records whose ``versionnumber`` moved on since our last write (``after_version``) were changed by a person: they are
reported and left alone unless ``force``. The writes go with ``If-Match: W/"<after_version>"``, so a change made
between our read and our write is caught too (412). A write whose ``after_version`` was never recorded can't be
checked and is undone. ``pending`` creates (no outcome recorded: the process died) are looked up by alternate key.

Resumable and idempotent: every undo is recorded in the audit log (``undo_delete``/``undo_restore``, intent first),
and writes older than a successful undo of the same record are skipped; a record already gone counts as undone. A
second run sends no write. Reports carry table names and record ids only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from senseimig_dagster.audit.log import AuditBatch, AuditLog, AuditOutcome, Write
from senseimig_dagster.audit.schema_changes import SchemaChangeRow
from senseimig_dagster.dataverse.client import DataverseClient, record_segment
from senseimig_dagster.dataverse.errors import DataverseConflict, DataverseError, DataverseNotFound
from senseimig_dagster.dataverse.metadata import DataverseMetadata

ASSET = "rollback"
SOURCE_KEY = "smig_sourcesystemid"
CHANGED = "changed_since_migration"
GRAPH_FILES = "graph_driveitem"  # the audit table name of SharePoint files (load/document_writer.py)
GRAPH_FOLDERS = "graph_folder"  # SharePoint folders the document load created (removed when empty)
GRAPH_TABLES = (GRAPH_FILES, GRAPH_FOLDERS)


@dataclass
class RollbackReport:
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (table, id)
    restored: list[tuple[str, str]] = field(default_factory=list)
    changed_by_person: list[tuple[str, str]] = field(default_factory=list)
    absent: int = 0  # pending creates that never reached Dataverse
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (table, id or source id, code)
    schema_removed: list[str] = field(default_factory=list)
    schema_kept: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.deleted) + len(self.restored) + len(self.schema_removed)

    def markdown(self) -> str:
        lines = ["| what | count |", "|---|---|", f"| deleted | {len(self.deleted)} |",
                 f"| restored | {len(self.restored)} |",
                 f"| skipped: changed by a person | {len(self.changed_by_person)} |",
                 f"| never created (pending, not found) | {self.absent} |", f"| failed | {len(self.failed)} |",
                 f"| schema removed | {len(self.schema_removed)} |", f"| schema kept | {len(self.schema_kept)} |"]
        by_table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for table, _ in self.deleted:
            by_table[table][0] += 1
        for table, _ in self.restored:
            by_table[table][1] += 1
        if by_table:
            lines += ["", "| table | deleted | restored |", "|---|---|---|"]
            lines += [f"| {t} | {d} | {r} |" for t, (d, r) in by_table.items()]
        if self.changed_by_person:
            lines += ["", "Changed by a person since the migration (left as they are; `force` overrides):", ""]
            lines += [f"- {table} {record_id}" for table, record_id in self.changed_by_person]
        if self.failed:
            lines += ["", "Failed:", ""] + [f"- {t} {i}: {code}" for t, i, code in self.failed]
        if self.schema_removed or self.schema_kept:
            lines += ["", "Schema:", ""] + [f"- removed {s}" for s in self.schema_removed] + \
                [f"- kept {s}" for s in self.schema_kept]
        return "\n".join(lines)


@dataclass
class _Table:
    name: str
    entity_set: str
    primary_id: str
    versions: dict[str, str]  # id -> versionnumber, as the table is now
    by_key: dict[str, str]  # source id -> id


class Rollback:
    """Undo the writes recorded in ``log`` (only those of run ``only_run`` when given) through ``client``; its own
    writes are recorded under ``run_id``."""

    def __init__(self, client: DataverseClient, log: AuditLog, run_id: str, *, table_order: Sequence[str] = (),
                 only_run: str | None = None, force: bool = False, key_column: str = SOURCE_KEY,
                 drive: Any = None) -> None:
        self.client, self.log, self.run_id = client, log, run_id
        self.drive = drive  # graph.drive.GraphDrive: SharePoint files the document load uploaded
        self.meta = DataverseMetadata(client)
        self.table_order, self.only_run, self.force, self.key_column = list(table_order), only_run, force, key_column
        self.report = RollbackReport()
        self._tables: dict[str, _Table] = {}

    # -- the whole run ----------------------------------------------------------------------------------------
    def run(self, schema_changes: Sequence[SchemaChangeRow] = (), remove_schema: bool = False) -> RollbackReport:
        writes = [w for w in self.log.writes(run_id=self.only_run) if w.asset != ASSET]
        undone = self.log.undone()
        pending = [w for w in writes if not _is_undone(w, undone)]
        creates = [w for w in pending if w.operation == "create" and w.outcome in ("ok", "pending")]
        files = [w for w in creates if w.table == GRAPH_FILES]  # not Dataverse records: deleted through Graph
        folders = [w for w in creates if w.table == GRAPH_FOLDERS]
        creates = [w for w in creates if w.table not in GRAPH_TABLES]
        updates = [w for w in pending if w.operation in ("update", "state", "link")
                   and (w.outcome == "ok" or (w.outcome == "pending" and w.before is not None))]
        needs_key = {w.table for w in creates + updates if w.dataverse_id is None}
        for w in creates + updates:
            if w.table not in self._tables:
                self._tables[w.table] = self._load_table(w.table, w.entity_set, w.table in needs_key)
        # A created record is compared (and If-Match'ed) with its version after our *last* write to it, not after
        # the create: the link and state passes write it again, and judged by the create's version every linked or
        # closed record looked "changed by a person" and was never deleted (found by the end-to-end test).
        last = self._last_versions(pending)
        creates = [replace(w, after_version=last.get((w.table, self._id_of(w)), w.after_version)) for w in creates]
        created = {(w.table, self._id_of(w)) for w in creates} - {(t, None) for t in self._tables}
        self._restore([w for w in updates if (w.table, self._id_of(w)) not in created])
        self._delete_files(files)
        self._delete_folders(folders)
        self._delete(creates)
        if remove_schema:
            self._remove_schema([c for c in schema_changes if self.only_run is None or c.run_id == self.only_run])
        return self.report

    def _last_versions(self, writes: Sequence[Write]) -> dict[tuple[str, str], str | None]:
        """(table, id) -> ``versionnumber`` after the latest write that may have landed; ``None`` when that write's
        outcome was never recorded (a crash): the version is unknown, so the undo goes unchecked."""
        out: dict[tuple[str, str], str | None] = {}
        for w in sorted(writes, key=lambda w: w.seq):
            if w.outcome != "failed" and w.operation in ("create", "update", "state", "link") \
                    and w.table in self._tables and (record_id := self._id_of(w)) is not None:
                out[(w.table, record_id)] = w.after_version if w.outcome == "ok" else None
        return out

    def _load_table(self, table: str, entity_set: str, with_key: bool) -> _Table:
        found = self.meta.find_table(table)
        primary = str(found["PrimaryIdAttribute"]) if found else f"{table}id"
        select = [primary, "versionnumber"] + ([self.key_column] if with_key else [])
        versions: dict[str, str] = {}
        by_key: dict[str, str] = {}
        if found is not None:
            for row in self.client.query(entity_set, select):
                record_id = str(row[primary]).lower()
                versions[record_id] = str(row.get("versionnumber"))
                if with_key and row.get(self.key_column) is not None:
                    by_key[str(row[self.key_column])] = record_id
        return _Table(table, entity_set, primary, versions, by_key)

    def _id_of(self, write: Write) -> str | None:
        if write.dataverse_id:
            return write.dataverse_id.lower()
        return self._tables[write.table].by_key.get(write.source_id or "")

    def _changed(self, table: _Table, record_id: str, after_version: str | None) -> bool:
        return not self.force and after_version is not None and table.versions.get(record_id) != after_version

    def _if_match(self, after_version: str | None) -> str | None:
        return None if self.force or after_version is None else f'W/"{after_version}"'

    # -- restore --------------------------------------------------------------------------------------------------
    def _restore(self, updates: list[Write]) -> None:
        per_record: dict[tuple[str, str], list[Write]] = defaultdict(list)
        for w in updates:
            record_id = self._id_of(w)
            if w.before is None or record_id is None:
                self.report.failed.append((w.table, record_id or w.source_id or "", "no before-image"))
                continue
            per_record[(w.table, record_id)].append(w)
        for table_name, items in _by_table(per_record).items():
            table = self._tables[table_name]
            batch = self._intend(table, [(ws[-1].source_id, record_id) for record_id, ws in items], "undo_restore")
            outcomes = []
            for record_id, ws in items:
                latest = ws[-1]
                image: dict[str, Any] = {}
                for w in reversed(ws):  # the earliest before-image of each column wins
                    image.update(w.before or {})
                if self._changed(table, record_id, latest.after_version):
                    self.report.changed_by_person.append((table_name, record_id))
                    continue
                try:
                    self.client.update(table.entity_set, record_id, image,
                                       if_match=self._if_match(latest.after_version) or "*")
                except (DataverseConflict, DataverseNotFound):  # changed (412) or deleted (404) by a person
                    self.report.changed_by_person.append((table_name, record_id))
                    continue
                except DataverseError as e:
                    self.report.failed.append((table_name, record_id, e.code or str(e.status)))
                    outcomes.append(AuditOutcome(latest.source_id, record_id, "undo_restore", "failed", e.code))
                    continue
                self.report.restored.append((table_name, record_id))
                outcomes.append(AuditOutcome(latest.source_id, record_id, "undo_restore", "ok"))
            self.log.record(batch, outcomes)

    # -- delete ---------------------------------------------------------------------------------------------------
    def _delete(self, creates: list[Write]) -> None:
        per_table: dict[str, list[Write]] = defaultdict(list)
        for w in creates:
            per_table[w.table].append(w)
        for table_name in self._delete_order(per_table):
            table = self._tables[table_name]
            writes = sorted(per_table[table_name], key=lambda w: w.seq, reverse=True)  # newest (children) first
            targets = []
            for w in writes:
                record_id = self._id_of(w)
                if record_id is None:
                    self.report.absent += 1  # a pending create that never landed: nothing to undo
                else:
                    targets.append((w, record_id))
            batch = self._intend(table, [(w.source_id, rid) for w, rid in targets], "undo_delete")
            outcomes = []
            for w, record_id in targets:
                outcome = self._delete_one(table, w, record_id)
                if outcome is not None:
                    outcomes.append(outcome)
            self.log.record(batch, outcomes)

    def _delete_files(self, files: list[Write]) -> None:
        """SharePoint files (Graph drive items), newest first; a 404 counts as deleted. No version check: Graph
        items carry no ``versionnumber``."""
        newest_first = sorted(files, key=lambda w: w.seq, reverse=True)
        self._delete_drive_items(GRAPH_FILES, newest_first, lambda item_id: self.drive.delete(item_id) or "deleted")

    def _delete_folders(self, folders: list[Write]) -> None:
        """Folders the load created, after their files: only an empty one is deleted; one holding files a person
        added since is reported (``changed_by_person``), never removed with its contents."""
        self._delete_drive_items(GRAPH_FOLDERS, folders, lambda item_id: self.drive.delete_folder_if_empty(item_id))

    def _delete_drive_items(self, table: str, writes: list[Write], delete: Callable[[str], str]) -> None:
        """``delete(item id)`` answers ``deleted``, ``absent`` or ``not_empty`` (kept, reported, not undone: a
        later rollback may still remove it). Without a drive the items are reported as failed, never marked
        undone."""
        targets = [w for w in writes if w.dataverse_id]
        self.report.absent += len(writes) - len(targets)  # an upload that never finished left no item id
        if not targets:
            return
        if self.drive is None:
            self.report.failed += [(table, w.dataverse_id or "", "no Graph drive configured") for w in targets]
            return
        batch = self.log.intend(self.run_id, ASSET, table, targets[0].entity_set,
                                [(w.source_id, "undo_delete") for w in targets])
        outcomes = []
        for w in targets:
            item_id = w.dataverse_id or ""
            try:
                result = delete(item_id)
            except Exception as e:  # a Graph error: its code, never its text
                code = getattr(e, "code", None) or type(e).__name__
                self.report.failed.append((table, item_id, code))
                outcomes.append(AuditOutcome(w.source_id, item_id, "undo_delete", "failed", code))
                continue
            if result == "not_empty":
                self.report.changed_by_person.append((table, item_id))
                continue
            self.report.deleted.append((table, item_id))
            outcomes.append(AuditOutcome(w.source_id, item_id, "undo_delete", "ok"))
        self.log.record(batch, outcomes)

    def _delete_one(self, table: _Table, w: Write, record_id: str) -> AuditOutcome | None:
        if record_id not in table.versions:  # already gone (an earlier, interrupted run): close it in the log
            return AuditOutcome(w.source_id, record_id, "undo_delete", "ok")
        if self._changed(table, record_id, w.after_version):
            self.report.changed_by_person.append((table.name, record_id))
            return None
        headers = {"If-Match": etag} if (etag := self._if_match(w.after_version)) else None
        try:
            self.client._request("DELETE", table.entity_set + record_segment(record_id), table.entity_set,
                                 "rollback delete", headers=headers, not_found_ok_after_retry=True)
        except DataverseNotFound:
            return AuditOutcome(w.source_id, record_id, "undo_delete", "ok")
        except DataverseConflict:
            self.report.changed_by_person.append((table.name, record_id))
            return None
        except DataverseError as e:
            self.report.failed.append((table.name, record_id, e.code or str(e.status)))
            return AuditOutcome(w.source_id, record_id, "undo_delete", "failed", e.code)
        self.report.deleted.append((table.name, record_id))
        return AuditOutcome(w.source_id, record_id, "undo_delete", "ok")

    def _delete_order(self, per_table: dict[str, list[Write]]) -> list[str]:
        """Children before parents: ``table_order`` (parents-first) reversed; other tables by first creation,
        newest first."""
        known = [t for t in dict.fromkeys(self.table_order) if t in per_table]
        others = sorted((t for t in per_table if t not in known), key=lambda t: min(w.seq for w in per_table[t]))
        return list(reversed(known + others))

    def _intend(self, table: _Table, rows: Iterable[tuple[str | None, str]], operation: str) -> AuditBatch:
        batch = self.log.intend(self.run_id, ASSET, table.name, table.entity_set,
                                [(source_id, operation) for source_id, _ in rows])  # type: ignore[misc]
        return batch

    # -- schema -----------------------------------------------------------------------------------------------
    def _remove_schema(self, changes: Sequence[SchemaChangeRow]) -> None:
        made = [c for c in changes if c.outcome == "created"]
        tables = {c.table for c in made if c.kind == "table" and c.table}
        step = self._schema_step
        for c in reversed([c for c in made if c.kind == "field_permission"]):
            step(c, lambda c=c: self._delete_record("fieldpermissions", c.detail))
        for c in reversed([c for c in made if c.kind == "field_security_profile"]):
            step(c, lambda c=c: self._delete_record("fieldsecurityprofiles", c.detail))
        for c in reversed([c for c in made if c.kind == "lookup"]):
            step(c, lambda c=c: self._delete_lookup(c.table or "", c.name))
        for c in reversed([c for c in made if c.kind == "key" and c.table not in tables]):
            step(c, lambda c=c: self.meta.delete_key(c.table or "", c.name))
        for c in reversed([c for c in made if c.kind == "column" and c.table not in tables]):
            step(c, lambda c=c: self.meta.delete_column(c.table or "", c.name.lower()))
        for c in reversed([c for c in made if c.kind == "table"]):
            step(c, lambda c=c: self._delete_table(c.table or c.name.lower()))
        for c in reversed([c for c in made if c.kind == "solution"]):
            step(c, lambda c=c: self._delete_record("solutions", c.detail))
        for c in reversed([c for c in made if c.kind == "publisher"]):
            step(c, lambda c=c: self._delete_record("publishers", c.detail))
        for c in changes:
            if c.kind == "column_security" and c.outcome == "updated":
                self.report.schema_kept.append(f"column security of {c.table}.{c.name} (not reverted; the column "
                                               "goes with the schema when it was created by the migration)")

    def _schema_step(self, change: SchemaChangeRow, action: Any) -> None:
        """Run one idempotent removal; recorded (as operation ``schema``) when it removed something or failed, so a
        second rollback, finding everything gone, writes nothing."""
        what = f"{change.kind} {change.table + '.' if change.table else ''}{change.name}"
        try:
            removed = action()
        except DataverseError as e:
            self.report.failed.append((change.table or change.kind, change.name, e.code or str(e.status)))
            self._schema_record(change, what, AuditOutcome(what, None, "schema", "failed", e.code))
            return
        if removed:
            self.report.schema_removed.append(what)
            self._schema_record(change, what, AuditOutcome(what, None, "schema", "ok"))

    def _schema_record(self, change: SchemaChangeRow, what: str, outcome: AuditOutcome) -> None:
        batch = self.log.intend(self.run_id, ASSET, change.table or change.kind, "", [(what, "schema")])
        self.log.record(batch, [outcome])

    def _delete_record(self, entity_set: str, record_id: str | None) -> bool:
        if not record_id:
            return False
        try:
            self.client.delete(entity_set, record_id)
        except DataverseNotFound:
            return False
        return True

    def _delete_lookup(self, table: str, lookup: str) -> bool:
        relationship = self.meta.lookup_relationship(table, lookup)
        return relationship is not None and self.meta.delete_relationship(relationship)

    def _delete_table(self, logical: str) -> bool | None:
        found = self.meta.find_table(logical)
        if found is None:
            return False
        remaining = self.client.count(str(found["EntitySetName"]))
        if remaining and not self.force:  # records the migration didn't create (or a person kept): not ours to drop
            self.report.schema_kept.append(f"table {logical}: still holds {remaining} records")
            return None
        return self.meta.delete_table(logical)


def _is_undone(write: Write, undone: dict[tuple[str, str], int]) -> bool:
    for ident in (write.dataverse_id, write.source_id):
        if ident and undone.get((write.table, ident.lower() if ident == write.dataverse_id else ident), 0) > write.seq:
            return True
    return False


def _by_table(per_record: dict[tuple[str, str], list[Write]]) -> dict[str, list[tuple[str, list[Write]]]]:
    out: dict[str, list[tuple[str, list[Write]]]] = defaultdict(list)
    for (table, record_id), ws in per_record.items():
        out[table].append((record_id, sorted(ws, key=lambda w: w.seq)))
    return out


__all__ = ["Rollback", "RollbackReport"]
