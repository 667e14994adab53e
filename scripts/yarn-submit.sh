#!/usr/bin/env bash
# Submit jobs/export.py to YARN in cluster deploy mode (the driver runs in a YARN container).
#
#   scripts/yarn-submit.sh conf/my-job.toml [--set key=value ...]
#   PACKED_ENV=1 scripts/yarn-submit.sh conf/my-job.toml [--set key=value ...]
#
# Needs HADOOP_CONF_DIR (or YARN_CONF_DIR) pointing at the cluster's client configuration.
# spark-submit is $SPARK_HOME/bin/spark-submit when SPARK_HOME is set (the cluster's own
# Spark), else the pip-installed pyspark's, which includes the YARN client.
#
# Shipping the code:
# - always: dist/pipelines.zip (built here from this checkout) with --py-files; the nodes
#   need a Python with the dependencies at one path: set PYSPARK_PYTHON to that path as the
#   nodes see it (default: python3 on the nodes' PATH).
# - PACKED_ENV=1: also dist/pipelines-env.tar.gz (a venv with the dependencies, built by
#   scripts/package_project.py --venv-pack if missing) with --archives ...#env, and
#   ./env/bin/python as the driver's and executors' Python; YARN unpacks it into every
#   container. The nodes need the base Python it was made from, at the same path (see
#   scripts/package_project.py). The zip still goes along and comes first on sys.path, so
#   the code that runs is always this checkout's.
#
# The job file: YARN copies it into the driver's container (--files), and the driver is
# given its bare name. Relative paths inside it would then be relative to that container's
# folder, so every path in it (input.tiles, input.timepoints, output.uri) must be absolute
# on a filesystem every node mounts (NFS, Lustre, GPFS), or an s3:// URI. hdfs:// is not
# supported: our storage reads and writes local paths, file:// and s3:// only
# (pipelines/storage). The same holds for paths given with --set. This script refuses a
# job file with relative paths before anything is submitted.
#
# Logs: `yarn logs -applicationId <id>` (the driver's output, with the job's summary, is
# in the ApplicationMaster container's stdout/stderr). spark-submit waits for the end and
# exits 0 if the application succeeded, non-zero if not; the driver's own exit code (2 bad
# input, 1 failed run) and its one-line message are in the driver's log.
#
# Settings (environment variables, all optional):
#   PYTHON            local Python used to package and to check the job file
#                     (default: the project's .venv/bin/python, else python3)
#   PYSPARK_PYTHON    Python on the nodes (ignored with PACKED_ENV=1)
#   SPARK_PROPERTIES  properties file (default conf/spark-yarn.conf)
#   DRY_RUN=1         print the spark-submit command instead of running it

case "${1:-}" in   # usage: the comment above, before any other check
    -h|--help) awk 'NR > 1 && /^#/ { if (!/^#SBATCH/) { sub(/^# ?/, ""); print }; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac
set -euo pipefail

PROJECT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: scripts/yarn-submit.sh JOB.toml [--set key=value ...]" >&2; exit 2; }
JOB=$1; shift
[ -f "$JOB" ] || { echo "error: $JOB: job file not found" >&2; exit 2; }
JOB=$(cd "$(dirname "$JOB")" && pwd)/$(basename "$JOB")   # named from here, used from the project
cd "$PROJECT"

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=$PROJECT/.venv/bin/python; else PYTHON=$(command -v python3); fi
fi
if [ -n "${SPARK_HOME:-}" ]; then
    SPARK_SUBMIT=$SPARK_HOME/bin/spark-submit
else
    SPARK_SUBMIT=$("$PYTHON" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/bin/spark-submit
fi
if [ "${DRY_RUN:-0}" != 1 ] && [ -z "${HADOOP_CONF_DIR:-}${YARN_CONF_DIR:-}" ]; then
    echo "error: set HADOOP_CONF_DIR (or YARN_CONF_DIR) to the cluster's Hadoop client configuration" >&2
    exit 2
fi

# Relative paths cannot work in the driver's container: refuse them here, in one line
# each, in the job file and in --set (trial Q: `--set output.uri=out/v.n5` passed).
"$PYTHON" - "$JOB" "$@" <<'EOF'
import sys, tomllib
job, args = sys.argv[1], sys.argv[2:]
doc = tomllib.load(open(job, "rb"))
KEYS = ("input.tiles", "input.timepoints", "output.uri", "fusion.flatfield")
given = {}   # key -> (value, where it was given)
for key in KEYS:
    section, name = key.split(".")
    if name in doc.get(section, {}):
        given[key] = (doc[section][name], job)
settings, rest = [], iter(args)   # in order: the last --set of a key wins (review J)
for arg in rest:
    if arg == "--set":
        settings.append(next(rest, ""))
    elif arg.startswith("--set="):   # argparse's one-argument form (review I)
        settings.append(arg.removeprefix("--set="))
for setting in settings:
    key, sep, text = setting.partition("=")
    key, text = key.strip(), text.strip()   # as the job reads it: "output.uri = x" (trial S)
    if sep and key in KEYS:
        try:   # as the job reads --set: a TOML value, else a plain string
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        given[key] = (value, "--set")
paths = []
for key, (value, where) in given.items():
    for item in value if isinstance(value, list) else [value]:   # timepoints: lists of paths
        paths += [(key, p, where) for p in (item if isinstance(item, list) else [item])]
bad = [(k, p, w) for k, p, w in paths if isinstance(p, str) and p
       and not (k == "fusion.flatfield" and p == "auto")
       and not p.startswith(("/", "file:///", "s3://"))]
for key, path, where in bad:
    print(f"error: {where}: {key} = {path!r}: on YARN paths must be absolute (on a "
          "filesystem every node mounts) or s3:// URIs", file=sys.stderr)
sys.exit(2 if bad else 0)
EOF

DRY=${DRY_RUN:-0}
package() {  # package ARGS...: build dist/ (printed only in a dry run: it writes nothing)
    if [ "$DRY" = 1 ]; then echo "package: $PYTHON scripts/package_project.py $*"; return; fi
    "$PYTHON" scripts/package_project.py "$@" >/dev/null
}
package --out dist
ARGS=(--master yarn --deploy-mode cluster --py-files dist/pipelines.zip --files "$JOB")
PROPERTIES=${SPARK_PROPERTIES:-conf/spark-yarn.conf}
if [ -f "$PROPERTIES" ]; then ARGS+=(--properties-file "$PROPERTIES"); fi
if [ "${PACKED_ENV:-0}" = 1 ]; then
    [ -f dist/pipelines-env.tar.gz ] || package --out dist --venv-pack
    # '#env': YARN unpacks the archive as ./env in every container, driver's included
    ARGS+=(--archives dist/pipelines-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python)
else
    ARGS+=(--conf "spark.pyspark.python=${PYSPARK_PYTHON:-python3}")
fi
SUBMIT=("$SPARK_SUBMIT" "${ARGS[@]}" jobs/export.py "$(basename "$JOB")" "$@")

if [ "$DRY" = 1 ]; then
    line=$(printf '%q ' "${SUBMIT[@]}")
    echo "submit: ${line% }"
    exit 0
fi
exec "${SUBMIT[@]}"
