#!/usr/bin/env bash
# Run jobs/export.py on a Spark standalone cluster started inside one SLURM allocation.
#
#   sbatch -N 4 --ntasks-per-node=1 --cpus-per-task=16 --mem=64G --time=04:00:00 \
#       scripts/slurm-spark.sh conf/my-job.toml [--set key=value ...]
#
# Submit from the project folder, on a filesystem every node sees: sbatch runs a copy of
# this script from its spool, so the project is found through $SLURM_SUBMIT_DIR.
# No Spark installation is needed: the master and the workers are started with spark-class
# from the pip-installed pyspark of $PYTHON (java must be on PATH, or JAVA_HOME set, on
# every node, e.g. after `module load java/17`).
#
# What it does: packages the project (dist/pipelines.zip), starts the master on the first
# node of the allocation (where this script runs), one worker per node with srun (cores
# from --cpus-per-task, memory from --mem or --mem-per-cpu), waits until every worker has
# registered, then runs spark-submit in client mode (the driver runs here too) and exits
# with its exit code (0 committed, 2 bad input, 1 failed run). Master, workers and their
# executors are stopped when the script ends, fails, is cancelled or runs out of time
# (scancel and the time limit send SIGTERM).
#
# Logs: this script's output (the job's progress and summary) in spark-export-<jobid>.out;
# master, worker and executor logs in spark-export-<jobid>/ (executors: work-<node>/app-*/<n>/stderr).
#
# Settings (environment variables, all optional; sbatch passes your environment on):
#   PYTHON              Python with this project's dependencies, at the same path on every
#                       node (default: the project's .venv/bin/python, else python3)
#   EXECUTOR_MEMORY     JVM heap of the one executor per node (default 2g). The JVM only
#                       moves task descriptors and receipts; the pixel work runs in one
#                       Python worker per core, outside the heap (see docs/clusters.md)
#   SPARK_LOCAL_DIRS    node-local scratch (default: $TMPDIR, else /tmp, per job)
#   SPARK_LOG_ROOT      where logs go (default: spark-export-<jobid>/ in the project)
#   SPARK_MASTER_PORT   master port (default 7077; if it is taken Spark moves to a free
#                       one, and the workers are pointed at the port actually bound)
#   SPARK_PROPERTIES    properties file (default conf/spark-standalone.conf)
#   SPARK_WAIT_SECONDS  how long to wait for the workers (default 300)
#   DRY_RUN=1           print the plan (commands) instead of running anything
#
#SBATCH --job-name=tile-export
#SBATCH --ntasks-per-node=1
#SBATCH --output=spark-export-%j.out

set -euo pipefail

JOB_ID=${SLURM_JOB_ID:?run this script with sbatch (or set SLURM_JOB_ID and SLURM_JOB_NODELIST)}
PROJECT=${SLURM_SUBMIT_DIR:-$PWD}
cd "$PROJECT"
[ $# -ge 1 ] || { echo "usage: sbatch ... scripts/slurm-spark.sh JOB.toml [--set key=value ...]" >&2; exit 2; }

DRY_RUN=${DRY_RUN:-0}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$PROJECT/.venv/bin/python" ]; then PYTHON=$PROJECT/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
# spark-class from the same pyspark the driver imports, so all versions agree
SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') ||
    { echo "error: $PYTHON cannot import pyspark; set PYTHON to the environment with the dependencies" >&2; exit 2; }
export SPARK_HOME
export PYSPARK_PYTHON=$PYTHON            # executors' Python workers (srun passes the environment)
export SPARK_LOCAL_DIRS=${SPARK_LOCAL_DIRS:-${TMPDIR:-/tmp}/spark-$JOB_ID}
LOG_ROOT=${SPARK_LOG_ROOT:-$PROJECT/spark-export-$JOB_ID}
PROPERTIES=${SPARK_PROPERTIES:-conf/spark-standalone.conf}
EXECUTOR_MEMORY=${EXECUTOR_MEMORY:-2g}

mapfile -t HOSTS < <(scontrol show hostnames "${SLURM_JOB_NODELIST:?not set: run this script with sbatch}")
[ "${#HOSTS[@]}" -ge 1 ] || { echo "error: no hosts in SLURM_JOB_NODELIST" >&2; exit 2; }
MASTER_HOST=${HOSTS[0]}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}

# One worker per node gets the task's CPUs; its memory is what SLURM granted per node,
# less 1 GiB for the worker daemon and the OS (Spark's own default rule).
CORES=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}
if [ -n "${SLURM_MEM_PER_NODE:-}" ]; then
    NODE_MB=$SLURM_MEM_PER_NODE
elif [ -n "${SLURM_MEM_PER_CPU:-}" ]; then
    NODE_MB=$((SLURM_MEM_PER_CPU * CORES))
else
    NODE_MB=""                           # no --mem: Spark takes the node's RAM less 1 GiB
fi

to_mb() {  # "2g" / "2048m" / "2048" -> MiB
    local v=${1,,}
    case $v in
        *t) echo $(( ${v%t} * 1024 * 1024 )) ;;
        *g) echo $(( ${v%g} * 1024 )) ;;
        *m) echo "${v%m}" ;;
        *)  echo "$v" ;;
    esac
}

