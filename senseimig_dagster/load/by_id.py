"""One request per row, by primary key, as continue-on-error ``$batch`` es: for tables without the source-id key
(``PATCH <set>(<id>)`` is an upsert by primary key) and for requests the bulk messages can't carry (an activity
created with its parties, a party list replaced)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from senseimig_dagster.dataverse.batch import BatchRequest
from senseimig_dagster.dataverse.bulk import LoadResult, RowFailure
from senseimig_dagster.dataverse.client import DataverseClient, record_segment

# Rows per continue-on-error $batch and pieces in flight at once (the loader's chunk size; few enough in flight that
# their parts are not throttled: such a part would fail as 429).
BY_ID_PIECE, BY_ID_PARALLEL = 100, 4


def upsert_by_id(client: DataverseClient, entity_set: str, ids: Sequence[str],
                  bodies: Iterable[dict[str, Any]]) -> LoadResult:
    """``PATCH <set>(<id>)`` per row (upsert by primary key: Microsoft's 'Upsert a table row using the Web API'), as continue-on-error ``$batch`` es:
    for tables without the source-id key. Rows whose part is throttled fail with 429 (small tables only)."""
    requests = [BatchRequest("PATCH", entity_set + record_segment(i), body=b) for i, b in zip(ids, bodies, strict=True)]
    return batch_rows(client, requests, list(ids))


def batch_rows(client: DataverseClient, requests: Sequence[BatchRequest], ids: Sequence[str | None]) -> LoadResult:
    """One request per row as continue-on-error ``$batch`` es; a row's id is ``ids[i]`` or its ``OData-EntityId``."""
    result = LoadResult(ids=[None] * len(ids))
    starts = range(0, len(requests), BY_ID_PIECE)

    def send(start: int) -> Any:
        return client.batch(requests[start:start + BY_ID_PIECE], continue_on_error=True)

    if len(starts) <= 1:
        answers = [send(s) for s in starts]
    else:  # independent pieces: one 1000-part $batch at a time held the writer for its whole modelled time
        with ThreadPoolExecutor(min(BY_ID_PARALLEL, len(starts)), thread_name_prefix="dataverse-by-id") as pool:
            answers = list(pool.map(send, starts))
    for start, answer in zip(starts, answers, strict=True):
        result.requests += 1
        for offset, response in enumerate(answer.responses):
            index = start + offset
            if response is not None and response.ok:
                result.ids[index] = ids[index] or response.entity_id
                result.succeeded += 1
            else:
                result.failed.append(RowFailure(index, response.status if response else None,
                                                response.code if response else None,
                                                response.message if response else None))
    return result
