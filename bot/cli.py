"""`dreamgrid`: one command line. Each subcommand parses its arguments and hands over to the room that
does the work; nothing heavy is imported until a subcommand needs it."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from pathlib import Path

from bot.settings import Settings, SettingsError

# bench name -> "module:function" taking the remaining arguments; imported only when run.
BENCHES = {
    "imagine": "bot.bench.imagine:cli",
    "ack": "bot.bench.ack:cli",
    "memory": "bot.bench.memory:cli",
    "pool": "bot.bench.pool:cli",
    "gpu": "bot.bench.gpu:cli",
    "previews": "bot.bench.previews:cli",
    "overhead": "bot.bench.overhead:cli",
    "soak": "bot.bench.soak:cli",
    "shapes": "bot.shapes.bench:bench_cli",
    "canvas": "bot.bench.canvas:cli",
    "lora": "bot.bench.lora:cli",
    "describe": "bot.bench.describe:cli",
    "ray": "bot.bench.ray:cli",
}

TOKEN_HELP = ("DISCORD_TOKEN is not set: copy .env.example to .env and put your bot's token there "
              "(Discord developer portal -> your application -> Bot -> Reset Token), then run again; "
              "or try the bot here with `make playground`.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dreamgrid", description="A self-hosted, Midjourney-style Discord bot.")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("run", help="run the Discord bot (the same as `python -m bot`)")

    generate = sub.add_parser("generate", help="make one grid without Discord, through the same engine")
    generate.add_argument("prompt", help='the prompt language of /imagine: "a red circle --ar 2:1 --seed 7"')
    generate.add_argument("-o", "--output", type=Path, default=Path("grid.png"))
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--model", default=None, help="a catalog model (default: the catalog's default)")

    models = sub.add_parser("models", help="list models, checkpoints and LoRAs, or build the shipped ones")
    models.add_argument("action", nargs="?", default="list", choices=sorted(MODEL_ACTIONS))

    bench = sub.add_parser("bench", help="benchmarks; each prints one JSON object last")
    bench.add_argument("name", choices=sorted(BENCHES))

    sub.add_parser("playground", help="try the bot in a browser page (or --terminal) against a local Discord")

    sub.add_parser("serve", help="deploy the engine on Ray Serve (ENGINE=ray; needs the `ray` extra; --help)",
                   add_help=False)

    # models/bench/playground hand their own options (--json, --out...) to the room that reads them.
    args, rest = parser.parse_known_args(argv)
    if rest and args.command in ("run", "generate"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest
    try:
        if args.command == "run":
            return _run()
        if args.command == "generate":
            return _generate(args)
        if args.command == "models":
            return _models(args)
        if args.command == "serve":
            from bot.serve.cli import cli as serve_cli  # imports Ray: only here

            return serve_cli(args.rest)
        if args.command == "playground":
            from bot.playground import cli

            return cli(args.rest)
        return _bench(args)
    except SettingsError as error:
        print(f"dreamgrid: {error}", file=sys.stderr)
        return 2


def _run() -> int:
    from bot.logs import setup_logging

    settings = Settings.load()
    if not settings.discord_token:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):  # a script, CI: say how to set it, and stop
            print(TOKEN_HELP, file=sys.stderr)
            return 2
        # A person at a terminal (`make run` on a fresh clone): the bot in the browser playground instead.
        print("DISCORD_TOKEN is not set (put your bot's token in .env to run it on Discord): starting the "
              "playground instead, the real bot against a local Discord, in your browser.", file=sys.stderr)
        from bot.playground import web

        return web(settings, open_browser=True)
    setup_logging(settings.log_level, secrets=settings.secrets)
    asyncio.run(_serve(settings))
    return 0


async def _serve(settings: Settings) -> None:
    from bot.app import App

    app = await App.open(settings)
    bot = app.discord_bot()
    try:
        await bot.start(settings.discord_token)
    finally:
        await bot.close()
        await app.close()


def _generate(args: argparse.Namespace) -> int:
    import dataclasses

    from bot.engine import WorkerPool, load_catalog, make_grid, png_bytes
    from bot.recipe import GRID_SIZE, MAX_SEED
    from bot.service.compose import Defaults, plan_job
    from bot.service.prompt import PromptError
    from bot.service.provenance import CHUNK, recipe_text
    from bot.service.running import generate_request

    settings = Settings.load()
    catalog = load_catalog(settings.catalog_path)
    try:  # the prompt's own parameters win over --model and --seed
        plan = plan_job(args.prompt, catalog, settings.default_model or catalog.default, Defaults(model=args.model))
    except PromptError as error:
        print(f"dreamgrid generate: {error}", file=sys.stderr)
        return 2
    if not plan.recipe.prompt:
        print("dreamgrid generate: the prompt is empty: describe the picture before the -- parameters.", file=sys.stderr)
        return 2
    recipe = plan.recipe
    if not plan.seed_typed and args.seed is not None:
        recipe = dataclasses.replace(recipe, seed=args.seed)

    async def grids() -> None:
        pool = WorkerPool(catalog, settings.models_dir, devices=settings.devices, torch_threads=settings.torch_threads)
        await pool.start()
        try:
            for n in range(plan.repeat):  # --repeat N: grid.png, grid-2.png, ... each with the next 4 seeds
                grid = dataclasses.replace(recipe, seed=(recipe.seed + GRID_SIZE * n) % (MAX_SEED + 1))
                result = await pool.submit(generate_request(grid)).result()
                output = args.output if n == 0 else args.output.with_name(f"{args.output.stem}-{n + 1}{args.output.suffix}")
                text = recipe_text(grid, sampler=result.sampler, seed=grid.seed, width=result.width,
                                   height=result.height, loras=result.loras)
                output.parent.mkdir(parents=True, exist_ok=True)
                output.write_bytes(png_bytes(make_grid(result.images), {CHUNK: text}))
                print(f"{output}: model {grid.model}, seed {grid.seed}, {result.width}x{result.height} each, "
                      f"{result.seconds:.2f} s")
        finally:
            await pool.close()

    asyncio.run(grids())
    return 0


# `dreamgrid models <action>` -> the function that takes its own options (None: the list below)
MODEL_ACTIONS = {
    "list": None,
    "create-tiny": "bot.engine.tiny:cli",
    "create-tiny-lora": "bot.engine.loras:cli",
    "export-checkpoint": "bot.engine.checkpoints:export_cli",
    "train-shapes": "bot.shapes.train:cli",
    "train-shapes-lora": "bot.shapes.lora:cli",
    "train-describer": "bot.shapes.describer:cli",
}


def _models(args: argparse.Namespace) -> int:
    if MODEL_ACTIONS[args.action]:
        module, function = MODEL_ACTIONS[args.action].split(":")
        return getattr(importlib.import_module(module), function)(args.rest)
    from bot.engine import load_catalog
    from bot.engine.checkpoints import list_checkpoints
    from bot.engine.loras import LORAS_DIR, list_loras

    settings = Settings.load()
    catalog = load_catalog(settings.catalog_path)
    for spec in catalog.models.values():
        default = " (default)" if spec.name == catalog.default else ""
        where = spec.resolve(settings.models_dir)
        loras = "".join(f", <lora:{name}:{weight:g}>" for name, weight in spec.loras)
        print(f"{spec.name}{default}: {spec.pipeline}, {spec.width}x{spec.height}, {spec.steps} steps, guidance "
              f"{spec.guidance}{loras} — {where}\n    {spec.description}")
    sources = {spec.source for spec in catalog.models.values()}
    for checkpoint in list_checkpoints(settings.models_dir):
        state = "in the catalog" if checkpoint.path in sources else "not in the catalog"
        print(f"checkpoint {checkpoint.path}: {checkpoint.family or checkpoint.problem} ({state})")
    for lora in list_loras(settings.models_dir / LORAS_DIR):
        print(f"LoRA {lora.name}: {lora.family or 'family not stated in the file'}, {lora.size / 1e6:.1f} MB")
    return 0


def _bench(args: argparse.Namespace) -> int:
    module, function = BENCHES[args.name].split(":")
    return getattr(importlib.import_module(module), function)(args.rest)


if __name__ == "__main__":
    sys.exit(main())
