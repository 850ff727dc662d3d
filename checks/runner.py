"""Runs checks concurrently, bounded and cached.

Each check runs under min(its timeout, the overall deadline), so a run never outlasts the deadline.
Results are cached per check for a TTL, and callers that arrive while a check is running await that
same run (single flight): a burst of probes makes one query per dependency, not one per caller.
A check's reported status only flips after `failure_threshold` consecutive failures (or
`success_threshold` consecutive successes), so one blip does not flap readiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from telltale.checks.base import Check, Observation, ProbeError, Result, Status
from telltale.config.redact import redact

log = logging.getLogger("telltale.checks")

# Called around each probe (tracing hooks in here); returns an async context manager.
ProbeWrapper = Callable[[Check], contextlib.AbstractAsyncContextManager[None]]


def _describe(exc: BaseException) -> str:
    """`ConnectError: All connection attempts failed`; the bare type name when the text is empty."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Report:
    status: Status
    results: dict[str, Result]
    generated_at: float


def aggregate(results: Iterable[Result]) -> Status:
    """Any critical check unhealthy → unhealthy; otherwise any problem → degraded."""
    status = Status.HEALTHY
    for r in results:
        if r.status is Status.UNHEALTHY and r.critical:
            return Status.UNHEALTHY
        if r.status is not Status.HEALTHY:
            status = Status.DEGRADED
    return status


