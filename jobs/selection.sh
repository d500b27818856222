#!/usr/bin/env bash
# Learned per-instance selection (issue 11, docs/selection.md): pilot sweeps -> fit -> held-out
# sweeps -> exact simulated evaluation -> grid=selected sweeps -> reports. Every step resumes.
#
#   MODEL=smollm2 LIMIT=40 jobs/selection.sh                         # the real run (GPU machine)
#   MODEL=tiny LIMIT=2 PILOT_LIMIT=3 EXTRA="model.tiny.n_layers=3 max_new_tokens=4 cluster=inprocess" \
#       FIT="folds=2 threads=1" jobs/selection.sh                     # the same commands, a smoke run on CPU
#
# MODEL: a conf/model choice. DATA: the authors' release. LIMIT: unseen instances per language
# (LIMIT_<task>, e.g. LIMIT_xnli=2, overrides it for one task).
# PILOT_LIMIT: PilotSet instances per language (empty = all). OUT: where everything goes.
# EXTRA: more sweep overrides. FIT: more fit overrides (e.g. learner=logistic).
set -euo pipefail
MODEL=${MODEL:-smollm2}
DATA=${DATA:-../shared/xtransplant-data}
LIMIT=${LIMIT:-40}
PILOT_LIMIT=${PILOT_LIMIT:-}
OUT=${OUT:-runs/select/$MODEL}
EXTRA=${EXTRA:-}
FIT=${FIT:-}
PY=${PY:-python}
TASKS=${TASKS:-"xnli xquad globalopinionqa"}
GRIDS="source_last target_first"
pilot_limit=${PILOT_LIMIT:+task.limit=$PILOT_LIMIT}
limit() { local name="LIMIT_$1"; echo "${!name:-$LIMIT}"; }
start=$(date +%s)
stamp() { echo "[selection] $1: $(( $(date +%s) - start ))s since start"; }

# 1. Pilot sweeps: SourceLast + TargetFirst rows (2N-1 candidates) at attn and ffn, with features.
for task in $TASKS; do for grid in $GRIDS; do
  $PY -m pipeline.sweep model=$MODEL task=$task task.root=$DATA task.split=pilot $pilot_limit \
    granularity=[attn,ffn] grid=$grid features=true out_dir=$OUT/pilot/$task-$grid $EXTRA
done; done
stamp "pilot sweeps"

# 2. One selector for the three tasks (task and language are features), tuned by grouped CV.
runs=(); for task in $TASKS; do for grid in $GRIDS; do runs+=("run=$OUT/pilot/$task-$grid"); done; done
$PY -m pipeline.select fit "${runs[@]}" out=$OUT/selector $FIT
stamp "fit"

# 3. Held-out: a sample of the unseen sets, the same candidates with features (nothing is tuned on them).
for task in $TASKS; do for grid in $GRIDS; do
  $PY -m pipeline.sweep model=$MODEL task=$task task.root=$DATA task.split=unseen task.limit=$(limit $task) \
    granularity=[attn,ffn] grid=$grid features=true out_dir=$OUT/unseen/$task-$grid $EXTRA
done; done
stamp "held-out sweeps"

# 4. Exact simulated selection on the held-out rows: the table of docs/selection.md (one section per task).
runs=(); for task in $TASKS; do for grid in $GRIDS; do runs+=("run=$OUT/unseen/$task-$grid"); done; done
$PY -m pipeline.select evaluate selector=$OUT/selector "${runs[@]}" out=$OUT/evaluation
stamp "evaluate"

# 5. The selection for real: vanilla + the chosen config per instance (2 generations), then the
#    reduce report with the "Learned selection" row beside the held-out SourceLast/TargetFirst runs.
for task in $TASKS; do
  $PY -m pipeline.sweep model=$MODEL task=$task task.root=$DATA task.split=unseen task.limit=$(limit $task) \
    grid=selected grid.selector=$OUT/selector out_dir=$OUT/selected/$task $EXTRA
  $PY -m pipeline.reduce run=$OUT/unseen/$task-source_last run=$OUT/unseen/$task-target_first \
    run=$OUT/selected/$task out=$OUT/report/$task
done
stamp "selected sweeps and reports"
echo "[selection] table: $OUT/evaluation/selection.md; reports: $OUT/report/<task>/report.md"
