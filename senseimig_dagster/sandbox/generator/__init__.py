"""Deterministic synthetic Sensei tenant generator.

manifest = generate(out, patients=2000, seed=7)

writes one ``<endpoint>.jsonl`` per registry object, ``defects.jsonl`` (every injected defect) and
``manifest.json``.
"""

from senseimig_dagster.sandbox.generator.core import DEFAULT_AS_OF
from senseimig_dagster.sandbox.generator.manifest import Manifest, read_manifest
from senseimig_dagster.sandbox.generator.npi import npi_check_digit_ok
from senseimig_dagster.sandbox.generator.tenant import generate

__all__ = ["DEFAULT_AS_OF", "Manifest", "generate", "npi_check_digit_ok", "read_manifest"]
