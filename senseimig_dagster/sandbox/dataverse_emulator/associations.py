"""Many-to-many relationships between standard tables and their associations (Microsoft's "Associate and
disassociate table rows using the Web API"; the basic-operations sample's Section 4 uses
``systemuserroles_association``): ``POST <set>(<id>)/<nav>/$ref``, ``DELETE <set>(<id>)/<nav>(<id>)/$ref`` (or
``?$id=``) and ``GET <set>(<id>)/<nav>`` with ``$select``/``$filter``, from either side.

The relationships come from the entity reference's "Many-to-Many relationships" sections (systemuser, team and
role); both sides name the navigation property after the relationship. Pairs are kept in the store's SQLite file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from senseimig_dagster.sandbox.dataverse_emulator.store import RecordStore, StoredRecord


@dataclass(frozen=True)
class ManyToMany:
    name: str  # the relationship's SchemaName, also both navigation properties
    table1: str
    table2: str

    def other(self, table: str) -> str:
        return self.table2 if table == self.table1 else self.table1


STANDARD = {r.name: r for r in (ManyToMany("systemuserroles_association", "systemuser", "role"),
                                ManyToMany("teamroles_association", "team", "role"))}
_SCHEMA = "CREATE TABLE IF NOT EXISTS associations (rel TEXT NOT NULL, a TEXT NOT NULL, b TEXT NOT NULL, " \
          "PRIMARY KEY (rel, a, b))"


def find(table: str, name: str) -> ManyToMany | None:
    relationship = STANDARD.get(name)
    return relationship if relationship is not None and table in (relationship.table1, relationship.table2) else None


def associate(store: RecordStore, relationship: ManyToMany, record: StoredRecord, other: StoredRecord) -> None:
    a, b = _ordered(relationship, record, other)
    with store._lock:
        store._conn.execute(_SCHEMA)
        store._conn.execute("INSERT OR IGNORE INTO associations(rel, a, b) VALUES (?,?,?)", (relationship.name, a, b))


def disassociate(store: RecordStore, relationship: ManyToMany, record: StoredRecord, other: StoredRecord) -> bool:
    """Remove the pair; False when the two were not associated."""
    a, b = _ordered(relationship, record, other)
    with store._lock:
        store._conn.execute(_SCHEMA)
        cursor = store._conn.execute("DELETE FROM associations WHERE rel=? AND a=? AND b=?", (relationship.name, a, b))
    return cursor.rowcount > 0


def related_ids(store: RecordStore, relationship: ManyToMany, record: StoredRecord) -> tuple[str, ...]:
    mine, theirs = ("a", "b") if record.table == relationship.table1 else ("b", "a")
    with store._lock:
        store._conn.execute(_SCHEMA)
        rows = store._conn.execute(f"SELECT {theirs} FROM associations WHERE rel=? AND {mine}=?",
                                   (relationship.name, record.id)).fetchall()
    return tuple(r[0] for r in rows)


def _ordered(relationship: ManyToMany, record: StoredRecord, other: StoredRecord) -> tuple[str, str]:
    return (record.id, other.id) if record.table == relationship.table1 else (other.id, record.id)
