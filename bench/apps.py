"""Baseline apps for the benchmarks."""

from __future__ import annotations

from fastapi import FastAPI

bare = FastAPI()


@bare.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "healthy"}


@bare.get("/items/{item_id}")
async def item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}
