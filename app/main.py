"""create_app(settings) -> FastAPI: the service, its checks and its registry, built from settings once."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from app import __version__, health, metrics
from app.drain import install_drain
from app.state import ServiceState
from checks.registry import build_checks
from checks.runner import CheckRunner
from config.settings import Settings, load_settings

log = logging.getLogger("telltale")


def create_app(settings: Settings) -> FastAPI:
    runner = CheckRunner(
        build_checks(settings),
        cache_ttl=settings.cache_ttl_seconds,
        deadline=settings.health_deadline_seconds,
        secrets=settings.secrets(),
    )
    registry = CollectorRegistry()
    registry.register(metrics.HealthCollector(runner))
    state = ServiceState(settings=settings, runner=runner, registry=registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        restore = install_drain(state, settings.drain_seconds)
        if settings.background_interval_seconds:
            runner.start_background(settings.background_interval_seconds)
        log.info("telltale started", extra={"checks": list(runner.checks)})
        try:
            yield
        finally:
            restore()
            await runner.close()

    app = FastAPI(title="Telltale", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.telltale = state
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory for `--workers N`: each worker reads the same settings."""
    return create_app(load_settings())
