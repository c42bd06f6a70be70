"""Every asset key of the graph, in one place: per-object keys are generated from registry names, the others are
the few assets of their own. Layers are key prefixes: ``raw/<object>`` -> ``staging/<object>`` ->
``dataverse/<object>``."""

from __future__ import annotations

from dagster import AssetKey

RAW, STAGING, DATAVERSE = "raw", "staging", "dataverse"


def raw_key(name: str) -> AssetKey:
    return AssetKey([RAW, name])


def staging_key(name: str) -> AssetKey:
    return AssetKey([STAGING, name])


def writer_key(name: str) -> AssetKey:
    return AssetKey([DATAVERSE, name])


RECORD_COUNTS = AssetKey(["inventory", "record_counts"])
LOCATION_COUNTS = AssetKey(["inventory", "location_counts"])
MAP_PROPOSED = AssetKey(["mapping", "proposed"])
MAP_CONFIRMED = AssetKey(["mapping", "confirmed"])
SAMPLE_DIFF = AssetKey(["mapping", "sample_diff"])
QUARANTINE, MERGE_MAP, MATCH_REVIEW, PROVIDER_RESOLUTION = (
    staging_key(n) for n in ("quarantine", "merge_map", "match_review", "provider_resolution"))
OWNERS = staging_key("owners")
SCHEMA = writer_key("schema")
DELETIONS = writer_key("deletions_report")
GO_LIVE = AssetKey("go_live_ready")
