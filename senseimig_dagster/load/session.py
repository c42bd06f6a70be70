"""One step's connection to Dataverse, as ``DataverseResource.session()`` opens it: a client per application user
(the main one first), the bulk loader over them, the metadata client, the schema plan with its target catalog, and
the entity sets of the tables a map writes, looked up once. Closing it closes every client."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from senseimig_dagster.dataverse.bulk import BulkLoader
from senseimig_dagster.dataverse.client import DataverseClient
from senseimig_dagster.dataverse.metadata import DataverseMetadata
from senseimig_dagster.dataverse.schema import SchemaPlan
from senseimig_dagster.mapping.model import FieldMapFile
from senseimig_dagster.mapping.scope import written_tables
from senseimig_dagster.mapping.targets import TargetCatalog


class DataverseSession:
    def __init__(self, clients: list[DataverseClient], plan: SchemaPlan) -> None:
        if not clients:
            raise ValueError("a Dataverse session needs at least one client")
        self.clients, self.plan = clients, plan
        self._entity_sets: dict[str, str] = {}

    @property
    def client(self) -> DataverseClient:
        """The main application user's client (reads, metadata, by-id batches)."""
        return self.clients[0]

    @cached_property
    def loader(self) -> BulkLoader:
        return BulkLoader(self.clients)

    @cached_property
    def metadata(self) -> DataverseMetadata:
        return DataverseMetadata(self.client)

    @cached_property
    def catalog(self) -> TargetCatalog:
        return TargetCatalog(self.plan)

    def entity_sets(self, tables: Iterable[str]) -> dict[str, str]:
        """Entity set per table (standard ones from Microsoft's metadata, the others read once per session)."""
        wanted = set(tables)
        if not wanted <= self._entity_sets.keys():
            self._entity_sets.update(self.metadata.entity_sets(wanted | self._entity_sets.keys()))
        return dict(self._entity_sets)

    def entity_sets_of(self, fmap: FieldMapFile) -> dict[str, str]:
        """The entity sets of every table the map writes (what any writer's lookups may point at)."""
        return self.entity_sets(written_tables(fmap))

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def __enter__(self) -> DataverseSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
