"""Starting Spark: the session with the job's [spark] settings, written once.

Under spark-submit every property it was given (its command line, `--properties-file`,
spark-defaults.conf) wins over the job file's [spark] table, which fills in the rest; the
job file's `spark.master` is used only when running as plain Python.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import socket
import sys
import warnings

from pyspark.sql import SparkSession

from pipelines.config import JobConfig, parse_size
from pipelines.config.master import MasterFormError, is_local_master, parse_master
from pipelines.config.values import is_secret_property
from pipelines.errors import ConfigError, SparkStartError, install_signal_handlers
from pipelines.spark.jvm_stderr import NO_WORD, held_jvm_stderr, java_reason

# The driver JVM of a session started here (plain `python`, not spark-submit) compiles with
# C1 only. The pixel work is Python's; the JVM schedules tasks and passes small results, and
# C2's optimising compilations of Spark's own code (ASM's 106 kB ClassReader.readCode for the
# closure cleaner, 0.8 s each, among them) took 1.0-1.6 s of CPU per export for the first
# few exports of a session, on the cores the workers need; C1 also starts Spark ≈ 1 s
# sooner (benchmarks/PROFILE.md, "The driver JVM"). Setting the property yourself replaces
# it; under spark-submit the JVM is already running and its command line decides.
DRIVER_JAVA_OPTIONS = ("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1")

# Spark 4.1 and later can talk to its Python workers (and to the driver's accumulator
# server) over Unix domain sockets instead of loopback TCP. Over TCP every Spark task took
# ≈ 28 ms longer to hand over (200 trivial tasks on local[2]: 53 against 24-26 ms per task
# and slot), which a 4 GiB export of 16 tasks felt as 4-7 % of its time
# (benchmarks/PROFILE.md, "Handing tasks to Python"). Over Unix sockets pyspark's daemon
# prints a BrokenPipeError traceback for every worker its executor lets go first (idle
# for a minute, or after a failed task), so the workers come from our own daemon module,
# which lets them exit quietly (`pipelines.spark.daemon`). That module must be importable
# before any task ships code, so both are set only for local masters whose workers run
# this interpreter; a job that sets either property keeps its own values.
PYTHON_SOCKETS = (("spark.python.unix.domain.socket.enabled", "true"),
                  ("spark.python.daemon.module", "pipelines.spark.daemon"))
PYTHON_SOCKETS_SINCE = (4, 1)

# pyspark 4 imports its own test helpers when a session starts, and they warn on stderr
# that pandas 3 is not yet supported (two lines before every run: trial X). This tool uses
# no pandas (the test extras bring it in), so that one warning is not shown.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas",
                        category=FutureWarning)


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def submitted_properties() -> dict[str, str]:
    """The Spark properties spark-submit hands the driver (as the JVM's system properties)."""
    from pyspark import SparkConf, SparkContext
    # a SparkConf made before the gateway is up holds nothing: connect to the JVM first
    # (what SparkContext() itself does before it reads its configuration)
    SparkContext._ensure_initialized()
    return dict(SparkConf().getAll())


def session(config: JobConfig) -> SparkSession:
    """A Spark session with the job's [spark] settings; SparkStartError (one line) when
    Spark cannot start."""
    if not under_spark_submit():
        check_java()
        check_master(config.spark_master)
        python = dict(config.spark_conf).get("spark.pyspark.python")
        if python:   # pyspark reads only PYSPARK_PYTHON; spark-submit sets it from this
            os.environ["PYSPARK_PYTHON"] = python
        if is_local_master(config.spark_master):
            # Workers on this machine must run this interpreter (the one with our
            # packages), and local mode needs no network beyond loopback.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(f"tile-pipelines: {config.output.uri or config.tiles}")
    submitted = submitted_properties() if under_spark_submit() else {}
    if submitted.get("spark.master"):   # spark-submit's --master, as ours is checked above
        # (trial AG: a master no host answers for ended, a minute of stack traces later, in
        # "Cannot call methods on a stopped SparkContext")
        check_master(submitted["spark.master"])
    for key, value in config.spark_conf:
        if key not in submitted:
            builder = builder.config(key, value)
        elif key != "spark.master" and submitted[key] != value:   # values are strings here
            # the job's value may come from its file or from --set (trial X: "the job
            # file's" for a --set value)
            print(f"note: {key} = {submitted[key]} from spark-submit, not the job's "
                  f"{value}", file=sys.stderr)
    builder = builder.config("spark.ui.showConsoleProgress", "false")  # we print our own
    if not under_spark_submit() and DRIVER_JAVA_OPTIONS[0] not in dict(config.spark_conf):
        builder = builder.config(*DRIVER_JAVA_OPTIONS)
    if python_sockets_default(config):
        for key, value in PYTHON_SOCKETS:
            builder = builder.config(key, value)
    spark = _start(builder, config.spark_master, dict(config.spark_conf).get("spark.driver.memory"))
    spark.sparkContext.setLogLevel("WARN")
    cap = spark.sparkContext.getConf().get("spark.executor.pyspark.memory")
    for line in misspelled_properties(spark, config) + address_space_cap(cap) + secrets_out(submitted):
        print(f"warning: {line}", file=sys.stderr)
    install_signal_handlers()   # in place of pyspark's SIGINT handler (see errors)
    _quiet_accumulator_eof()
    if is_local_master(spark.sparkContext.master or ""):
        _quiet_task_failures(spark)
    return spark


def secrets_out(submitted: dict[str, str]) -> list[str]:
    """The warning for secrets among the properties spark-submit was given (`--conf`, a
    properties file, spark-defaults.conf), named, never their values (trial AA: the job
    ran without a word). A job file's are refused (`config.values.secret_property`);
    these are out (on spark-submit's command line, in the UI and event log) before the
    job starts, and may be a cluster's own (`spark.authenticate.secret`): refusing would
    hide nothing and stop jobs their users cannot mend."""
    named = sorted(name for name in submitted if is_secret_property(name))
    if not named:
        return []
    return [f"{', '.join(named)} from spark-submit: a secret as a Spark property is shown in "
            f"the Spark UI and event logs (and, given as --conf, on spark-submit's command "
            f"line, which ps shows to every user of the machine); give it in a file or the "
            f"environment instead: S3 credentials in a credentials file on every node "
            f"(AWS_SHARED_CREDENTIALS_FILE with AWS_PROFILE or s3.profile) or the workers' "
            f"environment, Spark's own secret as spark.authenticate.secret.file"]


def address_space_cap(cap: str | None) -> list[str]:
    """The warning for spark.executor.pyspark.memory = `cap`, however it was set (trial M:
    accepted without a word, then a block failed with MemoryError): it caps each Python
    worker's address space, in which memory-mapped tiles count whole (docs/clusters.md)."""
    if not cap:
        return []
    return [f"spark.executor.pyspark.memory = {cap} caps each Python worker's address space "
            f"(RLIMIT_AS), where memory-mapped tiles count whole: blocks may fail with "
            f"MemoryError though little is read; leave it unset and bound tasks with "
            f"limits.task_memory (docs/clusters.md)"]


def misspelled_properties(spark: SparkSession, config: JobConfig) -> list[str]:
    """A line for each [spark] property of the job that Spark does not know and that is a
    near miss of one it does (`executor.memroy`): Spark takes any name without a word, so
    such a typo left the setting at its default. Names close to none (a plugin's, Hadoop's
    `spark.hadoop.*`, a cluster manager's not loaded here) are passed on in silence."""
    try:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        entries = jvm.org.apache.spark.internal.config.ConfigEntry
        # one lookup per property first: listing the registry costs a py4j round trip for
        # each of its ~1 350 names (0.13 s), paid only when some name is unknown
        unknown = [name for name, _ in config.spark_conf
                   if name != "spark.master" and entries.findEntry(name) is None]
        if not unknown:
            return []
        known = _known_properties(jvm)
    except Exception:   # another Spark's internals: no check rather than no job
        return []
    lines = []
    for name in unknown:
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if near:
            lines.append(f"{name} is not a Spark property (Spark ignores it); did you mean "
                         f"{near[0]}?")
    return lines


def _known_properties(jvm) -> list[str]:
    """Every property Spark has registered in this JVM (ConfigEntry's registry)."""
    holder = jvm.java.lang.Class.forName("org.apache.spark.internal.config.ConfigEntry$")
    field = holder.getDeclaredField("knownConfigs")
    field.setAccessible(True)
    return list(field.get(holder.getField("MODULE$").get(None)).keySet().toArray())


def python_sockets_supported() -> bool:
    """A pyspark that knows PYTHON_SOCKETS' property, on a platform with Unix sockets."""
    import pyspark

    release = tuple(int(part) for part in re.findall(r"\d+", pyspark.__version__)[:2])
    return release >= PYTHON_SOCKETS_SINCE and hasattr(socket, "AF_UNIX")


def python_sockets_default(config: JobConfig) -> bool:
    """Whether this session gets PYTHON_SOCKETS: supported, a local master started here
    (not by spark-submit) with workers on this interpreter, and neither property set."""
    own = dict(config.spark_conf)
    return (python_sockets_supported() and not under_spark_submit()
            and is_local_master(config.spark_master)
            and os.environ.get("PYSPARK_PYTHON", sys.executable) == sys.executable
            and not any(key in own for key, _ in PYTHON_SOCKETS))


def _start(builder: SparkSession.Builder, master: str, driver_memory: str | None = None
           ) -> SparkSession:
    """builder.getOrCreate(), the JVM's stderr held while it starts (`jvm_stderr`); a
    failure is one SparkStartError with the JVM's own reason, without its stack trace
    (`driver_memory`: the job's spark.driver.memory, named when the JVM says nothing)."""
    if under_spark_submit():   # the JVM is our parent, started already
        try:
            return builder.getOrCreate()
        except Exception as e:
            raise SparkStartError(f"cannot start Spark: {java_reason(e) or first_line(e)}") from None
    held = None
    try:
        with held_jvm_stderr() as held:
            spark = builder.getOrCreate()
    except Exception as e:
        reason = (held.reason() if held else "") or java_reason(e) or first_line(e)
        if "JAVA_GATEWAY_EXITED" in reason:   # pyspark's words: the JVM ended before it was up
            said = held.last_line() if held else ""
            if said:   # in words jvm_reason does not know (java not found, …): its own
                reason = said
            elif driver_memory and _below_450m(driver_memory):
                # Java refuses such a heap on stdout ('Too small maximum heap': trial S)
                reason = (f"Java could not start with spark.driver.memory = {driver_memory} "
                          f"(Spark needs at least 450m)")
            else:
                reason = NO_WORD
        raise SparkStartError(f"cannot start Spark (spark.master = {master!r}): {reason}") from None
    held.release()
    return spark


def _below_450m(memory: str) -> bool:
    """Whether a Spark memory setting ("1m", "512k", "300", in MiB without a unit) is below
    the 450 MiB Spark's driver needs; False for what it cannot read (Java says then)."""
    try:   # the job file's size reader; a bare number is MiB to Spark, bytes to it
        return parse_size(memory + ("m" if memory.strip().isdigit() else ""), "") < 450 * 2**20
    except ConfigError:
        return False


def launches_before() -> tuple[frozenset[int], bool]:
    """What `end_launched_jvm` must spare: this process's children now, and whether
    pyspark's gateway JVM exists already (it outlives a stopped session, and a later one
    in this process reuses it: review H)."""
    from pyspark import SparkContext
    return frozenset(_process_children().get(os.getpid(), [])), SparkContext._gateway is not None


def end_launched_jvm(before: tuple[frozenset[int], bool]) -> None:
    """Kill the JVM pyspark launched from this process since `before` (`launches_before`),
    and what it started, when a signal cut Spark's start short (trial M: Ctrl-C in the
    first seconds left the JVM running under init until killed by hand — it ignores
    SIGINT, and its py4j server waits for a Python that is gone). The launch is a new
    child of this process whose command line names Spark (spark-submit's script, then the
    java it runs); pyspark's gateway names it too once the launch returned. Linux
    (/proc); elsewhere only the gateway."""
    import signal

    from pyspark import SparkContext
    children_before, gateway_before = before
    proc = None if gateway_before else getattr(SparkContext._gateway, "proc", None)
    launched = {proc.pid} if proc is not None else set()
    children = _process_children()
    launched |= {pid for pid in children.get(os.getpid(), [])
                 if pid not in children_before and b"spark" in _command_line(pid)}
    doomed, todo = set(), list(launched)
    while todo:   # the launch and everything under it
        pid = todo.pop()
        if pid not in doomed:
            doomed.add(pid)
            todo.extend(children.get(pid, []))
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:   # ended already
            pass


def _process_children() -> dict[int, list[int]]:
    """Parent pid → its children's pids, from /proc ({} where there is none)."""
    tree: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return tree
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (command) state ppid …": the command may hold spaces and parentheses
            tree.setdefault(int(stat.rsplit(b")", 1)[1].split()[1]), []).append(int(entry))
    return tree


def _command_line(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _quiet_accumulator_eof() -> None:
    """pyspark's accumulator server prints a traceback when the JVM's connection ends
    without a goodbye: a signal to the whole job (Ctrl-C in a terminal, a scheduler's
    SIGTERM) stops the JVM too. The job says what happened in one line; only that case is
    silenced, any other error of the server is still printed."""
    from pyspark import accumulators

    for name in ("AccumulatorTCPServer", "AccumulatorUnixServer"):   # TCP or PYTHON_SOCKETS
        server = getattr(accumulators, name, None)
        if server is None or getattr(server, "_quiet_eof", False):
            continue
        server.handle_error = _quiet_eof_handler(server.handle_error)
        server._quiet_eof = True


def _quiet_eof_handler(original):
    """A server's handle_error that says nothing about a connection ended without goodbye."""
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (EOFError, ConnectionError)):
            return
        original(self, request, client_address)
    return handle_error


def _quiet_task_failures(spark: SparkSession) -> None:
    """In local modes executors log into our console: a failing task's Java and Python
    traces would bury the one-line message (the trace is saved in the error log instead)."""
    try:
        jvm = spark.sparkContext._jvm
        assert jvm is not None  # a started session has its gateway
        configurator = jvm.org.apache.logging.log4j.core.config.Configurator
        for logger in ("org.apache.spark.executor.Executor",
                       "org.apache.spark.scheduler.TaskSetManager"):
            configurator.setLevel(logger, jvm.org.apache.logging.log4j.Level.OFF)
    except Exception:  # a different logging backend: keep Spark's own output
        pass


def check_java() -> None:
    """SparkStartError unless a `java` can be found (JAVA_HOME or PATH)."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else "java"
    if not shutil.which(java):
        raise SparkStartError("Java 17 or newer is needed for Spark, and no 'java' was found "
                              "(install a JDK 17 or set JAVA_HOME)")


MASTER_CONNECT_SECONDS = 5


def check_master(master: str) -> None:
    """SparkStartError, in one line, for a spark.master that cannot work: not of a form
    Spark knows, or a standalone master that no host answers for. Checked before the JVM
    starts, which would print a Java stack trace (a bad form) or retry for a minute (an
    unreachable master) before failing."""
    try:
        addresses = parse_master(master).addresses
    except MasterFormError as e:
        raise SparkStartError(f"spark.master = {master!r}: {e}") from None
    if not addresses:   # not a standalone master
        return
    problems = []
    for host, port in addresses:
        try:
            socket.create_connection((host, port), MASTER_CONNECT_SECONDS).close()
            return
        except OSError as e:
            problems.append(f"{host}:{port} ({_socket_problem(e)})")
    raise SparkStartError(f"spark.master = {master!r}: cannot reach the Spark master "
                          f"{'; '.join(problems)}")


def _socket_problem(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return "no such host"
    if isinstance(error, TimeoutError):
        return f"no answer within {MASTER_CONNECT_SECONDS} s"
    return error.strerror or type(error).__name__


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else repr(error)
