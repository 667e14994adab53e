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
#   SPARK_WAIT_SECONDS   how long to wait for the workers (default 300; a worker process
#                        that ends meanwhile, e.g. blaunch failing, ends the wait at once)
#   DRY_RUN=1            print the plan (commands) instead of running anything

case "${1:-}" in   # usage: the comment above, before any other check
    -h|--help) awk 'NR > 1 && /^#/ { if (!/^#SBATCH/) { sub(/^# ?/, ""); print }; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
set -euo pipefail

[ -n "${LSB_JOBID:-}" ] || { echo "error: run this script with bsub (or set LSB_JOBID and LSB_HOSTS)" >&2; exit 2; }
JOB_ID=$LSB_JOBID
PROJECT=${LS_SUBCWD:-$PWD}
cd "$PROJECT"
[ $# -ge 1 ] || { echo "usage: bsub ... scripts/lsf-spark.sh JOB.toml [--set key=value ...]" >&2; exit 2; }

# What does not depend on the scheduler (settings, master, workers, spark-submit, teardown)
# is in spark-standalone.sh, shared with slurm-spark.sh; here: the hosts and how to reach them.
[ -f "$PROJECT/scripts/spark-standalone.sh" ] || {   # trial AG: bash's own "No such file"
    echo "error: $PROJECT is not this project's folder (no scripts/spark-standalone.sh): submit from the project folder" >&2
    exit 2
}
source "$PROJECT/scripts/spark-standalone.sh" || exit 2
spark_setup

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

WORKER_MEMORY=${SPARK_WORKER_MEMORY:-}   # empty: the host's RAM less 1 GiB (see above)

launch_worker() {  # launch_worker HOST CORES COMMAND...: COMMAND on HOST (its cores are its slots)
    local host=$1; shift 2
    start "worker-$host" blaunch "$host" "$@"
}

if [ -n "${SPARK_WORKER_MEMORY:-}" ]; then
    MOST=$(printf '%s\n' "${CORES[@]}" | sort -n | tail -n 1)   # the busiest host decides
    WORKER_MB=$(to_mb "$SPARK_WORKER_MEMORY")   # exits 2 on a size it cannot read
    plan_memory "$WORKER_MB" "$MOST" "SPARK_WORKER_MEMORY=$SPARK_WORKER_MEMORY"
fi

start_cluster
submit_job "$@"
