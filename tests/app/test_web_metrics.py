"""The bot's own web server: /metrics in Prometheus' format and /healthz, scraped over a real socket from the
real bot on the local Discord; and WEB_HOST kept to loopback unless login with Discord is on."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
from aiohttp import web
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.settings import Settings, SettingsError
from bot.web.metrics import Metrics
from bot.web.server import WebServer


async def scraped_when(url: str, key: tuple[str, tuple], value: float, timeout: float = 10) -> dict:
    """The first scrape that shows `key` at `value`: a job is counted once the bot has recorded it shown,
    a moment after the local Discord has the message."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (samples := await scrape(url)).get(key) != value:
        assert asyncio.get_running_loop().time() < deadline, (key, samples.get(key))
        await asyncio.sleep(0.05)
    return samples


async def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics page."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_metrics_count_jobs_images_acks_and_failures(web_bot):
    discord, app = web_bot
    url = app.web.url
    assert url == f"http://127.0.0.1:{app.settings.web_port}"
    before = await scrape(url)
    assert before[("dreamgrid_queue_jobs", (("lane", "fast"),))] == 0
    assert before[("dreamgrid_queue_jobs", (("lane", "relax"),))] == 0
    assert before[("dreamgrid_job_failures_total", (("reason", "engine"),))] == 0  # present from the start

    alice = discord.add_user("alice")
    ix = await discord.slash(alice, "imagine", {"prompt": "a cat"})
    await ix.wait_original(lambda m: bool(m.attachments), timeout=60)
    after = await scraped_when(url, ("dreamgrid_jobs_total", (("kind", "imagine"), ("outcome", "done"))), 1)
    assert after[("dreamgrid_images_total", (("model", "tiny"),))] == 4
    assert after[("dreamgrid_job_seconds_count", (("kind", "imagine"), ("model", "tiny")))] == 1
    assert after[("dreamgrid_job_seconds_sum", (("kind", "imagine"), ("model", "tiny")))] > 0
    assert after[("dreamgrid_ack_seconds_count", ())] >= 1
    assert 0 < after[("dreamgrid_ack_seconds_sum", ())] < 3

    ix = await discord.slash(alice, "imagine", {"prompt": "a doomed cat --model broken"})
    await ix.wait_original(lambda m: "failed" in m.content, timeout=60)
    failed = await scraped_when(url, ("dreamgrid_job_failures_total", (("reason", "engine"),)), 1)
    assert failed[("dreamgrid_jobs_total", (("kind", "imagine"), ("outcome", "failed")))] == 1
    assert failed[("dreamgrid_ack_seconds_count", ())] >= 2
    # Nothing a member typed, and no id, ever becomes a label.
    labels = {value for (_, pairs) in failed for _, value in pairs}
    assert not any("cat" in value or str(alice.id) in value for value in labels)

    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as response:
        assert response.status == 200 and await response.text() == "ok"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", ""])
def test_a_web_host_that_is_not_loopback_is_refused(host):
    with pytest.raises(SettingsError) as refused:
        Settings.load(env={"WEB_HOST": host}, env_file=None)
    assert str(refused.value) == (f"WEB_HOST={host} would expose the web pages without login: set "
                                  "DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET (login with Discord), or keep 127.0.0.1")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_web_hosts_are_accepted(host):
    assert Settings.load(env={"WEB_HOST": host}, env_file=None).web_host == host


def test_web_port_0_is_off_and_a_bad_port_is_named():
    assert Settings.load(env={"WEB_PORT": "0"}, env_file=None).web_port == 0
    with pytest.raises(SettingsError, match="WEB_PORT"):
        Settings.load(env={"WEB_PORT": "70000"}, env_file=None)


async def test_a_port_in_use_stops_start_up_with_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"WEB_PORT={port}: .*choose another port, or 0"):
            await WebServer(web.Application(), "127.0.0.1", port).start()


def test_each_app_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.saved("tiny", "imagine", 0.5, 4)
    assert b'dreamgrid_images_total{model="tiny"} 4.0' in first.exposition()
    assert b"dreamgrid_images_total{" not in second.exposition()
