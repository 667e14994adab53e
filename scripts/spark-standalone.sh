# shellcheck shell=bash
# A Spark standalone cluster inside one batch job: the part of scripts/slurm-spark.sh and
# scripts/lsf-spark.sh that is the same for every scheduler. A library, sourced by them
# (`source "$PROJECT/scripts/spark-standalone.sh"`), not run: sourcing it only defines the
# functions below and the array PIDS; nothing starts until the caller calls them.
#
# Provides, in the order a launcher calls them:
#   spark_setup          reads the shared settings (PYTHON, EXECUTOR_MEMORY, SPARK_LOCAL_DIRS,
#                        SPARK_LOG_ROOT, SPARK_PROPERTIES, DRY_RUN: see the launchers' headers)
#                        and sets PYTHON, SPARK_HOME, PYSPARK_PYTHON, SPARK_LOCAL_DIRS (those
#                        three exported), LOG_ROOT, PROPERTIES, EXECUTOR_MEMORY and DRY_RUN;
#                        exits 2 if $PYTHON cannot import pyspark
#   plan_memory WORKER_MB CORES WHAT
#                        refuses (exit 2) a worker too small for the executor heap and its
#                        cores, else prints the most limits.task_memory can be
#   start_cluster        sets the teardown trap (stop_all on exit: the driver first, then
#                        the cluster; SIGTERM exits 143, SIGINT 130), packages the project (dist/pipelines.zip), starts the master on
#                        HOSTS[0] and one worker per host through launch_worker, and waits
#                        until every worker has registered (exits 1 if not within
#                        SPARK_WAIT_SECONDS); sets MASTER_HOST, MASTER_PORT and MASTER_URL
#   submit_job ARGS...   runs spark-submit ... jobs/export.py ARGS... in client mode and exits
#                        with its exit code
# and the helpers they use, also free for the caller: to_mb, show, start, stop_all, wait_for.
# With DRY_RUN=1 nothing runs: each step prints its command, and submit_job exits 0.
#
# The caller must:
#   - run under `set -euo pipefail`, set JOB_ID (the scheduler's job id) and PROJECT (the
#     submit folder, on a filesystem every host sees), and cd to PROJECT, before spark_setup;
#   - before start_cluster, set
#       HOSTS          array: the job's hosts, one worker each; the master runs on the first,
#                      which must be the host this script runs on
#       CORES          array, parallel to HOSTS: the cores of each host's worker
#       WORKER_MEMORY  the memory each worker offers, as Spark writes it (63488m, 60g), or
#                      empty for Spark's default (the host's RAM less 1 GiB)
#     and define
#       launch_worker HOST CORES COMMAND...
#                      starts COMMAND, the worker, on HOST with CORES cores through the
#                      scheduler, as `start "worker-$HOST" <launcher> ... COMMAND...`; the
#                      launcher must pass the environment and SIGTERM on to COMMAND.

to_mb() {  # a size as Spark writes memory ("2g", "2gb", "2048m", "2048": MiB; "100b": bytes) -> MiB
    local v=${1,,}
    if ! [[ $v =~ ^[0-9]+([kmgt]b?|b)?$ ]]; then   # review I: "2gb" made the check a bash error
        echo "error: $1 is not a memory size (e.g. 2g, 2048m)" >&2
        exit 2
    fi
    case $v in
        *[kmgt]b) v=${v%b} ;;
    esac
    case $v in
        *t) echo $(( ${v%t} * 1024 * 1024 )) ;;
        *g) echo $(( ${v%g} * 1024 )) ;;
        *m) echo "${v%m}" ;;
        *k) echo $(( ${v%k} / 1024 )) ;;
        *b) echo $(( ${v%b} / 1024 / 1024 )) ;;
        *)  echo "$v" ;;
    esac
}

show() { local line; line=$(printf '%q ' "$@"); echo "${line% }"; }  # a command, quoted to be pasted

# plan_memory WORKER_MB CORES WHAT: the memory each worker offers (WHAT says where it comes
# from) against the executor heap and the cores' Python workers, before anything starts.
# Python workers live outside the heap: per core they have what is left of the worker's
# memory once the heap and 1 GiB (the worker daemon, the OS; on the first host also the
# master and the driver) are taken; a task needing more is how a node runs out. A worker
# smaller than the heap starts no executor at all, and the job would wait at 0 % until its
# time limit (trial Q): refused, as is one that leaves the cores nothing (exit 2).
plan_memory() {
    local worker=$1 cores=$2 what=$3 heap per_core
    heap=$(to_mb "$EXECUTOR_MEMORY")
    per_core=$(( (worker - 1024 - heap) / cores ))
    if [ "$worker" -lt "$heap" ] || [ "$per_core" -le 0 ]; then
        echo "error: a worker offers ${worker} MiB ($what); the executor heap EXECUTOR_MEMORY=$EXECUTOR_MEMORY" \
             "and 1 GiB for the daemons leave nothing for its $cores cores' Python workers, which do" \
             "the pixel work$( [ "$worker" -lt "$heap" ] && echo ", and Spark would start no executor: the job would wait at 0 % until its time limit"):" \
             "ask for more memory, or set EXECUTOR_MEMORY lower (1g is plenty: the heap only moves" \
             "task descriptors and receipts)" >&2
        exit 2
    fi
    echo "memory: a worker offers ${worker} MiB ($what), executor heap $EXECUTOR_MEMORY, up to $cores" \
         "cores: keep limits.task_memory at or below about ${per_core}MiB"
}

