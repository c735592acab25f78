"""RemotePool (ENGINE=ray) against a stand-in for the Serve application (aiohttp, the same protocol): a call
whose stream breaks is sent once more and its result handed over once; broken twice, its jobs fail with an
EngineError (which the Runner refunds). Needs no Ray: tests/ray runs the real application."""

from __future__ import annotations

from aiohttp import web
from PIL import Image

from bot.engine import EngineError, GenerateRequest, GenerationResult, Progress, Started
from bot.engine.remote import LOST, RemotePool
from bot.engine.wire import decode_request, event_line, outcome_event
from bot.playground import free_port

REPLICA = {"replica": "r1", "device": "r1/cpu", "pid": 1, "node": "127.0.0.1", "busy": False, "calls": 0,
           "failed": {}, "models": [{"name": "tiny", "weight_bytes": 10, "seconds": 0.1}]}


async def stand_in(breaks: int):
    """A Serve application whose first `breaks` calls lose their replica mid-stream; how many calls came."""
    calls = []

    async def status(request):
        return web.json_response({"replicas": [REPLICA], "enabled": ["tiny"], "max_models": 3})

    async def load(request):
        return web.json_response({"loaded": [{"name": "tiny", "device": "r1/cpu", "weight_bytes": 10, "seconds": 0.1}]})

    async def call(request):
        jobs = [decode_request(job) for job in (await request.json())["jobs"]]
        calls.append(jobs)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(event_line({"event": "started", "device": "r1/cpu"}))
        await response.write(event_line({"event": "progress", "job": 0, "fraction": 0.5}))
        if len(calls) <= breaks:
            request.transport.close()  # the replica died: the stream stops without its "end"
            return response
        result = GenerationResult(images=[Image.new("RGB", (8, 8), "red")] * len(jobs[0].seeds), seeds=jobs[0].seeds,
                                  width=8, height=8, steps=2, guidance=5.0, model="tiny", device="r1/cpu", seconds=0.1)
        await response.write(event_line(outcome_event(0, result)))
        await response.write(event_line({"event": "end"}))
        return response

    app = web.Application()
    app.add_routes([web.get("/dg/control/status", status), web.post("/dg/control/load", load), web.post("/dg/call", call)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/dg", calls


def request() -> GenerateRequest:
    return GenerateRequest(model="tiny", prompt="a red square", seeds=(1, 2, 3, 4), steps=2, guidance=5.0,
                           width=64, height=64)


async def run_one(engine_catalog, breaks: int):
    server, url, calls = await stand_in(breaks)
    pool = RemotePool(engine_catalog, url)
    try:
        await pool.start(preload=["tiny"])
        assert pool.devices == ("r1/cpu",) and [s.device for s in pool.loaded()] == ["r1/cpu"]
        ticket = pool.submit(request(), owner=1)
        events = [event async for event in ticket.events()]
        try:
            outcome = await ticket.result()
        except EngineError as error:
            outcome = error
        return outcome, events, calls, pool.retries
    finally:
        await pool.close()
        await server.cleanup()


async def test_a_call_that_loses_its_replica_is_sent_again_and_its_result_handed_over_once(engine_catalog):
    outcome, events, calls, retries = await run_one(engine_catalog, breaks=1)
    assert isinstance(outcome, GenerationResult) and outcome.seeds == (1, 2, 3, 4)
    assert len(calls) == 2 and retries == 1
    assert events == [Started("r1/cpu"), Progress(0.5)] * 2  # each attempt's events; one result


async def test_a_call_that_loses_its_replica_twice_fails_with_an_engine_error(engine_catalog):
    outcome, _, calls, retries = await run_one(engine_catalog, breaks=2)
    assert isinstance(outcome, EngineError) and str(outcome) == LOST
    assert len(calls) == 2 and retries == 1  # once more, never a third time