def _consume(task: asyncio.Future) -> None:
    """Retrieve an abandoned probe's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class _State:
    __slots__ = ("expires", "failures", "inflight", "reported", "result", "successes")

    def __init__(self) -> None:
        self.result: Result | None = None
        self.expires = 0.0
        self.inflight: asyncio.Task[Result] | None = None
        self.failures = 0
        self.successes = 0
        self.reported: Status | None = None


class CheckRunner:
    def __init__(
        self,
        checks: Sequence[Check],
        *,
        cache_ttl: float = 10.0,
        deadline: float = 2.0,
        secrets: Iterable[str] = (),
        wrap: ProbeWrapper | None = None,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        names = [c.name for c in checks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate check names: {names}")
        self.checks = {c.name: c for c in checks}
        self.cache_ttl = cache_ttl
        self.deadline = deadline
        self._secrets = list(secrets)
        self._state = {c.name: _State() for c in checks}
        self._wrap = wrap
        self._on_result = on_result
        self._background: asyncio.Task[None] | None = None
        self.background_interval: float | None = None

    # selection -----------------------------------------------------------------------------------
    def select(self, tag: str | None = None, exclude: Iterable[str] = ()) -> list[str]:
        skip = set(exclude)
        return [n for n, c in self.checks.items() if (tag is None or tag in c.tags) and n not in skip]

    def latest(self, name: str) -> Result | None:
        return self._state[name].result

    # running -------------------------------------------------------------------------------------
    async def run(self, names: Sequence[str] | None = None, *, fresh: bool = False) -> Report:
        """Results for `names` (all by default), from cache when fresh enough, else probed now."""
        names = list(self.checks) if names is None else list(names)
        now = time.monotonic()
        waits: dict[str, asyncio.Future[Result]] = {}
        results: dict[str, Result] = {}
        for name in names:
            state = self._state[name]
            serve_cached = not fresh and (self._background is not None or now < state.expires)
            if state.result is not None and serve_cached:
                results[name] = state.result
                continue
            if state.inflight is None:
                state.inflight = asyncio.create_task(self._run_one(self.checks[name]), name=f"check:{name}")
            waits[name] = asyncio.shield(state.inflight)
        if waits:
            done = await asyncio.gather(*waits.values())
            results.update(zip(waits.keys(), done, strict=True))
        ordered = {n: results[n] for n in names}
        return Report(aggregate(ordered.values()), ordered, time.time())

    async def _run_one(self, check: Check) -> Result:
        state = self._state[check.name]
        try:
            result = await self._probe(check)
            result = self._apply_thresholds(check, state, result)
            state.result = result
            state.expires = time.monotonic() + self.cache_ttl
            if self._on_result is not None:
                self._on_result(result)
            return result
        finally:
            state.inflight = None

    async def _probe(self, check: Check) -> Result:
        budget = min(check.timeout, self.deadline)
        started_wall = time.time()
        started = time.perf_counter()
        error: str | None = None
        task = asyncio.ensure_future(self._call(check))
        try:
            # Wait, don't await: a driver that cleans up slowly after cancellation (asyncpg sending a
            # cancel request to a frozen server) must not stretch the answer past the budget.
            done, _ = await asyncio.wait({task}, timeout=budget)
            if not done:
                task.cancel()
                task.add_done_callback(_consume)
                raise TimeoutError
            obs = task.result()
        except TimeoutError:
            obs = Observation(Status.UNHEALTHY, f"timed out after {budget:g}s")
            error = obs.message
        except asyncio.CancelledError:
            task.cancel()
            task.add_done_callback(_consume)
            raise
        except Exception as exc:  # a probe's failure is a result, never an endpoint error
            # The message says why (redacted): "database check failed" alone sends a newcomer to the logs.
            cause = exc.__cause__ if isinstance(exc, ProbeError) and exc.__cause__ is not None else exc
            error = redact(_describe(cause), self._secrets)[:500]
            reason = str(exc) if isinstance(exc, ProbeError) else f"{check.component} check failed: {error}"
            obs = Observation(Status.UNHEALTHY, redact(reason, self._secrets)[:300], {})  # redact, then cut
        latency = time.perf_counter() - started
        message = redact(obs.message, self._secrets)
        return Result(
            name=check.name,
            component=check.component,
            status=obs.status,
            message=message,
            latency_seconds=latency,
            checked_at=started_wall,
            critical=check.critical,
            tags=check.tags,
            observed=obs.observed,
            error=error,
        )

    async def _call(self, check: Check) -> Observation:
        if self._wrap is None:
            return await check.probe()
        async with self._wrap(check):
            return await check.probe()

    @staticmethod
    def _apply_thresholds(check: Check, state: _State, result: Result) -> Result:
        raw = result.status
        if raw is Status.HEALTHY:
            state.successes += 1
            state.failures = 0
        else:
            state.failures += 1
            state.successes = 0
        previous = state.reported
        if previous is None:
            reported = raw  # no history yet: take the first result as it is
        elif raw is Status.HEALTHY and previous is not Status.HEALTHY:
            reported = raw if state.successes >= check.success_threshold else previous
        elif raw is not Status.HEALTHY and previous is Status.HEALTHY:
            reported = raw if state.failures >= check.failure_threshold else previous
        else:
            reported = raw
        state.reported = reported
        if reported is raw:
            return result
        held = (
            f"{state.failures}/{check.failure_threshold} failures"
            if raw is not Status.HEALTHY
            else f"{state.successes}/{check.success_threshold} successes"
        )
        return Result(
            name=result.name,
            component=result.component,
            status=reported,
            message=f"{result.message} (held at {reported.value}: {held})".strip(),
            latency_seconds=result.latency_seconds,
            checked_at=result.checked_at,
            critical=result.critical,
            tags=result.tags,
            observed=result.observed,
            error=result.error,
            raw_status=raw,
        )

    # background publisher -------------------------------------------------------------------------
    def start_background(self, interval: float) -> None:
        """Probe every `interval` seconds; endpoints then serve the latest results without probing."""
        self.background_interval = interval

        async def loop() -> None:
            while True:
                started = time.monotonic()
                try:
                    await self.run(fresh=True)
                except Exception:  # pragma: no cover - run() turns failures into results
                    log.exception("background health run failed")
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

        self._background = asyncio.create_task(loop(), name="telltale-health-publisher")

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._background
            self._background = None
        for state in self._state.values():
            if state.inflight is not None:
                state.inflight.cancel()
        await asyncio.gather(*(c.close() for c in self.checks.values()), return_exceptions=True)
