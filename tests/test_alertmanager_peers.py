"""Event alerts go to every peer of an Alertmanager cluster (peers do not gossip alerts), and a dead peer
never holds back the live one. Against a real Alertmanager (Debian's) and a port where nothing listens."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from telltale.config.settings import SettingsError, load_settings

from tests.apps import service
from tests.servers import AlertmanagerServer, free_port

AM_CONFIG = """
route:
  receiver: none
receivers:
  - name: none
"""


@pytest.fixture
def alertmanager() -> Iterator[AlertmanagerServer]:
    am = AlertmanagerServer(AM_CONFIG).start()
    yield am
    am.destroy()


def test_the_setting_takes_every_peer() -> None:
    s = load_settings(alertmanager_url="http://am-0:9093, http://am-1:9093\nhttp://am-2:9093")
    assert [str(u) for u in s.alertmanager_url or ()] == ["http://am-0:9093/", "http://am-1:9093/", "http://am-2:9093/"]
    assert [str(u) for u in load_settings(alertmanager_url="http://am:9093").alertmanager_url or ()] == [
        "http://am:9093/"
    ]
    with pytest.raises(SettingsError, match="empty"):
        load_settings(alertmanager_url=" , ")


def test_a_peer_password_is_a_secret() -> None:
    s = load_settings(alertmanager_url="http://am:pw-one@am-0:9093,http://am:pw-two@am-1:9093")
    assert {"pw-one", "pw-two"} <= set(s.secrets())
    assert "pw-one" not in repr(s.redacted()) and "pw-two" not in repr(s.redacted())


async def test_a_dead_peer_does_not_hold_back_the_live_one(alertmanager: AlertmanagerServer) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    event = {"events": [{"type": "deployment.failed", "organization": "acme", "provider": "aws"}]}
    async with service(alertmanager_url=f"{dead},{alertmanager.url}", ingest_token="tok") as c:
        sent = time.monotonic()
        r = await c.post("/api/v1/events", json=event, headers={"Authorization": "Bearer tok"})
        assert r.status_code == 202
        async with httpx.AsyncClient() as client:
            while not (await client.get(f"{alertmanager.url}/api/v2/alerts")).json():
                assert time.monotonic() - sent < 3, "the live peer waited on the dead one"
                await asyncio.sleep(0.05)
        metrics = (await c.get("/metrics")).text
    assert 'telltale_alerts_sent_total{alertname="DeploymentFailed"} 1.0' in metrics
    [failures] = re.findall(r"^telltale_alertmanager_post_failures_total (\S+)$", metrics, re.MULTILINE)
    assert float(failures) >= 1  # the dead peer was tried, and is being retried
