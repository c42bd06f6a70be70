"""The staging layer: raw Sensei rows in, Dataverse-shaped rows out, nothing lost.

Pure Polars, no Dagster: assets under ``assets/`` wrap these functions thinly.

- ``values/``: vectorised cleaners, one per kind of value (text, phone, e-mail, dates and time zones, money,
  CDT codes, teeth and surfaces, NPI, picklists). Each returns a struct ``{value, reason}``: the cleaned value and
  a quarantine reason code, null when the value is fine. ``values.check.run_checks`` applies a set of them to a frame.
- ``quarantine``: the named reasons, each with its severity (repair and warn, drop the field, or quarantine the
  row), the quarantine frame schema and the helpers that build quarantine rows from a boolean mask. Raw values are
  PHI: the quarantine table stays in DuckDB; metadata only ever gets ``masked_sample``.
- dedup, provider and chart-duplicate resolution build on both (``dedup.py``, ``providers.py``,
  ``chart_duplicates.py``).

Every staged object must satisfy conservation: rows in = rows staged + rows merged + rows quarantined; field-level
warnings never drop a row.
"""