show() { local line; line=$(printf '%q ' "$@"); echo "${line% }"; }  # a command, quoted to be pasted

PIDS=()
start() {  # start NAME CMD...: run CMD in the background, output in $LOG_ROOT/NAME.log
    local name=$1; shift
    if [ "$DRY_RUN" = 1 ]; then echo "$name: $(show "$@")"; return; fi
    "$@" >"$LOG_ROOT/$name.log" 2>&1 &
    PIDS+=("$!")
}

# shellcheck disable=SC2329  # called by the EXIT trap
stop_all() {
    local pid alive
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    # srun passes SIGTERM on to the worker JVMs, which stop their executors on the way out
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && return 0
        sleep 1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 143' TERM   # scancel, or the time limit: exit, which runs stop_all
trap 'exit 130' INT

wait_for() {  # wait_for WHAT COMMAND...: until COMMAND succeeds, or fail after the timeout
    local what=$1; shift
    local deadline=$((SECONDS + ${SPARK_WAIT_SECONDS:-300}))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ] || ! kill -0 "${PIDS[0]}" 2>/dev/null; then
            echo "error: no $what within ${SPARK_WAIT_SECONDS:-300} s, or the master stopped; logs: $LOG_ROOT/" >&2
            tail -n 5 "$LOG_ROOT"/*.log >&2 || true
            exit 1
        fi
        sleep 2
    done
}
# shellcheck disable=SC2329  # called through wait_for
master_up() { grep -q "Starting Spark master at spark://" "$LOG_ROOT/master.log"; }
# shellcheck disable=SC2329  # called through wait_for
workers_registered() { [ "$(grep -c "Registering worker" "$LOG_ROOT/master.log")" -ge "${#HOSTS[@]}" ]; }

if [ "$DRY_RUN" = 1 ]; then
    echo "package: $(show "$PYTHON" scripts/package_project.py --out dist)"
else
    mkdir -p "$LOG_ROOT"
    "$PYTHON" scripts/package_project.py --out dist
fi

start master "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
    --host "$MASTER_HOST" --port "$MASTER_PORT" --webui-port "${SPARK_MASTER_WEBUI_PORT:-8080}"
if [ "$DRY_RUN" = 1 ]; then
    MASTER_URL=spark://$MASTER_HOST:$MASTER_PORT
else
    wait_for "master start" master_up
    MASTER_URL=$(sed -n 's/.*Starting Spark master at \(spark:\/\/[^ ]*\).*/\1/p' "$LOG_ROOT/master.log" | head -n 1)
fi
echo "spark master $MASTER_URL (web UI on $MASTER_HOST, port in $LOG_ROOT/master.log)"

WORKER_MEMORY=()
if [ -n "$NODE_MB" ]; then WORKER_MEMORY=(--memory "$((NODE_MB - 1024))m"); fi
# ${a[@]+"${a[@]}"}: an empty array under `set -u` is an error in bash before 4.4
for host in "${HOSTS[@]}"; do
    start "worker-$host" srun --nodes=1 --ntasks=1 --cpus-per-task="$CORES" --nodelist="$host" \
        "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
        --host "$host" --cores "$CORES" ${WORKER_MEMORY[@]+"${WORKER_MEMORY[@]}"} --work-dir "$LOG_ROOT/work-$host"
done
if [ "$DRY_RUN" = 1 ]; then
    echo "wait: ${#HOSTS[@]} workers registered"
else
    wait_for "registration of ${#HOSTS[@]} workers" workers_registered
fi

if [ -n "$NODE_MB" ]; then
    # Python workers live outside the executor heap: per core they have what is left of the
    # node once the heap and 2 GiB (worker daemon, OS; on the first node also the master
    # and the driver) are taken. A task needing more than that is how a node runs out.
    PER_CORE=$(( (NODE_MB - 2048 - $(to_mb "$EXECUTOR_MEMORY")) / CORES ))
    echo "memory: $NODE_MB MiB per node, executor heap $EXECUTOR_MEMORY, $CORES cores: keep" \
         "limits.task_memory at or below about ${PER_CORE}MiB"
fi

PROPERTIES_ARGS=()
if [ -f "$PROPERTIES" ]; then PROPERTIES_ARGS=(--properties-file "$PROPERTIES"); fi
SUBMIT=("$SPARK_HOME/bin/spark-submit" --master "$MASTER_URL" ${PROPERTIES_ARGS[@]+"${PROPERTIES_ARGS[@]}"}
        --executor-memory "$EXECUTOR_MEMORY" --py-files dist/pipelines.zip
        jobs/export.py "$@")
if [ "$DRY_RUN" = 1 ]; then
    echo "submit: $(show "${SUBMIT[@]}")"
    exit 0
fi
# in the background, so a SIGTERM is handled at once rather than after spark-submit ends
"${SUBMIT[@]}" &
PIDS+=("$!")           # stopped with the rest if this script is stopped first
code=0
wait "$!" || code=$?
exit "$code"