spark_setup() {
    DRY_RUN=${DRY_RUN:-0}
    if [ -z "${PYTHON:-}" ]; then
        if [ -x "$PROJECT/.venv/bin/python" ]; then PYTHON=$PROJECT/.venv/bin/python; else PYTHON=$(command -v python3); fi
    fi
    # spark-class from the same pyspark the driver imports, so all versions agree
    SPARK_HOME=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))') ||
        { echo "error: $PYTHON cannot import pyspark; set PYTHON to the environment with the dependencies" >&2; exit 2; }
    export SPARK_HOME
    export PYSPARK_PYTHON=$PYTHON        # executors' Python workers (srun, blaunch pass the environment on)
    SPARK_LOCAL_DIRS_GIVEN=${SPARK_LOCAL_DIRS:-}
    export SPARK_LOCAL_DIRS=${SPARK_LOCAL_DIRS:-${TMPDIR:-/tmp}/spark-$JOB_ID}
    LOG_ROOT=${SPARK_LOG_ROOT:-$PROJECT/spark-export-$JOB_ID}
    PROPERTIES=${SPARK_PROPERTIES:-conf/spark-standalone.conf}
    EXECUTOR_MEMORY=${EXECUTOR_MEMORY:-2g}
    local heap
    heap=$(to_mb "$EXECUTOR_MEMORY")   # exits 2 on a size it cannot read, whatever else is known
    if [ "$heap" -lt 450 ]; then   # Spark refuses executors below 450 MiB
        echo "error: EXECUTOR_MEMORY=$EXECUTOR_MEMORY: Spark needs at least 450m for an executor (1g is plenty)" >&2
        exit 2
    fi
}

PIDS=()
NAMES=()        # parallel to PIDS: each process's name, its log $LOG_ROOT/NAME.log
SUBMIT_PID=""   # spark-submit's JVM, once submit_job runs it; the driver's Python is its child
start() {  # start NAME CMD...: run CMD in the background, output in $LOG_ROOT/NAME.log;
    # CMD is a daemon (a master, a worker, its launcher), which runs until stopped: one
    # that ends makes wait_for fail at once
    local name=$1; shift
    if [ "$DRY_RUN" = 1 ]; then echo "$name: $(show "$@")"; return; fi
    "$@" >"$LOG_ROOT/$name.log" 2>&1 &
    PIDS+=("$!")
    NAMES+=("$name")
}

# shellcheck disable=SC2329  # called by the EXIT trap
stop_all() {
    local pid alive
    if [ -n "$SUBMIT_PID" ] && kill -0 "$SUBMIT_PID" 2>/dev/null; then
        # The driver first, alone: it cancels its tasks, records the run as interrupted and
        # prints its line, which spark-submit's JVM relays and then ends. Signalled together
        # with it, the JVM died first: the run was recorded failed with a made-up cause and
        # its line was lost (trial Q).
        pkill -TERM -P "$SUBMIT_PID" 2>/dev/null || true
        for _ in $(seq "${DRIVER_STOP_SECONDS:-60}"); do
            kill -0 "$SUBMIT_PID" 2>/dev/null || break
            sleep 1
        done
    fi
    [ "${#PIDS[@]}" -gt 0 ] || return 0
    alive=1
    # srun and blaunch pass SIGTERM on to the worker JVMs, which stop their executors on the way out
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 30); do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 1
    done
    if [ "$alive" = 1 ]; then
        for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    # the per-job scratch folder this script chose (not one the caller named) goes too
    if [ -z "${SPARK_LOCAL_DIRS_GIVEN:-}" ]; then rm -rf "$SPARK_LOCAL_DIRS"; fi
}

