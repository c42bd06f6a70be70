"""Content hashes: sha256 over canonical JSON of what affects written data (targets, transforms, value maps,
constants, merge/route rules), never of confidence, reasons, comments, or accepted-vs-proposed status.

``digests()`` gives one short digest per object (its settings) and per field, stored with the confirmation so the
gate can name what changed since; ``map_hash()`` covers them all.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from senseimig_dagster.mapping.model import FieldMapFile

DIGEST_CHARS = 8  # per entry: enough to notice which entry changed (the full hash guards the whole map)


def _sha(content: Any) -> str:
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digests(fmap: FieldMapFile) -> dict[str, str]:
    out: dict[str, str] = {"_map": _sha({"version": fmap.version, "prefix": fmap.prefix})[:DIGEST_CHARS]}
    for name in sorted(fmap.objects):
        obj = fmap.objects[name]
        out[name] = _sha(obj.content())[:DIGEST_CHARS]
        for field_name in sorted(obj.fields):
            out[f"{name}.{field_name}"] = _sha(obj.fields[field_name].content())[:DIGEST_CHARS]
    return out


def map_hash(fmap: FieldMapFile) -> str:
    content = {"version": fmap.version, "prefix": fmap.prefix,
               "objects": {name: {"object": obj.content(),
                                  "fields": {f: fm.content() for f, fm in obj.fields.items()}}
                           for name, obj in fmap.objects.items()}}
    return f"sha256:{_sha(content)}"
