"""The field map's confirmation gate as Dagster checks (the gate itself: ``mapping/gate.py``).

``gate_check_for(key)`` is a blocking asset check (a failure stops everything downstream of ``key``); an asset that
itself writes declares ``gate_check_spec(key)`` and yields ``enforce_gate(mapping, key)`` first, which raises before
any write when the gate is closed.
"""
# No `from __future__ import annotations` here: Dagster reads the context and resource annotations at runtime.

from collections.abc import Sequence
from pathlib import Path

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    Failure,
    MetadataValue,
    multi_asset_check,
)

from senseimig_dagster.assets.metadata import KeyLike
from senseimig_dagster.mapping.gate import GATE_CHECK_NAME, GateProblem, gate_problems, problems_markdown


def _reason(problems: Sequence[GateProblem]) -> str:
    """One line for the check's header: the first problem's first line, and how many there are."""
    if not problems:
        return "map confirmed"
    first = str(problems[0]).splitlines()[0]
    return first if len(problems) == 1 else f"{len(problems)} map problems; first: {first}"


def gate_result(path: str | Path, asset_key: KeyLike) -> AssetCheckResult:
    problems = gate_problems(path)
    return AssetCheckResult(
        asset_key=AssetKey.from_coercible(asset_key), check_name=GATE_CHECK_NAME, passed=not problems,
        severity=AssetCheckSeverity.ERROR, description=_reason(problems),
        metadata={"map": str(path), "problems": len(problems),
                  **({"details": MetadataValue.md(problems_markdown(problems))} if problems else {})})


def gate_check_spec(asset_key: KeyLike) -> AssetCheckSpec:
    return AssetCheckSpec(GATE_CHECK_NAME, asset=asset_key, blocking=True,
                          description="The field map is confirmed and unchanged since; nothing is written otherwise.")


def enforce_gate(path: str | Path, asset_key: KeyLike) -> AssetCheckResult:
    """For an asset that writes itself: the check result to yield first; raises ``Failure`` (with the problems)
    before the caller can write anything when the gate is closed."""
    result = gate_result(path, asset_key)
    if not result.passed:
        raise Failure(description=f"field map gate closed: {result.description}",
                      metadata={"problems": MetadataValue.md(problems_markdown(gate_problems(path)))})
    return result


def gate_check_for(asset_key: KeyLike, resource_key: str = "mapping") -> AssetChecksDefinition:
    """A blocking check on ``asset_key`` reading the map from the ``MappingResource`` at ``resource_key``: when it
    fails, assets downstream of ``asset_key`` (the Dataverse writes) are not executed."""
    spec = gate_check_spec(asset_key)

    @multi_asset_check(specs=[spec], required_resource_keys={resource_key},
                       name=f"{GATE_CHECK_NAME}__{'__'.join(spec.asset_key.path)}")
    def _gate(context: AssetCheckExecutionContext):
        yield gate_result(getattr(context.resources, resource_key).path, asset_key)

    return _gate
