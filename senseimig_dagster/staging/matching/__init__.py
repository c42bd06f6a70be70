"""Patient matching on Splink (DuckDB): comparison columns, the linkage model, household rules, clusters.

``columns`` normalises patient rows into what is compared; ``model`` is the Splink settings (blocking rules,
graded comparisons) and its calibrated starting parameters; ``linkage`` trains per tenant and scores candidate
pairs; ``clusters`` turns scored pairs into people under household rules and a person's overrides.
"""
