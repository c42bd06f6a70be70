"""``generate``: stream a whole tenant to JSONL, one household at a time, and write its manifest."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from senseimig_dagster.objects import REGISTRY
from senseimig_dagster.sandbox.generator import history, people, reference
from senseimig_dagster.sandbox.generator.core import DEFAULT_AS_OF, Ctx
from senseimig_dagster.sandbox.generator.defects import QUOTAS, RowMess
from senseimig_dagster.sandbox.generator.manifest import FORMAT, NULL_LOCATION, Manifest, write_manifest
from senseimig_dagster.sandbox.generator.writer import TenantWriter


def generate(out: Path, patients: int, seed: int = 7, as_of: dt.datetime = DEFAULT_AS_OF) -> Manifest:
    """Write a synthetic Sensei tenant of ``patients`` patient rows (duplicates included) into ``out``.

    Byte-identical for the same (patients, seed, as_of). Memory stays flat: a household and its history are
    written and forgotten before the next one is generated.
    """
    if patients < 0:
        raise ValueError("patients must be >= 0")
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    out, as_of = Path(out), as_of.astimezone(dt.UTC)
    writer = TenantWriter(out, seed)
    try:
        ctx = Ctx(writer, seed, as_of)
        ref = reference.build(ctx, patients)
        RowMess(ref).install(ctx)
        ctx.plan_quotas(patients, QUOTAS)
        _patients(ctx, ref, patients)
    finally:
        files = writer.close()
    manifest = _manifest(writer, files, seed, patients, as_of)
    write_manifest(out, manifest)
    return manifest


def _patients(ctx: Ctx, ref: reference.Reference, patients: int) -> None:
    """Households until ``patients`` rows are written; a duplicate follows its original when there is room."""
    slot = 0
    while slot < patients:
        family = people.family(ctx, ref, patients - slot)
        for i, person in enumerate(family):
            ctx.open_slot(slot)
            slot += 1
            original = history.patient(ctx, ref, person)
            room = patients - slot - (len(family) - i - 1)  # slots left once the household is complete
            if room > 0 and ctx.take("duplicate_patient"):
                ctx.open_slot(slot)
                slot += 1
                history.duplicate(ctx, ref, original)


def _manifest(
    writer: TenantWriter, files: dict[str, str], seed: int, patients: int, as_of: dt.datetime
) -> Manifest:
    tables = writer.tables
    counts = {obj.name: tables[obj.name].rows for obj in REGISTRY}
    by_location = {
        obj.name: dict(
            sorted(tables[obj.name].by_location.items(), key=lambda kv: (kv[0] == NULL_LOCATION, kv[0]))
        )
        for obj in REGISTRY
        if obj.location_field
    }
    return Manifest(
        format=FORMAT,
        seed=seed,
        patients=patients,
        as_of=as_of,
        counts=counts,
        counts_by_location=by_location,
        defect_counts=dict(sorted(writer.defect_counts.items())),
        total_rows=sum(counts.values()),
        files=dict(sorted(files.items())),
    )
