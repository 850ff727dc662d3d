"""Terraform: the binary is present and answers `terraform version -json`.

Running terraform costs hundreds of milliseconds, so the answer is kept for minutes, not re-run per probe.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time

from telltale.checks.base import Check, Observation, Status


async def terraform_version(binary: str, timeout: float) -> dict:
    """Run `terraform version -json` (no update check) and return its JSON."""
    path = binary if os.path.sep in binary else shutil.which(binary)
    if not path or not os.access(path, os.X_OK):
        raise FileNotFoundError(f"terraform binary not found: {binary}")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    proc = await asyncio.create_subprocess_exec(
        path, "version", "-json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except BaseException:  # our timeout, or the runner's cancelling us: never leave terraform running
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    if proc.returncode != 0:
        detail = " ".join(err.decode(errors="replace").split())[:200]  # one line, however terraform boxes it
        raise RuntimeError(f"terraform version exited {proc.returncode}: {detail}")
    try:
        info = json.loads(out)
    except ValueError:
        raise ValueError("terraform version -json did not print JSON") from None
    if not isinstance(info, dict):
        raise ValueError("terraform version -json did not print a JSON object")
    return info


class TerraformCheck(Check):
    component = "terraform"

    def __init__(self, name: str, binary: str, *, cache_seconds: float = 300, **kw) -> None:
        super().__init__(name, **kw)
        self.binary, self.cache_seconds = binary, cache_seconds
        self._cached: tuple[float, Observation] | None = None

    async def probe(self) -> Observation:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        try:
            info = await terraform_version(self.binary, self.timeout)
        except (OSError, RuntimeError, ValueError) as exc:  # missing, not executable, failing, not JSON
            obs = Observation(Status.UNHEALTHY, str(exc), {"binary": self.binary})
        else:
            version = info.get("terraform_version", "unknown")
            obs = Observation(
                Status.HEALTHY,
                f"terraform {version}",
                {
                    "binary": self.binary,
                    "version": version,
                    "outdated": bool(info.get("terraform_outdated", False)),
                    "platform": info.get("platform"),
                },
            )
        self._cached = (now, obs)
        return obs
