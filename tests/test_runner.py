"""The probe engine: concurrency, timeouts, deadline, single flight, cache and flap damping."""

from __future__ import annotations

import asyncio
import time

from telltale.checks.base import Check, Observation, Status
from telltale.checks.runner import CheckRunner, aggregate


class Scripted(Check):
    """A check whose outcomes the test scripts; counts how often it really ran."""

    component = "test"

    def __init__(self, name: str, outcomes: list[Status] | None = None, delay: float = 0.0, **kw) -> None:
        super().__init__(name, **kw)
        self.outcomes = outcomes or [Status.HEALTHY]
        self.delay = delay
        self.calls = 0

    async def probe(self) -> Observation:
        self.calls += 1
        await asyncio.sleep(self.delay)
        status = self.outcomes[min(self.calls - 1, len(self.outcomes) - 1)]
        if status is Status.UNHEALTHY:
            raise ConnectionError("password=hunter2 refused")
        return Observation(status, f"call {self.calls}")


async def test_checks_run_concurrently_so_latency_tracks_the_slowest() -> None:
    checks = [Scripted(f"c{i}", delay=0.2) for i in range(5)]
    runner = CheckRunner(checks)
    started = time.perf_counter()
    report = await runner.run()
    assert time.perf_counter() - started < 0.45
    assert report.status is Status.HEALTHY


async def test_timeout_is_an_unhealthy_result_that_says_so() -> None:
    runner = CheckRunner([Scripted("slow", delay=5, timeout=0.1, critical=True)])
    started = time.perf_counter()
    report = await runner.run()
    assert time.perf_counter() - started < 0.3
    result = report.results["slow"]
    assert result.status is Status.UNHEALTHY
    assert "timed out after 0.1s" in result.message
    assert report.status is Status.UNHEALTHY


async def test_overall_deadline_caps_every_check() -> None:
    runner = CheckRunner([Scripted("a", delay=5, timeout=3), Scripted("b", delay=5, timeout=3)], deadline=0.2)
    started = time.perf_counter()
    await runner.run()
    assert time.perf_counter() - started < 0.4


async def test_concurrent_callers_share_one_run_and_the_cache() -> None:
    check = Scripted("db", delay=0.1)
    runner = CheckRunner([check], cache_ttl=10)
    reports = await asyncio.gather(*(runner.run() for _ in range(50)))
    assert check.calls == 1
    assert {r.results["db"].checked_at for r in reports} == {reports[0].results["db"].checked_at}
    await runner.run()
    assert check.calls == 1  # still fresh
    await runner.run(fresh=True)
    assert check.calls == 2


async def test_cache_expires_after_ttl() -> None:
    check = Scripted("db")
    runner = CheckRunner([check], cache_ttl=0.05)
    await runner.run()
    await asyncio.sleep(0.08)
    await runner.run()
    assert check.calls == 2


async def test_errors_are_redacted() -> None:
    runner = CheckRunner([Scripted("db", [Status.UNHEALTHY])], secrets=["hunter2"])
    result = (await runner.run()).results["db"]
    assert "hunter2" not in (result.error or "")
    assert "ConnectionError" in (result.error or "")


def test_aggregate_rules() -> None:
    def res(status: Status, critical: bool):
        from telltale.checks.base import Result

        return Result("x", "t", status, "", 0, 0, critical, frozenset())

    assert aggregate([res(Status.HEALTHY, True), res(Status.UNHEALTHY, True)]) is Status.UNHEALTHY
    assert aggregate([res(Status.HEALTHY, True), res(Status.UNHEALTHY, False)]) is Status.DEGRADED
    assert aggregate([res(Status.DEGRADED, True)]) is Status.DEGRADED
    assert aggregate([res(Status.HEALTHY, True)]) is Status.HEALTHY


async def test_failure_and_success_thresholds_damp_flapping() -> None:
    H, U = Status.HEALTHY, Status.UNHEALTHY
    check = Scripted("db", [H, U, U, H, U, U, U, H, H], failure_threshold=3, success_threshold=2)
    runner = CheckRunner([check], cache_ttl=0)
    seen = [(await runner.run(fresh=True)).results["db"] for _ in range(9)]
    assert [r.status for r in seen] == [H, H, H, H, H, H, U, U, H]
    assert seen[1].raw_status is U and "1/3 failures" in seen[1].message
    assert seen[7].raw_status is H and "1/2 successes" in seen[7].message


async def test_background_mode_serves_latest_without_probing() -> None:
    check = Scripted("db")
    runner = CheckRunner([check], cache_ttl=0)
    runner.start_background(0.05)
    await asyncio.sleep(0.02)
    calls = check.calls
    for _ in range(20):
        await runner.run()
    assert check.calls == calls  # callers never probe
    await asyncio.sleep(0.12)
    assert check.calls > calls  # the publisher keeps refreshing
    await runner.close()


async def test_result_reports_its_age() -> None:
    runner = CheckRunner([Scripted("db")], cache_ttl=10)
    await runner.run()
    await asyncio.sleep(0.05)
    result = (await runner.run()).results["db"]
    assert result.to_dict(time.time())["age_seconds"] >= 0.05
