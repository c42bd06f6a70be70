"""The audit trail of every Dataverse write and the rollback that undoes them.

``store.py`` opens the audit DuckDB file (encrypted at rest when ``SENSEIMIG_AUDIT_KEY`` is set), ``log.py`` is the
append-only ``audit.writes`` table the writers record into (intent before the request, outcome after), and
``rollback.py`` deletes what the migration created, restores what it updated and optionally removes its schema.
"""
