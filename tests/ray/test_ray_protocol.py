"""The HTTP protocol between the bot and the Serve application (bot/engine/wire.py), against the real
application on a local Ray cluster: a call streams progress then its result, closing it stops the replica
at its next step, a batch is one pipeline call, an unknown model (or describer) is an error, and the control
endpoints."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from PIL import Image

from bot.engine import GenerateRequest
from bot.engine.wire import MODEL_HEADER, decode_result, encode_request, image_to_text

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]  # one worker, one cluster


def shapes(prompt: str, seed: int = 1, steps: int = 4) -> GenerateRequest:
    return GenerateRequest(model="shapes", prompt=prompt, seeds=tuple(range(seed, seed + 4)), steps=steps,
                           guidance=5.0, width=64, height=64)


async def call(session, url, requests, model="shapes"):
    body = {"jobs": [encode_request(r) for r in requests], "preview_interval": 0.0}
    async with session.post(f"{url}/call", json=body, headers={MODEL_HEADER: model}) as response:
        assert response.status == 200 and response.content_type == "application/x-ndjson"
        return [json.loads(line) async for line in response.content]


async def status(session, url) -> dict:
    async with session.get(f"{url}/control/status") as response:
        return await response.json()


async def test_a_call_streams_started_progress_then_each_result_and_the_same_pixels_as_in_process(
        ray_serve, models_dir):
    request = shapes("a red circle on a blue background")
    async with aiohttp.ClientSession() as session:
        events = await call(session, ray_serve, [request])
    kinds = [event["event"] for event in events]
    assert kinds == ["started", *["progress"] * 4, "result", "end"]
    assert [event["fraction"] for event in events if event["event"] == "progress"] == [0.25, 0.5, 0.75, 1.0]
    result = decode_result(events[-2]["result"])
    assert result.seeds == request.seeds and [image.size for image in result.images] == [(64, 64)] * 4
    assert result.device == events[0]["device"] and result.device.endswith("/cpu") and result.batched == 1

    import torch

    from bot.engine import load_catalog
    from bot.engine.pipelines import LoadedModel

    torch.set_num_threads(1)  # as the replica: another thread count sums in another order
    local = LoadedModel(load_catalog(models_dir / "catalog.toml").get("shapes"), models_dir, "cpu")
    expected = await asyncio.to_thread(local.run, request, lambda done, total: None)
    assert [image.tobytes() for image in result.images] == [image.tobytes() for image in expected.images]


async def test_jobs_with_one_batch_key_share_one_pipeline_call(ray_serve):
    async with aiohttp.ClientSession() as session:
        events = await call(session, ray_serve, [shapes("a square", 10), shapes("a triangle", 20)])
    results = {event["job"]: decode_result(event["result"]) for event in events if event["event"] == "result"}
    assert sorted(results) == [0, 1] and all(result.batched == 2 for result in results.values())
    assert results[1].seeds == (20, 21, 22, 23)
    assert {event["job"] for event in events if event["event"] == "progress"} == {0, 1}


async def test_closing_the_request_stops_the_job_at_its_next_step(ray_serve):
    body = {"jobs": [encode_request(shapes("a long one", steps=400))], "preview_interval": 0.0}
    async with aiohttp.ClientSession() as session:
        before = (await status(session, ray_serve))["replicas"][0]["calls"]
        response = await session.post(f"{ray_serve}/call", json=body, headers={MODEL_HEADER: "shapes"})
        assert json.loads(await response.content.readline())["event"] == "started"
        assert json.loads(await response.content.readline())["event"] == "progress"
        response.close()  # the bot's cancel: close the request
        closed = time.monotonic()
        while True:  # 400 steps would take tens of seconds; the replica is free again at once
            replica = (await status(session, ray_serve))["replicas"][0]
            if not replica["busy"] and replica["calls"] > before:  # a report from after the call (every 0.5 s)
                break
            assert time.monotonic() - closed < 10, "the replica kept running a closed call"
            await asyncio.sleep(0.1)
        assert replica["calls"] == before + 1
        events = await call(session, ray_serve, [shapes("the next one")])  # and it takes the next call
    assert events[-1]["event"] == "end" and events[-2]["event"] == "result"


async def test_an_unknown_model_is_an_error_for_its_jobs_and_the_control_endpoints(ray_serve):
    nowhere = GenerateRequest(model="nowhere", prompt="x", seeds=(1,), steps=2, guidance=5.0, width=64, height=64)
    async with aiohttp.ClientSession() as session:
        events = await call(session, ray_serve, [nowhere], model="nowhere")
        assert [event["event"] for event in events] == ["error", "end"]
        assert "nowhere" in events[0]["message"] and events[0]["cancelled"] is False

        async with session.post(f"{ray_serve}/control/load", json={"name": "nowhere"}) as response:
            assert response.status == 422 and "nowhere" in (await response.json())["error"]
        async with session.post(f"{ray_serve}/call", data=b"not json") as response:
            assert response.status == 400
        # /describe names a describer of the cluster's catalog only, never a folder of the caller's choosing.
        for body, said in (({"describer": "../shapes", "image": image_to_text(Image.new("RGB", (8, 8)))},
                            "no model of this cluster's catalog has the describer '../shapes'"),
                           ({"describer": "shapes-describer", "image": "not a png"}, "a malformed /describe")):
            async with session.post(f"{ray_serve}/describe", json=body) as response:
                assert response.status == 422 and said in (await response.json())["error"]
        state = await status(session, ray_serve)
    assert "nowhere" not in state["enabled"]
    (replica,) = state["replicas"]
    assert replica["device"].endswith("/cpu") and replica["pid"] > 0
