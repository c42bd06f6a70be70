"""Confirming a reviewed map: validate it, refuse while fields are still ``proposed``, then record who, when, the
content hash and the per-object/per-field digests in the file itself (round-trip, comments kept)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from senseimig_dagster.mapping import mapfile
from senseimig_dagster.mapping.digest import digests, map_hash
from senseimig_dagster.mapping.model import Confirmation, FieldMapFile
from senseimig_dagster.mapping.validate import load_valid


class NotConfirmable(ValueError):
    def __init__(self, pending: list[str]):
        self.pending = pending
        super().__init__(f"{len(pending)} field(s) still proposed; accept or reject each before confirming:\n"
                         + "\n".join(pending))


def proposed_fields(fmap: FieldMapFile) -> list[str]:
    """``path:line: object.field`` of every field still awaiting review."""
    return [f"{fmap.path}:{fm.line}: {obj.name}.{fm.name}" for obj in fmap.objects.values()
            for fm in obj.fields.values() if fm.status == "proposed"]


def confirmation_for(fmap: FieldMapFile, by: str, at: dt.datetime | None = None) -> Confirmation:
    at = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    return Confirmation(by=by, at=at.isoformat().replace("+00:00", "Z"), hash=map_hash(fmap), digests=digests(fmap))


def confirm(path: str | Path, by: str, at: dt.datetime | None = None) -> Confirmation:
    """Confirm the map at ``path`` as ``by``; raises :class:`~.errors.MapInvalid` or :class:`NotConfirmable`."""
    if not by.strip():
        raise ValueError("confirm needs the name of the person confirming (--by)")
    fmap = load_valid(path)
    pending = proposed_fields(fmap)
    if pending:
        raise NotConfirmable(pending)
    confirmation = confirmation_for(fmap, by.strip(), at)
    mapfile.write_confirmation(path, confirmation)
    return confirmation
