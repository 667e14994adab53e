"""Peak memory of Spark's Python workers, sampled from /proc by a thread in the driver.

In local mode the JVM is a child of the driver, `python -m pyspark.daemon` a child of the
JVM, and every Python worker a fork of the daemon (same command line). A worker is thus a
descendant of this process whose command line names pyspark's daemon or worker and whose
parent is another such process. Workers are reused across tasks (and across exports in
one session), so on entry the kernel's high-water mark of every existing worker is reset
(`echo 5 > /proc/PID/clear_refs`, Linux ≥ 4.0) and each export gets its own peak.

Two figures per worker:
- VmHWM, the kernel's peak resident set: exact, but it also counts the pages of tile files
  a worker has touched through its memory maps (file-backed, reclaimable page cache that
  stays mapped while the map is open);
- peak RssAnon, sampled every `interval` seconds: the private memory the task allocated
  (arrays, codec buffers, the interpreter) — what `limits.task_memory` plans for.
"""

from __future__ import annotations

import os
import threading

FIELDS = ("VmHWM", "VmRSS", "RssAnon", "RssFile")


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process we can read."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry)] = (ppid, cmd)
    return found


def python_workers(root: int | None = None) -> list[int]:
    """pids of the pyspark Python workers below `root` (default: this process)."""
    root = root or os.getpid()
    procs = _processes()

    def below_root(pid: int) -> bool:
        seen = 0
        while pid > 1 and seen < 64:
            pid, seen = procs.get(pid, (0, ""))[0], seen + 1
            if pid == root:
                return True
        return False

    def is_pyspark(pid: int) -> bool:
        cmd = procs.get(pid, (0, ""))[1]
        return "pyspark.daemon" in cmd or "pyspark/worker" in cmd or "pyspark.worker" in cmd

    return [pid for pid, (ppid, _) in procs.items()
            if is_pyspark(pid) and is_pyspark(ppid) and below_root(pid)]


def status(pid: int) -> dict[str, int] | None:
    """The FIELDS of /proc/PID/status in bytes, or None when the process is gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in FIELDS:
                    values[key] = int(rest.split()[0]) * 1024
    except OSError:
        return None
    return values


def reset_peak(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5\n")
        return True
    except OSError:
        return False


class WorkerMemory:
    """Context manager: samples every Python worker while an export runs."""

    def __init__(self, interval: float = 0.05, rescan: float = 0.5):
        self.interval, self.rescan = interval, rescan
        self.peaks: dict[int, dict[str, int]] = {}
        self.reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> WorkerMemory:
        workers = python_workers()
        self.reset = all(reset_peak(pid) for pid in workers)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for pid in python_workers():  # reused workers are still alive: their final peak
            self._sample(pid)

    def _sample(self, pid: int) -> None:
        values = status(pid)
        if values:
            peak = self.peaks.setdefault(pid, {})
            for key, value in values.items():
                peak[key] = max(peak.get(key, 0), value)

    def _loop(self) -> None:
        workers, waited = python_workers(), 0.0
        while not self._stop.wait(self.interval):
            waited += self.interval
            if waited >= self.rescan:
                workers, waited = python_workers(), 0.0
            for pid in workers:
                self._sample(pid)

    def report(self) -> dict:
        """Largest per-worker peaks (bytes) and how many workers were seen."""
        def most(key: str) -> int:
            return max((p.get(key, 0) for p in self.peaks.values()), default=0)
        return {"workers": len(self.peaks), "vm_hwm": most("VmHWM"), "rss_anon_peak": most("RssAnon"),
                "rss_file_peak": most("RssFile"), "hwm_reset": self.reset}
