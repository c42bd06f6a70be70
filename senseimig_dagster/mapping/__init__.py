"""The field map: how each Sensei field becomes Dataverse data, reviewed and confirmed before anything is written.

One YAML file per migration (``mapping.yaml``; the project ships ``default_map.yaml``)::

    version: 1
    prefix: smig                       # publisher prefix of the schema plan the targets belong to
    objects:
      patient:                         # a registry object (objects.py); every one must appear
        target: contact                # table logical name
        constants: {smig_contacttype: 727000000}        # written on every row
        fields:                        # every field of the object: mapped, or skipped with a reason
          first_name: {target: firstname, transform: direct, confidence: 0.97, reasons: [...], status: proposed}
          gender:     {target: gendercode, transform: picklist, values: {Male: 1, Female: 2, Other: null}}
          primary_location_id: {target: parentcustomerid_account, transform: lookup, lookup: location}
          nickname:   {transform: skip, reason: "..."}
    confirmation: {by: ..., at: ..., hash: "sha256:...", digests: {...}}   # written by `senseimig mapping confirm`

Transforms (``FieldMap``): ``direct``; ``picklist`` (``values``: source value -> option value; ``null`` leaves
the column empty; a value missing from the map is quarantined by staging); ``date`` / ``datetime`` (``time_zone``:
``utc`` or ``location`` = the row's location's zone; Dataverse gets UTC); ``concat`` (``sources`` joined by
``separator``); ``split`` (``targets`` in order, split on ``separator`` from the right); ``lookup`` (``target`` is
the case-sensitive navigation property, ``lookup`` the registry object whose row is bound by its alternate key);
``constant`` (``value``); ``skip`` (``reason``). Several ``targets`` on a value transform copy the value.
``via: <field>`` reads the value from the row a reference field points at. Status per field: ``proposed`` (by the
proposer; blocks confirmation), ``accepted`` (the default when absent), ``rejected`` (not written).

Object options: ``mode: match`` + ``match_on`` (rows are found, never written: users -> systemuser by e-mail);
``mode: skip`` + ``reason``; ``merge_into`` (no rows of its own: values become columns of another object's row,
with ``slot_by``/``slots`` choosing a column set via ``{slot}``/``{Slot}`` in targets, ``latest_by`` picking one row);
``route`` (``by`` a field's value to one of several tables, ``{table}`` in targets; other values are not written).

The hash (``digest``) covers what affects written data only, never confidence, reasons, comments or review status
(except that rejected fields are not written). Modules: ``model`` (dataclasses), ``mapfile`` (YAML round trip),
``validate`` (errors with file:line and fix), ``confirm``, ``gate`` (confirmed and unchanged?), ``scope`` (which
objects a map writes, merges, and where), ``schema_plan`` (the Dataverse schema the maps write to).
"""

from functools import cache
from importlib import resources

from senseimig_dagster.mapping.confirm import NotConfirmable, confirm, proposed_fields
from senseimig_dagster.mapping.errors import MapError, MapInvalid
from senseimig_dagster.mapping.gate import GateProblem, check_confirmed, gate_problems, problems_markdown
from senseimig_dagster.mapping.model import Confirmation, FieldMap, FieldMapFile, Merge, ObjectMap, Route
from senseimig_dagster.mapping.validate import load_valid, validate

DEFAULT_MAP = "default_map.yaml"


def default_map_path() -> str:
    return str(resources.files(__package__).joinpath(DEFAULT_MAP))


@cache
def default_map() -> FieldMapFile:
    """The shipped default map, validated: what decides the asset graph's structure (which objects have staging
    assets and writers) at definition time; the map read at run time decides the values."""
    return load_valid(default_map_path())


__all__ = [
    "Confirmation", "FieldMap", "FieldMapFile", "GateProblem", "MapError", "MapInvalid", "Merge", "NotConfirmable",
    "ObjectMap", "Route", "check_confirmed", "confirm", "default_map", "default_map_path", "gate_problems", "load_valid",
    "problems_markdown", "proposed_fields", "validate",
]
