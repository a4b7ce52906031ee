"""The names v1sweep writes into MLflow and its output folders: tags, artifacts, metrics.

One owner for every name of the layout in docs/architecture.md ("MLflow layout") and
docs/sweeps.md, so the writer (`v1sweep.results.tracking`), the readers (`v1sweep.results.query`,
`v1sweep.analysis`, `v1sweep status`) and the trial (`v1sweep.trial.run`) cannot drift apart. The
names themselves are a public contract (users filter on them in the MLflow UI): changing a value
here changes the layout. Tests spell the layout out literally, which is what checks this module.

Owned elsewhere and only referenced: corruption names (`v1sweep.corruptions.catalog`) and the
adversarial metric names (`v1sweep.config.adversarial`: ``adv_acc/<norm>/<eps>``).
Standard library only: importable from every layer, without torch, ray or mlflow.
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Run tags
# ---------------------------------------------------------------------------------------------
# MLflow's own: the parent of a child run, the experiment's UI kind, a saved runs-table view.
PARENT = "mlflow.parentRunId"
EXPERIMENT_KIND, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."

# Every run of a sweep: what it is (ROLE_* below) and which sweep it belongs to.
ROLE = "v1sweep.role"
SWEEP = "v1sweep.sweep"
ROLE_SWEEP, ROLE_TRIAL, ROLE_ANALYSIS = "sweep", "trial", "analysis"

# The sweep's parent run.
SPEC_HASH = "v1sweep.spec_hash"
SWEEP_DIR = "v1sweep.sweep_dir"
COMMAND = "v1sweep.command"
RESUME_COMMAND = "v1sweep.resume_command"  # the last `v1sweep resume` command line
GIT_COMMIT = "v1sweep.git_commit"
SWEEP_WALL_TIME = "v1sweep.wall_time_s"    # at the end: the driver's wall time
TRIALS_PREFIX = "v1sweep.trials."          # at the end: v1sweep.trials.<state> = count

# A trial's child run.
TRIAL_ID = "trial_id"
STATUS = "v1sweep.status"                  # one of TRIAL_STATES (or "superseded": a retired duplicate)
ERROR = "v1sweep.error"                    # "Type: message" of a failed trial (also: a failed sweep)
FINAL_LOGGED = "v1sweep.final_logged"      # "true" once the final metrics are in
ARTIFACTS_MISSING = "v1sweep.artifacts_missing"  # "true": metrics logged, a full disk refused the artifacts
INTERRUPTED = "v1sweep.interrupted"        # "true": ended by Ctrl-C / a dead driver, left for resume
ATTEMPTS = "v1sweep.attempts"              # failed attempts rerun (`resume --retry-failed`)
RETRIES = "v1sweep.retries"                # Ray's automatic retries (failures.max_failures)
LAST_ERROR = "v1sweep.last_error"          # the error of the last retried failure
USED_KEYS = ("frost", "storage")           # what the corrupted set was made with: v1sweep.<key>_used

# The analysis run (`v1sweep analyze`).
ANALYSIS = "v1sweep.analysis"              # which analysis: "robustness"
ANALYSIS_ROBUSTNESS = "robustness"

# Values of STATUS (and of `v1sweep.results.query` rows; "interrupted" from INTERRUPTED).
TRIAL_STATES = ("finished", "failed", "stopped", "running", "interrupted")
SUPERSEDED = "superseded"
TRUE = "true"


def attempt_error(n: int) -> str:
    """``v1sweep.attempt.<n>.error``: the error of failed attempt `n` of a trial rerun later."""
    return f"v1sweep.attempt.{n}.error"


def trials_count(state: str) -> str:
    """``v1sweep.trials.<state>``: the parent run's count of trials that ended in `state`."""
    return f"{TRIALS_PREFIX}{state}"


def used(key: str) -> str:
    """``v1sweep.<key>_used`` (`key` in USED_KEYS): what a trial actually used."""
    return f"v1sweep.{key}_used"


# ---------------------------------------------------------------------------------------------
# Artifacts and files
# ---------------------------------------------------------------------------------------------
# Written by `v1sweep.trial.run.run_trial` into the trial folder; logged on the trial's run.
CONFIG_YAML = "config.yaml"
RF_PARAMS_CSV = "rf_params.csv"
RF_HISTOGRAMS_PNG = "rf_histograms.png"
SUMMARY_JSON = "summary.json"
EVAL_TABLE_CSV = "eval_table.csv"
TRIAL_LOG = "trial.log"                    # written by the sweep's worker around the trial
MODEL_PT = "model.pt"
CHECKPOINT_PT = "checkpoint.pt"            # stays in the trial folder, never logged
TRIAL_ARTIFACTS = (CONFIG_YAML, RF_PARAMS_CSV, RF_HISTOGRAMS_PNG, SUMMARY_JSON, EVAL_TABLE_CSV, TRIAL_LOG,
                   MODEL_PT)

# The sweep folder; SOURCE_YAML (the user's file) at the parent run's artifact root and the
# resolved SPEC_YAML under RESOLVED_DIR (only SPEC_YAML, at the root, without a source file).
SWEEP_JSON = "sweep.json"
SPEC_YAML = "sweep.yaml"
SOURCE_YAML = "source.yaml"
RESOLVED_DIR = "resolved"

# The analysis run's folder (logged whole at its artifact root), besides SUMMARY_JSON and CSV tables.
REPORT_MD, REPORT_HTML = "report.md", "report.html"

# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
CLEAN_ACC, CLEAN_TOP5 = "clean_acc", "clean_top5"
CORRUPTION_ACC = "corruption_acc"
RF_SIMILARITY = "rf_similarity"
MCE_UNNORMALIZED, RELATIVE_MCE_UNNORMALIZED = "mce_unnormalized", "relative_mce_unnormalized"
TRAIN_IMAGES_PER_S, WALL_TIME_S = "train_images_per_s", "wall_time_s"
EPOCH = "epoch"                            # per-epoch metric; its steps tell which epochs are logged
# The final metrics of a trial a search may optimise: the table of docs/trial_config.md
# ("Metrics (names are a contract)"), plus these prefixes followed by a sub-name; sweep files also
# take ``adv_acc/...`` (`v1sweep.config.adversarial.ADV_PREFIX`).
FINAL_METRICS = (CLEAN_ACC, CLEAN_TOP5, CORRUPTION_ACC, RF_SIMILARITY, TRAIN_IMAGES_PER_S, WALL_TIME_S,
                 MCE_UNNORMALIZED, RELATIVE_MCE_UNNORMALIZED)
CORRUPTION_PREFIX = CORRUPTION_ACC + "/"   # corruption_acc/<name or category>
FINAL_METRIC_PREFIXES = (CORRUPTION_PREFIX, RF_SIMILARITY + "/", "rf_wasserstein/")


def corruption_metric(name: str) -> str:
    """``corruption_acc/<name>``: mean accuracy over severities of one corruption (a name of
    `v1sweep.corruptions.catalog.CORRUPTIONS`) or one category."""
    return CORRUPTION_PREFIX + name
