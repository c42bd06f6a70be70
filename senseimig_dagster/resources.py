"""Dagster resources: the Sensei source (REST API or CSV Data Export) and the DuckDB store."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource, EnvVar
from pydantic import Field as ConfigField

from senseimig_dagster import settings
from senseimig_dagster.objects import SenseiObject
from senseimig_dagster.sensei.client import SenseiClient
from senseimig_dagster.sensei.exports import export_count, extract_export
from senseimig_dagster.sensei.records import Batch, Extraction


class SenseiSource(ConfigurableResource):
    """Where Sensei records come from. ``api``: the REST API (real tenant or the sandbox simulator);
    ``export``: a folder of CSV Data Export files. Both produce the same typed rows."""

    mode: Literal["api", "export"] = "api"
    base_url: str = f"http://127.0.0.1:{settings.SANDBOX_SENSEI_PORT}"
    api_key: str = ConfigField(default=settings.SANDBOX_API_KEY, description="Csd-Api-Key; use EnvVar for real")
    export_dir: str = "data/export"
    page_size: int = 5000  # the API maximum: fewer round trips; memory stays bounded (two pages in flight)
    timeout_seconds: float = 30.0
    max_retries: int = 6

    def client(self) -> SenseiClient:
        return SenseiClient(self.base_url, self.api_key, page_size=self.page_size, timeout=self.timeout_seconds,
                            max_retries=self.max_retries)

    def extract(self, obj: SenseiObject, since: dt.datetime | None, before: dt.datetime | None) -> Extraction:
        if self.mode == "export":
            return extract_export(obj, Path(self.export_dir), since, before)
        client = self.client()
        try:
            extraction = client.extract(obj, since, before)
        except BaseException:
            client.close()
            raise
        return replace(extraction, batches=_closing(extraction.batches, client))

    def count(self, obj: SenseiObject) -> int:
        """What the source says it holds for an object, all history."""
        if self.mode == "export":
            return export_count(obj, Path(self.export_dir))
        with self.client() as client:
            return client.count(obj)


def _closing(batches: Iterator[Batch] | list[Batch], client: SenseiClient) -> Iterator[Batch]:
    with client:
        yield from batches


def sensei_source_from_env() -> SenseiSource:
    """The source as configured by environment; the API key stays an EnvVar so it is never shown or stored."""
    api_key = EnvVar("SENSEI_API_KEY") if "SENSEI_API_KEY" in os.environ else settings.SANDBOX_API_KEY
    return SenseiSource(mode=settings.sensei_source(), base_url=settings.sensei_base_url(),  # type: ignore[arg-type]
                        api_key=api_key, export_dir=settings.sensei_export_dir())
