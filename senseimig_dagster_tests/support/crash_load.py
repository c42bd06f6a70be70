"""The loader process the crash-safety test kills: ``python -m senseimig_dagster_tests.support.crash_load CONFIG.json``
materializes every ``dataverse/<object>`` writer (staging, owners and schema already done in the DuckDB file) into
the emulator the parent test serves over HTTPS, with a Dagster instance kept in a directory of its own. ``CONFIG``
holds the files (``database``, ``audit``, ``mapping``, ``home``), ``sensei_url`` and the ``dataverse`` and ``graph``
resources' configuration. Exit status 0 when the run succeeded, 1 otherwise (a SIGKILL shows as -9 to the
parent)."""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path


def memoize_map_parsing() -> None:
    """Parsing the YAML map costs ~1.5 s and every writer parses it two or three times (gate, map): about 40 s of a
    60 s run of 17 writers. Memoized by the file's bytes (the file is still read each time, so the gate still sees
    a change), the test's time goes to crashes instead of parsing."""
    from senseimig_dagster.mapping import mapfile

    parse, cache = mapfile.load, {}

    def load(path: str | Path):  # noqa: ANN202 - mapfile.load's own return type
        key = (str(path), hashlib.sha256(Path(path).read_bytes()).hexdigest())
        if key not in cache:
            cache[key] = parse(path)
        return cache[key]

    mapfile.load = load


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore")  # Dagster's beta warnings: noise in the parent's output
    memoize_map_parsing()
    from dagster import DagsterInstance, materialize

    from senseimig_dagster.assets.dataverse_schema import dataverse_schema
    from senseimig_dagster.assets.owners import staging_owners
    from senseimig_dagster.assets.staging import staging_assets
    from senseimig_dagster.assets.writers import WRITER_KEYS, dataverse_assets
    from senseimig_dagster.resources import DataverseResource, GraphResource
    from senseimig_dagster_tests.support.resources import migration_resources

    config = json.loads(Path(argv[0]).read_text())
    # Raw is landed: the Sensei API only serves document bodies.
    resources = migration_resources(config["database"], mapping=config["mapping"], sensei_url=config["sensei_url"],
                                    dataverse=DataverseResource(**config["dataverse"]),
                                    graph=GraphResource(**config["graph"]), audit=config["audit"])
    Path(config["home"]).mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.local_temp(tempdir=config["home"])
    try:
        result = materialize([dataverse_schema, staging_assets, staging_owners, *dataverse_assets],
                             selection=WRITER_KEYS, resources=resources, instance=instance, raise_on_error=False)
    finally:
        instance.dispose()
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