wait_for() {  # wait_for WHAT COMMAND...: until COMMAND succeeds, or fail at once when a
    # process started here has ended (a worker whose launch failed: trial AG saw the job
    # wait the whole timeout for it), or after the timeout
    local what=$1; shift
    local deadline=$((SECONDS + ${SPARK_WAIT_SECONDS:-300})) i
    until "$@"; do
        for i in "${!PIDS[@]}"; do
            if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
                echo "error: waiting for $what, ${NAMES[$i]} stopped; its log: $LOG_ROOT/${NAMES[$i]}.log" >&2
                tail -n 5 "$LOG_ROOT/${NAMES[$i]}.log" >&2 || true
                exit 1
            fi
        done
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "error: no $what within ${SPARK_WAIT_SECONDS:-300} s; logs: $LOG_ROOT/" >&2
            tail -n 5 "$LOG_ROOT"/*.log >&2 || true
            exit 1
        fi
        sleep 2
    done
}
# daemon_logging: the master and workers this script starts log at INFO into $LOG_ROOT,
# whatever the site's log4j2.properties says: the script reads the master's URL and the
# workers' registrations from those lines (trial AG: a site config at WARN, and the job
# waited SPARK_WAIT_SECONDS for a master that was up, then failed). Spark reads
# SPARK_DAEMON_JAVA_OPTS for its Master and Worker classes only.
daemon_logging() {
    cat >"$LOG_ROOT/log4j2-daemons.properties" <<'PROPERTIES'
rootLogger.level = info
rootLogger.appenderRef.stderr.ref = stderr
appender.stderr.type = Console
appender.stderr.name = stderr
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
PROPERTIES
    # quoted for Spark's launcher, which splits these options at spaces (review: a project
    # folder with a space in its path)
    export SPARK_DAEMON_JAVA_OPTS="${SPARK_DAEMON_JAVA_OPTS:-} \"-Dlog4j2.configurationFile=$LOG_ROOT/log4j2-daemons.properties\""
}

# shellcheck disable=SC2329  # called through wait_for
master_up() { grep -q "Starting Spark master at spark://" "$LOG_ROOT/master.log" 2>/dev/null; }  # the log may not be there yet
# shellcheck disable=SC2329  # called through wait_for
workers_registered() { [ "$(grep -c "Registering worker" "$LOG_ROOT/master.log")" -ge "${#HOSTS[@]}" ]; }

start_cluster() {
    local i memory=()
    trap stop_all EXIT
    trap 'exit 143' TERM   # scancel or bkill, or the time limit: exit, which runs stop_all
    trap 'exit 130' INT

    if [ "$DRY_RUN" = 1 ]; then
        echo "package: $(show "$PYTHON" scripts/package_project.py --out dist)"
    else
        mkdir -p "$LOG_ROOT"
        "$PYTHON" scripts/package_project.py --out dist
        daemon_logging
    fi

    MASTER_HOST=${HOSTS[0]}
    MASTER_PORT=${SPARK_MASTER_PORT:-7077}
    start master "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.master.Master \
        --host "$MASTER_HOST" --port "$MASTER_PORT" --webui-port "${SPARK_MASTER_WEBUI_PORT:-8080}"
    if [ "$DRY_RUN" = 1 ]; then
        MASTER_URL=spark://$MASTER_HOST:$MASTER_PORT
    else
        wait_for "master start" master_up
        MASTER_URL=$(sed -n 's/.*Starting Spark master at \(spark:\/\/[^ ]*\).*/\1/p' "$LOG_ROOT/master.log" | head -n 1)
    fi
    echo "spark master $MASTER_URL (web UI on $MASTER_HOST, port in $LOG_ROOT/master.log)"

    if [ -n "$WORKER_MEMORY" ]; then memory=(--memory "$WORKER_MEMORY"); fi
    # ${a[@]+"${a[@]}"}: an empty array under `set -u` is an error in bash before 4.4
    for i in "${!HOSTS[@]}"; do
        launch_worker "${HOSTS[$i]}" "${CORES[$i]}" \
            "$SPARK_HOME/bin/spark-class" org.apache.spark.deploy.worker.Worker "$MASTER_URL" \
            --host "${HOSTS[$i]}" --cores "${CORES[$i]}" ${memory[@]+"${memory[@]}"} \
            --work-dir "$LOG_ROOT/work-${HOSTS[$i]}"
    done
    if [ "$DRY_RUN" = 1 ]; then
        echo "wait: ${#HOSTS[@]} workers registered"
    else
        wait_for "registration of ${#HOSTS[@]} workers" workers_registered
    fi
}

submit_job() {  # submit_job ARGS...: spark-submit jobs/export.py ARGS..., then exit with its code
    local properties=() code=0
    if [ -f "$PROPERTIES" ]; then properties=(--properties-file "$PROPERTIES"); fi
    local submit=("$SPARK_HOME/bin/spark-submit" --master "$MASTER_URL" ${properties[@]+"${properties[@]}"}
                  --executor-memory "$EXECUTOR_MEMORY" --py-files dist/pipelines.zip
                  jobs/export.py "$@")
    if [ "$DRY_RUN" = 1 ]; then
        echo "submit: $(show "${submit[@]}")"
        exit 0
    fi
    # in the background, so a SIGTERM is handled at once rather than after spark-submit ends
    "${submit[@]}" &
    SUBMIT_PID=$!
    PIDS+=("$!")           # stopped with the rest if this script is stopped first
    wait "$!" || code=$?
    exit "$code"
}
