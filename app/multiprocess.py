"""prometheus-client multiprocess mode for `telltale serve --workers N`."""

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
