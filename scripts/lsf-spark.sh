#!/usr/bin/env bash
# Run jobs/export.py on a Spark standalone cluster started inside one LSF job.
#
#   bsub -n 64 -R "span[ptile=16]" -R "rusage[mem=4GB]" -W 4:00 -o spark-export-%J.out \
#       scripts/lsf-spark.sh conf/my-job.toml [--set key=value ...]
#
# 64 slots, 16 per host: 4 hosts, one Spark worker each with 16 cores. Give bsub its
# options on the command line: by default LSF reads #BSUB lines only from a script on stdin
# (`bsub < script`), and then it cannot take the job file as an argument. Submit from the
# project folder, on a filesystem every host sees (LSF starts the job there).
# No Spark installation is needed: the master and the workers are started with spark-class
# from the pip-installed pyspark of $PYTHON (java must be on PATH, or JAVA_HOME set, on
# every host).
#
# What it does: packages the project (dist/pipelines.zip), starts the master on the first
# execution host (where this script runs), one worker per host with blaunch (cores = the
# slots LSF gave on that host), waits until every worker has registered, then runs
# spark-submit in client mode (the driver runs here too) and exits with its exit code
# (0 committed, 2 bad input, 1 failed run). Master, workers and their executors are
# stopped when the script ends, fails, or is killed (bkill and the run limit send SIGTERM
# before SIGKILL).
#
# Logs: this script's output in spark-export-<jobid>.out (bsub -o); master, worker and
# executor logs in spark-export-<jobid>/ (executors: work-<host>/app-*/<n>/stderr).
#
# Settings (environment variables, all optional; bsub passes your environment on):
#   PYTHON               Python with this project's dependencies, at the same path on every
#                        host (default: the project's .venv/bin/python, else python3)
#   SPARK_WORKER_MEMORY  memory each worker offers, e.g. 60g: LSF does not tell the job
#                        its rusage[mem], so give the per-host total here (default: the
#                        host's RAM less 1 GiB, right for exclusive hosts, bsub -x)
#   EXECUTOR_MEMORY      JVM heap of the one executor per host (default 2g). The JVM only
#                        moves task descriptors and receipts; the pixel work runs in one
#                        Python worker per core, outside the heap (see docs/clusters.md)
#   SPARK_LOCAL_DIRS     host-local scratch (default: $TMPDIR, else /tmp, per job)
#   SPARK_LOG_ROOT       where logs go (default: spark-export-<jobid>/ in the project)
#   SPARK_MASTER_PORT    master port (default 7077; if it is taken Spark moves to a free
#                        one, and the workers are pointed at the port actually bound)
#   SPARK_PROPERTIES     properties file (default conf/spark-standalone.conf)
#   SPARK_WAIT_SECONDS   how long to wait for the workers (default 300)
#   DRY_RUN=1            print the plan (commands) instead of running anything

set -euo pipefail

JOB_ID=${LSB_JOBID:?run this script with bsub (or set LSB_JOBID and LSB_HOSTS)}
PROJECT=${LS_SUBCWD:-$PWD}
cd "$PROJECT"
[ $# -ge 1 ] || { echo "usage: bsub ... scripts/lsf-spark.sh JOB.toml [--set key=value ...]" >&2; exit 2; }

DRY_RUN=${DRY_RUN:-0}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$PROJECT/.venv/bin/python" ]; then PYTHON=$PROJECT/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
# spark-class from the same pyspark the driver imports, so all versions agree
SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') ||
    { echo "error: $PYTHON cannot import pyspark; set PYTHON to the environment with the dependencies" >&2; exit 2; }
export SPARK_HOME
export PYSPARK_PYTHON=$PYTHON            # executors' Python workers (blaunch passes the environment)
export SPARK_LOCAL_DIRS=${SPARK_LOCAL_DIRS:-${TMPDIR:-/tmp}/spark-$JOB_ID}
LOG_ROOT=${SPARK_LOG_ROOT:-$PROJECT/spark-export-$JOB_ID}
PROPERTIES=${SPARK_PROPERTIES:-conf/spark-standalone.conf}
EXECUTOR_MEMORY=${EXECUTOR_MEMORY:-2g}

# LSF lists one host name per slot: in $LSB_DJOB_HOSTFILE (one per line; always complete),
# or in $LSB_HOSTS (space-separated; left unset for very large jobs). The hosts in order of
# first appearance, and how many slots each has: that many cores for its worker.
if [ -n "${LSB_DJOB_HOSTFILE:-}" ] && [ -r "$LSB_DJOB_HOSTFILE" ]; then
    SLOTS=$(cat "$LSB_DJOB_HOSTFILE")
else
    SLOTS=$(tr -s ' ' '\n' <<< "${LSB_HOSTS:-}")
fi
HOSTS=() CORES=()
while read -r host count; do
    HOSTS+=("$host"); CORES+=("$count")
done < <(printf '%s\n' "$SLOTS" | awk 'NF { if (!($1 in n)) order[++k] = $1; n[$1]++ }
                                          END { for (i = 1; i <= k; i++) print order[i], n[order[i]] }')
[ "${#HOSTS[@]}" -ge 1 ] || { echo "error: no hosts in LSB_DJOB_HOSTFILE or LSB_HOSTS" >&2; exit 2; }
MASTER_HOST=${HOSTS[0]}
MASTER_PORT=${SPARK_MASTER_PORT:-7077}

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
    # blaunch passes SIGTERM on to the worker JVMs, which stop their executors on the way out
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
trap 'exit 143' TERM   # bkill, or the run limit: exit, which runs stop_all
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
if [ -n "${SPARK_WORKER_MEMORY:-}" ]; then WORKER_MEMORY=(--memory "$SPARK_WORKER_MEMORY"); fi
# ${a[@]+"${a[@]}"}: an empty array under `set -u` is an error in bash before 4.4
for i in "${!HOSTS[@]}"; do
    host=${HOSTS[$i]}
    start "worker-$host" blaunch "$host" \
        "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
        --host "$host" --cores "${CORES[$i]}" ${WORKER_MEMORY[@]+"${WORKER_MEMORY[@]}"} --work-dir "$LOG_ROOT/work-$host"
done
if [ "$DRY_RUN" = 1 ]; then
    echo "wait: ${#HOSTS[@]} workers registered"
else
    wait_for "registration of ${#HOSTS[@]} workers" workers_registered
fi

if [ -n "${SPARK_WORKER_MEMORY:-}" ]; then
    # Python workers live outside the executor heap: per core they have what is left of the
    # worker's memory once the heap and 1 GiB (on the first host: the master and the
    # driver) are taken. A task needing more than that is how a host runs out.
    MOST=$(printf '%s\n' "${CORES[@]}" | sort -n | tail -n 1)   # the busiest host decides
    PER_CORE=$(( ($(to_mb "$SPARK_WORKER_MEMORY") - 1024 - $(to_mb "$EXECUTOR_MEMORY")) / MOST ))
    echo "memory: $SPARK_WORKER_MEMORY per worker, executor heap $EXECUTOR_MEMORY, up to $MOST cores:" \
         "keep limits.task_memory at or below about ${PER_CORE}MiB"
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
