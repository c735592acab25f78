"""The HTTP protocol between the bot and the Ray Serve application (bot/serve/app.py): plain JSON.

One call is `POST <RAY_SERVE_URL>/call` with the header `serve_multiplexed_model_id: <model>` (so Serve
routes it to a replica that holds the model) and the body `{"jobs": [request, ...], "preview_interval": s}`:
one job, or several with the same batch key, that run in one pipeline call. The answer streams NDJSON, one
event a line, `job` being the index in `jobs`:

    {"event": "started", "device": "<replica>/<device>"}
    {"event": "progress", "job": 0, "fraction": 0.25}
    {"event": "preview", "job": 0, "fraction": 0.5, "image": "<base64 PNG>"}
    {"event": "result", "job": 0, "result": {...}}        one per job, or
    {"event": "error", "job": 1, "message": "...", "cancelled": false}
    {"event": "lost", "message": "..."}                    the replica died: the bot tries once more
    {"event": "end"}                                       the call is over

A stream that ends without "end" counts as "lost". Closing the request cancels the call at its next
denoising step. Images travel as base64 PNG (lossless: the same pixels as in-process). Control:
`GET /control/status`, `POST /control/load` and `/control/unload` with `{"name": ...}`.
/describe: `POST /describe` with `{"describer": "<folder>", "image": "<base64 PNG>"}`, answered
`{"prompts": [four]}` or `{"error": "..."}` (422).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json

from PIL import Image

from bot.engine.requests import (
    Cancelled,
    EngineError,
    Event,
    GenerateRequest,
    GenerationResult,
    Preview,
    Progress,
    Request,
    Started,
    UpscaleRequest,
)

MODEL_HEADER = "serve_multiplexed_model_id"  # Ray Serve's own: routes a request to a replica holding the model


def image_to_text(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; lossless either way
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def image_from_text(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def _encode(value):
    if isinstance(value, Image.Image):
        return {"png": image_to_text(value)}
    if isinstance(value, (tuple, list)):
        return [_encode(item) for item in value]
    return value


def _decode(value):
    """Lists come back as tuples (every sequence a request or result holds is a tuple, but result.images)."""
    if isinstance(value, dict) and set(value) == {"png"}:
        return image_from_text(value["png"])
    if isinstance(value, list):
        return tuple(_decode(item) for item in value)
    return value


def encode_request(request: Request) -> dict:
    kind = "upscale" if isinstance(request, UpscaleRequest) else "generate"
    fields = {field.name: _encode(getattr(request, field.name)) for field in dataclasses.fields(request)}
    return {"kind": kind, **fields}


def decode_request(data: dict) -> Request:
    """A request from the wire; ValueError/TypeError/KeyError for a malformed one (the request's own checks
    run again here, as in the bot)."""
    data = dict(data)
    kind = data.pop("kind")
    cls = {"generate": GenerateRequest, "upscale": UpscaleRequest}[kind]
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown request fields: {sorted(unknown)}")
    return cls(**{name: _decode(value) for name, value in data.items()})


def encode_result(result: GenerationResult) -> dict:
    return {field.name: _encode(getattr(result, field.name)) for field in dataclasses.fields(result)}


def decode_result(data: dict) -> GenerationResult:
    values = {name: _decode(value) for name, value in data.items()}
    values["images"] = list(values["images"])
    return GenerationResult(**values)


def event_line(event: dict) -> bytes:
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def encode_event(job: int, event: Event) -> dict:
    if isinstance(event, Started):
        return {"event": "started", "device": event.device}
    if isinstance(event, Progress):
        return {"event": "progress", "job": job, "fraction": event.fraction}
    return {"event": "preview", "job": job, "fraction": event.fraction, "image": image_to_text(event.image)}


def decode_event(data: dict) -> Event:
    kind = data["event"]
    if kind == "started":
        return Started(data["device"])
    if kind == "progress":
        return Progress(float(data["fraction"]))
    if kind == "preview":
        return Preview(image_from_text(data["image"]), float(data["fraction"]))
    raise ValueError(f"not a job event: {kind!r}")


def outcome_event(job: int, outcome: GenerationResult | EngineError) -> dict:
    if isinstance(outcome, EngineError):
        return {"event": "error", "job": job, "message": str(outcome), "cancelled": isinstance(outcome, Cancelled)}
    return {"event": "result", "job": job, "result": encode_result(outcome)}
