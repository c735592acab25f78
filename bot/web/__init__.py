"""The bot's web pages, served from its own process: `server.py` (the aiohttp app and its start/stop,
/metrics and /healthz) and `metrics.py` (Prometheus collectors, one registry per App); `playground.py` is
the browser playground's bridge to the local Discord. Nothing here imports the store, the engine or discord
(a contract in pyproject.toml): the web talks to the service's facades."""
