"""prometheus-client multiprocess mode for `telltale serve --workers N`.

Each worker writes its values to mmap files in `PROMETHEUS_MULTIPROC_DIR`; `/metrics` (in whichever
worker answers) merges them. It must be set before any worker imports prometheus_client, which is why
the CLI prepares it before uvicorn spawns the workers.

The directory may be the operator's (even a shared one such as /tmp), so Telltale only ever deletes
the metric files prometheus-client writes (`counter_<pid>.db`, `gauge_livesum_<pid>.db`, ...) of
processes that are not running: stale ones at start (they would add to the totals), its own at exit.
It removes the directory itself only if it created it, and only once empty. A worker that dies
(kill -9, OOM) leaves its files behind; at each scrape the answering worker marks dead siblings dead
(`reap_dead_workers`), so their live gauges, such as the requests they had in flight, leave the sums
while their counters stay in the totals.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile

import psutil

log = logging.getLogger("telltale.metrics")
ENV = "PROMETHEUS_MULTIPROC_DIR"
# the file names prometheus-client's multiprocess mode writes: <type>[_<gauge mode>]_<pid>.db
_METRIC_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_(\d+)\.db")
_LIVE_GAUGE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
_created: set[str] = set()  # directories this process created, the only ones it may remove


class MultiprocessDirError(ValueError):
    """PROMETHEUS_MULTIPROC_DIR cannot be used; the message is one line naming the setting."""


def metric_files(path: str, pattern: re.Pattern[str] = _METRIC_FILE) -> dict[str, int]:
    """prometheus-client's metric files directly in `path` (never anything else), with their pids."""
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return {}
    return {name: int(m.group(1)) for name in names if (m := pattern.fullmatch(name))}


def prepare_multiprocess_dir() -> str:
    """The workers' metric directory, without stale metric files; the operator's other files are left alone."""
    path = os.environ.get(ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="telltale-metrics-")
        _created.add(os.path.realpath(path))
        os.environ[ENV] = path
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise MultiprocessDirError(f"{ENV}: not a directory: {path}")
    if not os.path.isdir(path):
        try:
            os.makedirs(path)
        except OSError as exc:
            raise MultiprocessDirError(f"{ENV}: cannot create {path}: {exc.strerror}") from None
        _created.add(os.path.realpath(path))
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise MultiprocessDirError(f"{ENV}: not readable and writable: {path}")
    me, foreign = os.getpid(), []
    for name, pid in metric_files(path).items():
        if pid != me and _running(pid):  # another live program's (a reused pid of ours would be rare)
            foreign.append(name)
            continue
        try:  # an earlier run's values would add to this run's totals
            _remove(os.path.join(path, name))
        except OSError as exc:
            raise MultiprocessDirError(f"{ENV}: cannot remove the stale metric file {name}: {exc.strerror}") from None
    if foreign:
        log.warning(
            f"{ENV} holds metric files of running processes, merged into Telltale's totals:"
            " give Telltale a directory of its own",
            extra={"path": path, "files": sorted(foreign)[:10]},
        )
    return path


def cleanup_multiprocess_dir(path: str) -> None:
    """Once the workers have exited: their metric files go; the directory only if Telltale created it.

    Files of another process still running (another service pointed at the same directory) are kept;
    with one worker, this process wrote its files itself.
    """
    me = os.getpid()
    for name, pid in metric_files(path).items():
        if pid == me or not _running(pid):
            try:
                _remove(os.path.join(path, name))
            except OSError:
                log.warning("metric file left in place", extra={"path": os.path.join(path, name)})
    real = os.path.realpath(path)
    if real in _created:
        try:
            os.rmdir(path)  # never rmtree: whatever else someone put there stays, and so does the directory
        except OSError:
            log.warning("metrics directory left in place: not empty", extra={"path": path})
        _created.discard(real)


def reap_dead_workers(path: str, parent: int) -> list[int]:
    """Mark dead the workers (children of `parent`, uvicorn's supervisor) whose live gauges are still on disk.

    A worker killed mid-request never decrements its in-progress gauge; prometheus-client's
    `mark_process_dead` removes its live-gauge files, so the sum forgets it. Cheap enough for every
    scrape: one directory listing, and one /proc look-up per worker that ever wrote a live gauge.
    """
    from prometheus_client import multiprocess

    dead = [pid for pid in set(metric_files(path, _LIVE_GAUGE_FILE).values()) if not _running(pid, parent)]
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return dead


def _running(pid: int, parent: int | None = None) -> bool:
    """Alive and not a zombie; with `parent`, also still that parent's child (a reused pid is not our worker)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return parent is None or proc.ppid() == parent
    except psutil.Error:
        return False


def _remove(path: str) -> None:
    """Remove a metric file; something else by that name (a directory) is not ours and stays."""
    if os.path.isdir(path) and not os.path.islink(path):
        return
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
