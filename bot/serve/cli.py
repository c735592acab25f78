"""`dreamgrid serve`: deploy the engine as a Ray Serve application and keep it running (Ctrl-C stops it).

On a laptop or one box it starts a local Ray cluster; with `--address auto` (or ray://head:10001) it deploys
on a running cluster, as `serve run deploy/serve.yaml` does. Then point the bot at it: ENGINE=ray and
RAY_SERVE_URL=the URL it prints.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from bot.serve.app import ROUTE_PREFIX, deploy


def cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default=None,
                        help="a running Ray cluster (auto, or ray://head:10001); default: start a local one")
    parser.add_argument("--models-dir", default=os.environ.get("MODELS_DIR", "models"),
                        help="the models folder with catalog.toml, the same on every node (default: MODELS_DIR)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address of Serve's proxy (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--replicas", type=int, default=None, help="a fixed number of replicas (default: autoscale)")
    parser.add_argument("--min-replicas", type=int, default=1)
    parser.add_argument("--max-replicas", type=int, default=None, help="default: one per GPU (1 on CPU)")
    parser.add_argument("--num-gpus", type=float, default=None, help="GPUs a replica takes (default: 1 if the "
                        "cluster has GPUs, else 0)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs a replica takes (CPU-only clusters)")
    parser.add_argument("--max-models", type=int, default=3, help="models a replica keeps loaded at most")
    args = parser.parse_args(argv)

    import ray

    ray.init(address=args.address, include_dashboard=False if args.address is None else None)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    num_gpus = args.num_gpus if args.num_gpus is not None else (1.0 if gpus else 0.0)
    max_replicas = args.max_replicas or max(1, gpus if num_gpus else 1)
    url = deploy(args.models_dir, host=args.host, port=args.port, replicas=args.replicas,
                 min_replicas=args.min_replicas, max_replicas=max_replicas, num_gpus=num_gpus,
                 num_cpus=0.0 if num_gpus else args.num_cpus, max_models=args.max_models, route_prefix=ROUTE_PREFIX)
    print(f"Dreamgrid's engine is served at {url}\nSet ENGINE=ray and RAY_SERVE_URL={url} for the bot. "
          "Ctrl-C stops it.", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    from ray import serve

    serve.shutdown()
    return 0
