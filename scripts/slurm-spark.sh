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
# from --cpus-per-task, memory from --mem or --mem-per-cpu; a node too small for the
# executor heap and its cores is refused first, exit 2), waits until every worker has
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
#   SPARK_WAIT_SECONDS  how long to wait for the workers (default 300; a worker process
#                       that ends meanwhile, e.g. srun refusing the step, ends the wait at once)
#   DRY_RUN=1           print the plan (commands) instead of running anything
#
# Stopping: the time limit and plain scancel signal every process at once, and the job's
# last line can be lost (the run is still recorded and resumes). 2 minutes before the
# limit SLURM signals this script alone (--signal below), which stops the driver first;
# `scancel --batch --signal=TERM <jobid>` does the same by hand.
#
#SBATCH --job-name=tile-export
#SBATCH --ntasks-per-node=1
#SBATCH --output=spark-export-%j.out
#SBATCH --signal=B:TERM@120

case "${1:-}" in   # usage: the comment above, before any other check
    -h|--help) awk 'NR > 1 && /^#/ { if (!/^#SBATCH/) { sub(/^# ?/, ""); print }; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
set -euo pipefail

[ -n "${SLURM_JOB_ID:-}" ] || { echo "error: run this script with sbatch (or set SLURM_JOB_ID and SLURM_JOB_NODELIST)" >&2; exit 2; }
JOB_ID=$SLURM_JOB_ID
PROJECT=${SLURM_SUBMIT_DIR:-$PWD}
cd "$PROJECT"
[ $# -ge 1 ] || { echo "usage: sbatch ... scripts/slurm-spark.sh JOB.toml [--set key=value ...]" >&2; exit 2; }

# What does not depend on the scheduler (settings, master, workers, spark-submit, teardown)
# is in spark-standalone.sh, shared with lsf-spark.sh; here: the hosts and how to reach them.
[ -f "$PROJECT/scripts/spark-standalone.sh" ] || {   # trial AG: bash's own "No such file"
    echo "error: $PROJECT is not this project's folder (no scripts/spark-standalone.sh): submit from the project folder" >&2
    exit 2
}
source "$PROJECT/scripts/spark-standalone.sh" || exit 2
spark_setup

mapfile -t HOSTS < <(scontrol show hostnames "${SLURM_JOB_NODELIST:?not set: run this script with sbatch}")
[ "${#HOSTS[@]}" -ge 1 ] || { echo "error: no hosts in SLURM_JOB_NODELIST" >&2; exit 2; }

# One worker per node gets the task's CPUs; its memory is what SLURM granted per node,
# less 1 GiB for the worker daemon and the OS (Spark's own default rule).
NODE_CORES=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}
CORES=()
for _ in "${HOSTS[@]}"; do CORES+=("$NODE_CORES"); done
if [ -n "${SLURM_MEM_PER_NODE:-}" ]; then
    NODE_MB=$SLURM_MEM_PER_NODE
elif [ -n "${SLURM_MEM_PER_CPU:-}" ]; then
    NODE_MB=$((SLURM_MEM_PER_CPU * NODE_CORES))
else
    NODE_MB=""                           # no --mem: Spark takes the node's RAM less 1 GiB
fi
WORKER_MEMORY=""
if [ -n "$NODE_MB" ]; then WORKER_MEMORY=$((NODE_MB - 1024))m; fi

launch_worker() {  # launch_worker HOST CORES COMMAND...: COMMAND on HOST, one task with CORES CPUs
    local host=$1 cores=$2; shift 2
    start "worker-$host" srun --nodes=1 --ntasks=1 --cpus-per-task="$cores" --nodelist="$host" "$@"
}

if [ -n "$NODE_MB" ]; then plan_memory "$((NODE_MB - 1024))" "$NODE_CORES" "$NODE_MB MiB per node less 1 GiB"; fi

start_cluster
submit_job "$@"
