"""The sweep engine: Ray Tune runs one trial function per configuration of a sweep file.

`engine` (run, resume, the Tuner), `session` (Ray session, environment, quiet logging), `tuning`
(search algorithm, scheduler, progress output), `dry_run`, `folder` (the sweep folder and its
record), `summary` (trials settled, end-of-sweep summary), `trainable` (the function Ray calls),
`callback` (Ray events -> the MLflow writer), `rebuild` (resume from MLflow when Ray's state is
damaged), `resources`, `progress` (terminal) and `cost` (dry-run estimates). Ray, Optuna and MLflow
are imported here, never below this layer.
"""
