"""Results: where runs live (`store`), the one MLflow writer (`tracking`), and reading them back
(`query`, and `local_store` for sqlite reads without importing MLflow).

`from v1sweep.results import query` is the documented query API (`from v1sweep import query`
still works: see `v1sweep._moved`).
"""
