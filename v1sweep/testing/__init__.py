"""Contract test classes, one module per plugin family (as `optuna.testing` does for samplers).

Each module holds a plain checker (`check_<family>(name)`, usable from a script or a doc example)
and a pytest base class whose tests loop over the family's registry, so a new entry registered
anywhere is tested with no other edit. `tests/` uses them; so can a plugin author's own tests.
pytest is imported only by the test classes' modules when they are used.
"""
