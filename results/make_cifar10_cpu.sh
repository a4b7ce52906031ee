#!/usr/bin/env bash
# The CPU reference study on CIFAR-10, end to end: run the sweep, then write results/cifar10-cpu/.
# Documented in docs/reference_results.md. Nothing in results/cifar10-cpu/ is edited by hand.
#
#   results/make_cifar10_cpu.sh run DATA_DIR [ARGS]  # both sweeps (20 V1 trials + 5 plain baselines), 1.8 h measured on 2 cores
#   results/make_cifar10_cpu.sh report          # analyze + provenance -> results/cifar10-cpu/
#
# DATA_DIR: the CIFAR-10 ImageFolder tree (train/ and test/) or torchvision's cifar-10-batches-py.
# ARGS: more `v1sweep run` options for both sweeps (--storage DIR, --set trial.train.epochs=1, ...).
# Run it in the background (nohup ... &); if it is interrupted, `v1sweep resume FOLDER` each
# unfinished sweep folder printed in the log, then `report`. MLflow store: ./mlflow.db (the
# default; set MLFLOW_TRACKING_URI to use another), sweep folders under ./v1sweep_runs.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SWEEP=study_cifar10_cpu
OUT="${OUT:-$REPO/results/cifar10-cpu}"
STATE="${STATE:-$REPO/v1sweep_runs/$SWEEP.commands}"   # the commands that ran, with their times (not in git)
CPUS="${CPUS:-2}"

log_cmd() {  # run a command, appending it and its start/end times (UTC) to $STATE
  mkdir -p "$(dirname "$STATE")"
  echo "# start $(date -u +%FT%TZ)" >> "$STATE"
  printf '%q ' "$@" >> "$STATE"; echo >> "$STATE"
  local rc=0; "$@" || rc=$?
  echo "# end $(date -u +%FT%TZ) exit $rc" >> "$STATE"
  return $rc
}

case "${1:-}" in
  run)
    DATA="${2:?usage: $0 run DATA_DIR [ARGS]}"
    shift 2
    cd "$REPO"
    rc=0; log_cmd v1sweep run sweeps/$SWEEP.yaml --data-path "$DATA" --num-cpus "$CPUS" "$@" || rc=$?
    if [ "$rc" -eq 130 ]; then echo "interrupted: v1sweep resume the folder above, then run the baseline arm" >&2; exit 130; fi
    # the plain baseline: same trial config and seeds, logged under the same sweep name so that
    # `analyze --all-parents` reads the five variants as one study (runs even if a V1 trial failed)
    rc2=0; log_cmd v1sweep run sweeps/${SWEEP}_baseline.yaml --data-path "$DATA" --num-cpus "$CPUS" \
      --set name=$SWEEP "$@" || rc2=$?
    exit $(( rc > rc2 ? rc : rc2 ))
    ;;
  report)
    cd "$REPO"
    if [ -e "$OUT" ]; then echo "error: $OUT exists; move it away first (results are never overwritten)" >&2; exit 2; fi
    tmp="$(mktemp -d)"
    log_cmd v1sweep analyze $SWEEP --all-parents --out "$tmp/report"
    mkdir -p "$(dirname "$OUT")"; mv "$tmp/report" "$OUT"; rmdir "$tmp"
    cp "$STATE" "$OUT/commands.txt" 2>/dev/null || echo "(no command log at $STATE)" > "$OUT/commands.txt"
    python "$REPO/results/provenance.py" "$SWEEP" > "$OUT/PROVENANCE.md"
    pip freeze > "$OUT/versions.txt"
    echo "wrote $OUT"
    ;;
  *)
    sed -n '2,11p' "$0"; exit 2 ;;
esac
