"""Verification of the load, pure (no Dagster): the comparisons behind the writers' checks and go-live.

* ``counts``: staged rows vs rows present in Dataverse, by paging ``smig_sourcesystemid`` (never ``$count``, capped at
  5000), and conservation: extracted = in Dataverse + merged + collapsed + quarantined + not written.
* ``fields``: every mapped column read back and compared (``mapping.sample.field_diff``), lookups through the
  parent's alternate key; every row up to ``FULL_LIMIT`` rows, else a seeded sample of ``sample_size()`` rows
  (99% confidence of a < 0.1% defect rate).
* ``billing``: the billing ledger reconciliation: Pandera-checked totals per location and entry type, Sensei vs
  Dataverse, within 0.01%, with one repair of the rows that differ.

Their Dagster checks are ``assets/verification.py`` (per writer) and ``assets/go_live.py`` (reconciliation).
"""
