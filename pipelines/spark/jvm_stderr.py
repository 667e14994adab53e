"""The JVM's stderr while Spark starts: held back, so a failed start is one line.

pyspark launches the JVM with this process's stderr. When Spark refuses to start (a YARN
master without HADOOP_CONF_DIR, a bad property), the JVM prints a Java stack trace there
and exits, and pyspark says only "Java gateway process exited". `held_jvm_stderr` points
file descriptor 2 at a pipe while the JVM is launched and restores it right after, so the
JVM (and the Python workers it starts) keep the pipe; a thread relays the pipe. Until the
start succeeds the thread holds what arrives; then it writes that out and passes the rest
through, as if nothing had been in between. After a failure, `reason` is the JVM's own
message, for the one line; the trace is dropped. When the JVM runs but Spark refuses
inside it, py4j raises the Java exception in Python instead: `java_reason` reads it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# A Java exception as Java prints it: its class without the package, then its message.
_EXCEPTION = r"(?:[\w$]+\.)*([\w$]+): ([^\n]+)"
# e.g. Exception in thread "main" org.apache.spark.SparkException: When running with ...
_JAVA_MAIN_FAILURE = re.compile(r'Exception in thread "main" ' + _EXCEPTION)
# How py4j shows a Java exception thrown into Python: "An error occurred while calling
# None.org.apache.spark.api.java.JavaSparkContext.\n: org.apache.spark.SparkException:
# Asked to run locally with 0 threads\n\tat ..."; the reason is the second line.
_PY4J_FAILURE = re.compile(r"^: " + _EXCEPTION + "$", re.MULTILINE)
# The JVM itself refusing its options: spark.driver.memory = "2x" (-Xmx2x) prints "Invalid
# maximum heap size: -Xmx2x" and "Error: Could not create the Java Virtual Machine." here.
# (What it finds wrong later in its start, e.g. "Too small maximum heap", goes to stdout.)
_JVM_OPTION_FAILURE = re.compile(r"^((?:Invalid|Unrecognized|Improperly specified) [^\n]+)$",
                                 re.MULTILINE)
_JVM_NOT_CREATED = "Could not create the Java Virtual Machine"
# A heap too small for Java's own start (spark.driver.memory = "16m") ends it before it can
# print its exception: 'Error: A JNI error has occurred, please check your installation and
# try again' and 'Exception in thread "main" ' with nothing after (trial M). Nothing is
# wrong with the installation; a heap of 32m gets as far as "OutOfMemoryError: Java heap
# space", 100m to Spark's own "must be at least 471859200".
_JAVA_MAIN_SILENT = re.compile(r'Exception in thread "main"\s*$', re.MULTILINE)
_SILENT_REASON = ("Java ended in its first steps without saying why, as it does when its "
                  "heap is too small to start (spark.driver.memory: Spark needs at least 450m)")
# No word on stderr from a JVM that ended before it was up: killed, or it said why on
# stdout, where its lines are already shown (trial S)
NO_WORD = "Spark's JVM ended before it was up, with no word on stderr (killed? or see above)"


# What every local session prints while it starts, whatever the job: the JVM naming the
# incubator module Spark adds, log4j's profile and level notices (the job sets WARN right
# after), and Hadoop's native-library notice. Held back like the rest and then dropped, so
# a job's own lines come first; anything else the start printed is written out.
START_NOISE = re.compile(
    rb"^(?:WARNING: Using incubator modules: [^\n]*"
    rb"|Using Spark's default log4j profile: [^\n]*"
    rb"|Setting default log level to [^\n]*"
    rb"|To adjust logging level use sc\.setLogLevel\(newLevel\)\.[^\n]*"
    rb"|[^\n]* WARN NativeCodeLoader: Unable to load native-hadoop library[^\n]*)\n",
    re.MULTILINE)


class HeldStderr:
    """A relay of the JVM's stderr that holds what arrives until `release`."""

    def __init__(self, read_fd: int, target_fd: int):
        self.read_fd, self.target_fd = read_fd, target_fd
        self.held = bytearray()
        self.passing = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._relay, name="jvm-stderr", daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 65536)
            except OSError:
                return
            if not data:   # every process holding the pipe has ended
                return
            with self.lock:
                if self.passing:
                    _write_all(self.target_fd, data)
                else:
                    self.held += data

    def release(self) -> None:
        """Spark started: write out what was held (but the start-up lines every session
        prints, `START_NOISE`), then pass everything through."""
        with self.lock:
            _write_all(self.target_fd, START_NOISE.sub(b"", bytes(self.held)))
            self.held.clear()
            self.passing = True

    def last_line(self) -> str:
        """The last line the JVM printed that is not start-up noise ('' if none): what
        to say when `reason` finds nothing it knows (review J: java not found, for one)."""
        with self.lock:
            text = START_NOISE.sub(b"", bytes(self.held)).decode(errors="replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def reason(self, wait: float = 2.0) -> str:
        """The JVM's own message of why it did not start ('' when it printed none),
        after waiting up to `wait` seconds for it to finish writing (its exit ends it)."""
        self.thread.join(wait)
        with self.lock:
            text = self.held.decode(errors="replace")
        return jvm_reason(text)


def java_reason(error: BaseException) -> str:
    """The Java exception's class and message when py4j raised `error`, else ''."""
    match = _PY4J_FAILURE.search(str(error))
    return f"{match.group(1)}: {match.group(2).strip()}" if match else ""


# The JVM refusing its heap before it runs anything: 'Error occurred during initialization
# of VM' and the reason, which Java 17 writes to stdout (`session._start` names a small
# spark.driver.memory then); a JVM that writes it to stderr is read here
_VM_INIT_FAILURE = re.compile(r"^Error occurred during initialization of VM\s*\n([^\n]+)$",
                              re.MULTILINE)
HEAP_HINT = " (spark.driver.memory: Spark needs at least 450m)"
# the reasons a heap too small for Spark gives, and no other (review J: a heap too large,
# or a process limit on threads, must not be told to grow)
_SMALL_HEAP = ("Too small maximum heap", "OutOfMemoryError: Java heap space")


def jvm_reason(text: str) -> str:
    """Why a JVM that printed `text` did not start, in one line ('' if it does not say)."""
    match = _JAVA_MAIN_FAILURE.search(text)
    if match:   # "4m": OutOfMemoryError: Java heap space, while Spark starts (trial S)
        reason = f"{match.group(1)}: {match.group(2).strip()}"
        return reason + (HEAP_HINT if reason in _SMALL_HEAP else "")
    if _JAVA_MAIN_SILENT.search(text):
        return _SILENT_REASON
    match = _VM_INIT_FAILURE.search(text)
    if match:
        line = match.group(1).strip()
        return f"Java could not start: {line}" + (HEAP_HINT if line in _SMALL_HEAP else "")
    if _JVM_NOT_CREATED in text:
        option = _JVM_OPTION_FAILURE.search(text)
        return (f"Java refused its options: {option.group(1).strip()}" if option
                else f"{_JVM_NOT_CREATED} (see spark.driver.*)")
    return ""


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:   # our stderr was closed: nothing to tell anyone
        pass


@contextmanager
def held_jvm_stderr() -> Iterator[HeldStderr]:
    """Launch the JVM inside this block: its stderr goes to a `HeldStderr`, while this
    process's own stderr is restored as the block ends (see the module docstring)."""
    read_fd, write_fd = os.pipe()
    target_fd = os.dup(2)
    sys.stderr.flush()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield HeldStderr(read_fd, target_fd)
    finally:
        sys.stderr.flush()
        os.dup2(target_fd, 2)   # ours again; a JVM launched meanwhile keeps the pipe
