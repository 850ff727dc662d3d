"""prometheus-client multiprocess mode for `telltale serve --workers N`.

Each worker writes its values to mmap files in `PROMETHEUS_MULTIPROC_DIR`; `/metrics` (in whichever
worker answers) merges them. The directory must be empty at start (stale files from an earlier run
would add to the totals) and is removed at exit. It must be set before any worker imports
prometheus_client, which is why the CLI prepares it before uvicorn spawns the workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile


def prepare_multiprocess_dir() -> str:
    """A fresh, empty directory for the workers' metric files (stale files would add to the totals)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
    else:
        path = tempfile.mkdtemp(prefix="telltale-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def cleanup_multiprocess_dir(path: str) -> None:
    """Remove the workers' files once every worker has exited."""
    shutil.rmtree(path, ignore_errors=True)
