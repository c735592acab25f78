"""The engine as a Ray Serve application (cluster side; the bot reaches it over HTTP, bot/engine/remote.py).

Importing this package imports Ray: only `dreamgrid serve`, `serve run deploy/serve.yaml`, the Ray tests and
`bench ray` do.
"""
