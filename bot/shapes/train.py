"""Training the `shapes` model: `dreamgrid models train-shapes` (or `python -m bot.shapes.train`).

Two phases, one checkpoint (`.shapes-train/checkpoint.pt`, rewritten atomically every few minutes):

1. VAE: the default "pixel" VAE has hand-set weights (bot/shapes/model.py) and needs no training; the
   latents of the training set are its 2x2 box filter, computed at start. (With `vae_kind="learned"` the
   AutoencoderKL first learns to reconstruct world pictures: L1 + MSE + a small KL term; its latents
   are cached in `latents.pt`.) The latent scaling factor is set from the data.
2. UNet + text encoder: v-prediction on the zero-terminal-SNR schedule, min-SNR-style weighting (low-noise
   steps down-weighted, the pure-noise step kept at full weight: it is where the background colour is
   decided), captions re-phrased every time a picture is drawn, 10% empty captions for classifier-free
   guidance, an EMA of the weights (what is exported), a cosine learning rate. The text encoder also
   learns to say what a caption names (linear attribute heads on its pooled output, dropped at export),
   so that words the UNet has not learned to use yet, such as places, do not collapse together.
   At `grow_at` (11,000 of 14,000 steps) the UNet grows from one ResNet per level to three at 32x32,
   the new ones starting as identities, and a second cosine begins (`grow_lr`).

Every `--eval-every` steps the EMA model draws held-out prompts and the analyser scores them (logged).
`export()` writes the EMA weights as fp16 safetensors in diffusers layout; it can run at any time from
the latest checkpoint (`--export-only`), also while a training run goes on.

Everything is deterministic from `--seed` for a given number of threads.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

# On a busy machine spinning OpenMP threads burn the CPU they wait for; must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bot.engine.folders import replaced_on_success
from bot.shapes import model as shapes_model
from bot.shapes.model import ShapesConfig
from bot.shapes.world import (
    COLOUR_NAMES,
    POSITION_NAMED_PROBABILITY,
    POSITION_NAMES,
    SHAPES,
    make_caption,
    render_dataset,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORK_DIR = REPO_ROOT / ".shapes-train"
OUT_DIR = REPO_ROOT / "models" / "shapes"
CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2  # 2: the text encoder's attribute heads
LATENTS = "latents.pt"


@dataclass
class TrainOptions:
    steps: int = 14000  # UNet steps in all
    vae_steps: int = 1500  # only for vae_kind="learned"
    batch: int = 16
    vae_batch: int = 16
    lr: float = 6e-4
    vae_lr: float = 1e-3
    warmup: int = 200
    min_lr_fraction: float = 0.1
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    min_snr_gamma: float = 5.0
    caption_dropout: float = 0.1
    # Weight of the text encoder's attribute loss: linear heads read colour, shape, background and place
    # (or "not named") from its pooled output. A text encoder trained from scratch by the UNet's loss
    # alone gave "left" and "right" nearly the same output (they differed by 0.11 in vectors of norm 10
    # after 14,000 steps), so the UNet never learned places; CLIP's pre-training does this job for SD.
    text_loss_weight: float = 0.1
    # The UNet trains as `grow_from` (the same model with a smaller UNet) until `grow_at`, then grows to
    # `config` (model.grow_unet: new parts start as identities, so nothing learned is lost) and goes on to
    # `steps` on a second cosine that starts at `grow_lr`. None: train `config`'s UNet from the start.
    grow_at: int = 11000
    grow_lr: float = 3e-4
    grow_from: ShapesConfig | None = field(default_factory=lambda: ShapesConfig(unet_layers_per_block=1))
    kl_weight: float = 1e-4
    dataset_size: int = 40000
    seed: int = 0
    threads: int = 2
    eval_every: int = 1000
    eval_prompts: int = 64
    eval_steps: int = shapes_model.DEFAULT_STEPS
    eval_guidance: float = shapes_model.DEFAULT_GUIDANCE
    checkpoint_seconds: float = 300.0
    progress_seconds: float = 20.0
    config: ShapesConfig = field(default_factory=ShapesConfig)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["config"] = self.config.to_dict()
        d["grow_from"] = self.grow_from.to_dict() if self.grow_from else None
        return d


class Progress:
    """A plain-text progress line, printed at most every `every` seconds."""

    def __init__(self, label: str, total: int, start: int, every: float, log):
        self.label, self.total, self.start, self.every, self.log = label, total, start, every, log
        self.t0 = time.time()
        self.last = 0.0

    def update(self, step: int, force: bool = False, **values) -> None:
        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        done = step - self.start
        rate = (now - self.t0) / done if done > 0 else float("nan")
        left = (self.total - step) * rate if done > 0 else float("nan")
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        extra = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items())
        eta = "?" if math.isnan(left) else _duration(left)
        self.log(f"[{self.label}] [{bar}] {step}/{self.total} {rate:.2f} s/step eta {eta} {extra}".rstrip())


@contextmanager
def _stop_on_signal(log):
    """Yields a list that becomes non-empty on SIGTERM or Ctrl-C: the loop then saves a checkpoint and
    returns, so stopping a run (to change its threads, or at the end of a session) loses no steps."""
    stop: list = []

    def request(signum, frame) -> None:
        if not stop:
            log(f"[stop] signal {signum}: saving a checkpoint after this step")
        stop.append(signum)

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, flush=True)


class ThreadTuner:
    """Picks 1 or `max_threads` torch threads by measured step time (a busy machine can make 2 threads
    slower than 1): after 5 steps, and then every 100, it tries the other setting for 5 steps and keeps
    the faster."""

    def __init__(self, max_threads: int):
        self.choices = sorted({1, max(1, max_threads)})
        self.current = self.choices[-1]
        self.estimate: dict[int, float] = {}
        self.count = 0
        self.exploring = 0
        torch.set_num_threads(self.current)

    def observe(self, seconds: float) -> None:
        old = self.estimate.get(self.current)
        self.estimate[self.current] = seconds if old is None else 0.8 * old + 0.2 * seconds
        self.count += 1
        if len(self.choices) < 2:
            return
        if self.exploring:
            self.exploring -= 1
            if self.exploring == 0:
                self._set(min(self.estimate, key=self.estimate.get))
        elif self.count == 5 or self.count % 100 == 0:
            self.exploring = 5
            self._set(next(c for c in self.choices if c != self.current))

    def _set(self, threads: int) -> None:
        if threads != self.current:
            self.current = threads
            torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------------
# State


class State:
    """Everything a checkpoint holds, live."""

    def __init__(self, options: TrainOptions, work_dir: Path):
        self.options = options
        self.config = options.config
        if options.grow_from is not None:
            c = options.config
            unet_grown = dict(unet_layers_per_block=c.unet_layers_per_block, unet_attention=c.unet_attention,
                              unet_only_cross_attention=c.unet_only_cross_attention)
            if replace(options.grow_from, **unet_grown) != c:
                raise ValueError("grow_from must be the config with fewer ResNets or less attention in its UNet, "
                                 "nothing else changed (or None: no growing)")
        self.work_dir = work_dir
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            self.tokenizer = shapes_model.build_tokenizer(work_dir / "tokenizer", self.config)
            self.vae = shapes_model.build_vae(self.config)
            self.grown = not self.grows
            self.unet = shapes_model.build_unet(self.config if self.grown else options.grow_from)
            self.text_encoder = shapes_model.build_text_encoder(self.config, self.tokenizer)
            self.text_heads = AttributeHeads(self.config.text_width)
        self.ema_unet = copy.deepcopy(self.unet).requires_grad_(False)
        self.ema_text_encoder = copy.deepcopy(self.text_encoder).requires_grad_(False)
        self.vae_opt = torch.optim.AdamW(self.vae.parameters(), lr=options.vae_lr, weight_decay=0.0)
        self.opt = torch.optim.AdamW(
            self.trained_parameters(),
            lr=options.lr,
            betas=(0.9, 0.99),
            weight_decay=options.weight_decay,
        )
        self.vae_step = 0
        self.step = 0
        self.scaling_factor: float | None = None
        self.history: list[dict] = []
        self.rng_state = None

    @property
    def grows(self) -> bool:
        """Whether this recipe starts with a smaller UNet (`grow_from`) and grows it at `grow_at`."""
        return self.options.grow_from is not None

    def grow(self) -> None:
        """Grow the UNet and its EMA to the config's; a fresh optimiser for the new set of parameters."""
        with torch.random.fork_rng(devices=[]):
            for name in ("unet", "ema_unet"):  # the same new blocks in both
                torch.manual_seed(self.options.seed * 1_000_003 + self.options.grow_at)
                setattr(self, name, shapes_model.grow_unet(getattr(self, name), self.config))
        self.ema_unet.requires_grad_(False)
        self.grown = True
        o = self.options
        self.opt = torch.optim.AdamW(
            self.trained_parameters(), lr=o.grow_lr, betas=(0.9, 0.99), weight_decay=o.weight_decay
        )

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """What the UNet phase optimises (and clips): UNet, text encoder and its attribute heads."""
        return [*self.unet.parameters(), *self.text_encoder.parameters(), *self.text_heads.parameters()]

    def save(self, path: Path) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "options": self.options.to_dict(),
            "vae": self.vae.state_dict(),
            "unet": self.unet.state_dict(),
            "text_encoder": self.text_encoder.state_dict(),
            "ema_unet": self.ema_unet.state_dict(),
            "ema_text_encoder": self.ema_text_encoder.state_dict(),
            "text_heads": self.text_heads.state_dict(),
            "vae_opt": self.vae_opt.state_dict(),
            "opt": self.opt.state_dict(),
            "vae_step": self.vae_step,
            "step": self.step,
            "scaling_factor": self.scaling_factor,
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
        }
        tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def restore(self, payload: dict) -> None:
        """Take up a checkpoint read by `read_checkpoint`."""
        self.vae.load_state_dict(payload["vae"])
        if not self.grown and set(payload["unet"]) != set(self.unet.state_dict()):
            self.grow()
        self.unet.load_state_dict(payload["unet"])
        self.text_encoder.load_state_dict(payload["text_encoder"])
        self.ema_unet.load_state_dict(payload["ema_unet"])
        self.ema_text_encoder.load_state_dict(payload["ema_text_encoder"])
        self.text_heads.load_state_dict(payload["text_heads"])
        self.vae_opt.load_state_dict(payload["vae_opt"])
        self.opt.load_state_dict(payload["opt"])
        self.vae_step = payload["vae_step"]
        self.step = payload["step"]
        self.scaling_factor = payload["scaling_factor"]
        self.history = payload.get("history", [])
        torch.set_rng_state(payload["torch_rng"])


def read_checkpoint(work_dir: Path) -> dict | None:
    """The checkpoint in `work_dir` (None if there is none), read once: it is about 100 MB."""
    path = Path(work_dir) / CHECKPOINT
    if not path.is_file():
        return None
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise RuntimeError(f"{path} was written by an older trainer (format {payload.get('format')}, this one "
                           f"reads {CHECKPOINT_FORMAT}): start over with --fresh, or export it with the "
                           "Dreamgrid version that wrote it")
    return payload


def load_state(work_dir: Path) -> State:
    """The latest checkpoint in `work_dir`, live."""
    payload = read_checkpoint(work_dir)
    if payload is None:
        raise FileNotFoundError(f"no checkpoint in {work_dir}; train first")
    state = State(_options_from_dict(payload["options"]), Path(work_dir))
    state.restore(payload)
    return state


def _options_from_dict(d: dict) -> TrainOptions:
    d = dict(d)
    d["config"] = ShapesConfig.from_dict(d["config"])
    d["grow_from"] = ShapesConfig.from_dict(d["grow_from"]) if d.get("grow_from") else None
    known = {f for f in TrainOptions.__dataclass_fields__}
    return TrainOptions(**{k: v for k, v in d.items() if k in known})


# --------------------------------------------------------------------------------------------------
# Data


class Dataset:
    """Pre-rendered world pictures (uint8) and their attributes as indices."""

    def __init__(self, count: int, seed: int, resolution: int):
        images, scenes = render_dataset(count, seed=seed, width=resolution, height=resolution)
        self.images = images
        self.attrs = np.asarray(
            [
                (
                    COLOUR_NAMES.index(s.shape_colour),
                    SHAPES.index(s.shape),
                    COLOUR_NAMES.index(s.background_colour),
                    POSITION_NAMES.index(s.position),
                )
                for s in scenes
            ],
            dtype=np.int64,
        )

    def pixels(self, index: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(self.images[index]).permute(0, 3, 1, 2).float()
        return x / 127.5 - 1.0


NOT_NAMED = len(POSITION_NAMES)  # the place label of a caption that does not name one
IGNORE = -100  # the labels of an empty caption: it says nothing


def caption_batch(attrs: np.ndarray, rng: random.Random, dropout: float) -> tuple[list[str], torch.Tensor]:
    """Captions for these attributes and what each one says: (colour, shape, background, place) labels."""
    captions, labels = [], []
    for c, s, b, p in attrs.tolist():
        if rng.random() < dropout:
            captions.append("")
            labels.append((IGNORE,) * 4)
            continue
        named = rng.random() < POSITION_NAMED_PROBABILITY
        captions.append(make_caption(COLOUR_NAMES[c], SHAPES[s], COLOUR_NAMES[b], POSITION_NAMES[p] if named else None, rng))
        labels.append((c, s, b, p if named else NOT_NAMED))
    return captions, torch.tensor(labels, dtype=torch.long)


class AttributeHeads(torch.nn.Module):
    """Linear read-outs of a caption's attributes from the text encoder's pooled output (training only)."""

    def __init__(self, width: int):
        super().__init__()
        sizes = (len(COLOUR_NAMES), len(SHAPES), len(COLOUR_NAMES), len(POSITION_NAMES) + 1)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(width, n) for n in sizes)

    def loss(self, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if (labels[:, 0] == IGNORE).all():
            return pooled.sum() * 0.0
        return sum(F.cross_entropy(head(pooled), labels[:, i], ignore_index=IGNORE)
                   for i, head in enumerate(self.heads)) / len(self.heads)


class TokenCache:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.cache: dict[str, list[int]] = {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in set(captions) if c not in self.cache]
        if missing:
            ids = self.tokenizer(
                missing, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True
            ).input_ids
            self.cache.update(zip(missing, ids))
        return torch.tensor([self.cache[c] for c in captions], dtype=torch.long)


# --------------------------------------------------------------------------------------------------
# Phases


def _learning_rate(step: int, o: TrainOptions) -> float:
    """A cosine with warm-up; a second one from `grow_lr` once the UNet has grown."""
    grows = o.grow_from is not None and o.grow_at < o.steps  # a run shorter than grow_at never grows
    if grows and step >= o.grow_at:
        return _cosine_lr(step - o.grow_at, o.steps - o.grow_at, o.grow_lr, o.warmup, o.min_lr_fraction)
    return _cosine_lr(step, o.grow_at if grows else o.steps, o.lr, o.warmup, o.min_lr_fraction)


def _cosine_lr(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _train_vae(state: State, data: Dataset, ckpt_path: Path, log) -> None:
    o = state.options
    if state.vae_step >= o.vae_steps:
        return
    vae = state.vae.train()
    gen = torch.Generator().manual_seed(o.seed * 1000 + 1)
    np_rng = np.random.default_rng([o.seed, 1, state.vae_step])
    progress = Progress("vae", o.vae_steps, state.vae_step, o.progress_seconds, log)
    last_save = time.time()
    running = None
    while state.vae_step < o.vae_steps:
        lr = _cosine_lr(state.vae_step, o.vae_steps, o.vae_lr, 50, 0.1)
        for group in state.vae_opt.param_groups:
            group["lr"] = lr
        x = data.pixels(np_rng.integers(0, len(data.images), o.vae_batch))
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
        recon = vae.decode(z).sample
        rec = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        kl = 0.5 * (posterior.mean**2 + posterior.var - 1.0 - posterior.logvar).mean()
        loss = rec + o.kl_weight * kl
        state.vae_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        state.vae_opt.step()
        state.vae_step += 1
        running = rec.item() if running is None else 0.98 * running + 0.02 * rec.item()
        progress.update(state.vae_step, force=state.vae_step == o.vae_steps, rec=running, kl=kl.item())
        if time.time() - last_save > o.checkpoint_seconds:
            state.save(ckpt_path)
            last_save = time.time()
    vae.eval()
    state.save(ckpt_path)


@torch.no_grad()
def vae_accuracy(vae, count: int = 200, seed: int = 999_001, resolution: int = 64) -> dict[str, float]:
    """How often the analyser reads a VAE round trip of a world picture like the original."""
    from bot.shapes.analyser import ATTRIBUTES, analyse

    images, scenes = render_dataset(count, seed=seed, width=resolution, height=resolution)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample
    out = ((recon.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    hits = {name: 0 for name in ATTRIBUTES}
    for img, scene in zip(out, scenes):
        a = analyse(img)
        for name in ATTRIBUTES:
            hits[name] += getattr(a, name) == getattr(scene, name)
    return {name: hits[name] / count for name in ATTRIBUTES}


@torch.no_grad()
def _encode_dataset(state: State, data: Dataset, path: Path, log) -> dict:
    vae = state.vae.eval()
    means, stds = [], []
    for start in range(0, len(data.images), 256):
        index = np.arange(start, min(start + 256, len(data.images)))
        posterior = vae.encode(data.pixels(index)).latent_dist
        means.append(posterior.mean.half())
        stds.append(posterior.std.half())
    mean, std = torch.cat(means), torch.cat(stds)
    if state.scaling_factor is None:
        sample = mean[:4096].float() + std[:4096].float() * torch.randn(mean[:4096].shape)
        state.scaling_factor = float(1.0 / sample.std())
    latents = {"mean": mean, "std": std, "attrs": torch.from_numpy(data.attrs),
               "vae_step": state.vae_step, "count": len(data.images)}
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    torch.save(latents, tmp)
    os.replace(tmp, path)
    log(f"[latents] encoded {len(data.images)} pictures; scaling factor {state.scaling_factor:.4f}")
    return latents


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_params = [p for p in ema.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_mul_(ema_params, decay)
    torch._foreach_add_(ema_params, params, alpha=1.0 - decay)


def _train_unet(state: State, latents: dict, ckpt_path: Path, log, stop_at: int | None = None) -> None:
    o = state.options
    target = o.steps if stop_at is None else min(o.steps, stop_at)
    if state.step >= target:
        return
    scheduler = shapes_model.training_scheduler()
    alphas = scheduler.alphas_cumprod
    snr = alphas / (1 - alphas).clamp(min=1e-12)
    weights = (torch.clamp(snr + 1, max=o.min_snr_gamma + 1) / (snr + 1)).float()
    tokens = TokenCache(state.tokenizer)
    mean, std, attrs = latents["mean"], latents.get("std"), latents["attrs"].numpy()
    count = mean.shape[0]
    sf = state.scaling_factor
    unet, te = state.unet.train(), state.text_encoder.train()
    params = state.trained_parameters()
    progress = Progress("unet", o.steps, state.step, o.progress_seconds, log)
    last_save = time.time()
    running = None
    tuner = ThreadTuner(o.threads)
    with _stop_on_signal(log) as stop:
        while state.step < target and not stop:
            t_step = time.perf_counter()
            step = state.step
            if not state.grown and step >= o.grow_at:
                state.grow()
                unet, params = state.unet.train(), state.trained_parameters()
                log(f"[grow] step {step}: UNet ResNets per level {state.config.layers}, attention per level "
                    f"{state.config.unet_attention}, {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters")
            lr = _learning_rate(step, o)
            for group in state.opt.param_groups:
                group["lr"] = lr
            rng = random.Random(o.seed * 1_000_003 + step)
            gen = torch.Generator().manual_seed(o.seed * 1_000_003 + step)
            index = torch.randint(0, count, (o.batch,), generator=gen)
            z = mean[index].float()
            if std is not None:
                z = z + std[index].float() * torch.randn(z.shape, generator=gen)
            z = z * sf
            captions, labels = caption_batch(attrs[index.numpy()], rng, o.caption_dropout)
            ids = tokens(captions)
            noise = torch.randn(z.shape, generator=gen)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (o.batch,), generator=gen)
            noisy = scheduler.add_noise(z, noise, t)
            v = scheduler.get_velocity(z, noise, t)
            encoded = te(ids)
            pred = unet(noisy, t, encoded.last_hidden_state).sample
            per_sample = ((pred - v) ** 2).mean(dim=(1, 2, 3))
            loss = (per_sample * weights[t]).mean()
            text_loss = state.text_heads.loss(encoded.pooler_output, labels)
            loss = loss + o.text_loss_weight * text_loss
            state.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            state.opt.step()
            state.step += 1
            tuner.observe(time.perf_counter() - t_step)
            decay = min(o.ema_decay, (1 + state.step) / (10 + state.step))
            _ema_update(state.ema_unet, unet, decay)
            _ema_update(state.ema_text_encoder, te, decay)
            losses = {"loss": loss.item(), "text_loss": text_loss.item()}
            running = losses if running is None else {k: 0.98 * running[k] + 0.02 * v for k, v in losses.items()}
            progress.update(state.step, force=state.step == target, **running, lr=lr, threads=tuner.current)
            if o.eval_every and state.step % o.eval_every == 0:
                result = evaluate_state(state, o.eval_prompts, o.eval_steps, o.eval_guidance)
                result["step"] = state.step
                state.history.append(result)
                log("[eval] " + json.dumps(result))
                unet.train()
                te.train()
            if time.time() - last_save > o.checkpoint_seconds or state.step == target or stop:
                state.save(ckpt_path)
                last_save = time.time()


def pipeline_from_state(state: State, use_ema: bool = True, sampler: str = "ddim"):
    unet = state.ema_unet if use_ema else state.unet
    te = state.ema_text_encoder if use_ema else state.text_encoder
    vae = copy.deepcopy(state.vae).eval()
    vae.register_to_config(scaling_factor=state.scaling_factor or 1.0)
    return shapes_model.assemble_pipeline(vae, te.eval(), state.tokenizer, unet.eval(), sampler)


def evaluate_state(state: State, prompts: int, steps: int, guidance: float, sampler: str = "ddim") -> dict:
    from bot.shapes.bench import evaluate, held_out_prompts

    pipe = pipeline_from_state(state, True, sampler)
    pipe.set_progress_bar_config(disable=True)
    res = state.config.resolution
    t0 = time.time()
    result = evaluate(pipe, held_out_prompts(prompts), steps=steps, guidance=guidance, width=res, height=res)
    summary = {k: round(result[k], 3) for k in ("shape_colour", "shape", "background_colour", "position", "all")}
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


# --------------------------------------------------------------------------------------------------
# Entry points


def _latents_for(state: State, work_dir: Path, data_holder: list, log) -> dict:
    path = work_dir / LATENTS
    o = state.options
    if o.config.vae_kind == "pixel":
        # The pixel VAE's encoder is exactly a 2x2 box filter: no need to run it over the data set.
        if not data_holder:
            t0 = time.time()
            data_holder.append(Dataset(o.dataset_size, o.seed, state.config.resolution))
            log(f"[data] rendered {o.dataset_size} pictures in {time.time() - t0:.1f}s")
        data = data_holder[0]
        means = []
        for i in range(0, len(data.images), 1024):
            rgb = F.avg_pool2d(data.pixels(np.arange(i, min(i + 1024, len(data.images)))), 2)
            means.append(torch.cat([rgb, torch.zeros_like(rgb[:, :1])], dim=1).half())
        mean = torch.cat(means)
        if state.scaling_factor is None:
            state.scaling_factor = float(1.0 / mean[:4096].float().pow(2).mean().sqrt())
        return {"mean": mean, "std": None, "attrs": torch.from_numpy(data.attrs)}
    if path.is_file():
        latents = torch.load(path, map_location="cpu", weights_only=False)
        if latents.get("vae_step") == state.vae_step and latents.get("count") == o.dataset_size:
            return latents
    if not data_holder:
        data_holder.append(Dataset(o.dataset_size, o.seed, state.config.resolution))
    return _encode_dataset(state, data_holder[0], path, log)


def train(
    out_dir: Path | str | None = OUT_DIR,
    steps: int | None = None,
    seed: int | None = None,
    resume: bool = True,
    work_dir: Path | str = WORK_DIR,
    options: TrainOptions | None = None,
    log=_log,
    stop_at: int | None = None,
) -> Path:
    """Train (or go on training) and, when the last step is reached and `out_dir` is given, export there.

    resume: continue from `work_dir`/checkpoint.pt if there is one (its options win, except `steps`,
    which may be raised). stop_at: leave after this many UNet steps (a chunk) without exporting.
    Returns the checkpoint path.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / CHECKPOINT
    saved = read_checkpoint(work_dir) if resume else None
    if saved is not None:
        o = _options_from_dict(saved["options"])
        if steps is not None:
            o.steps = steps
        if options is not None:  # run-time knobs may change on resume; the recipe may not
            for name in ("threads", "eval_every", "eval_prompts", "checkpoint_seconds", "progress_seconds"):
                setattr(o, name, getattr(options, name))
    else:
        o = copy.deepcopy(options) if options is not None else TrainOptions()
        if steps is not None:
            o.steps = steps
        if seed is not None:
            o.seed = seed
        for name in (CHECKPOINT, LATENTS):
            (work_dir / name).unlink(missing_ok=True)
    shapes_model.set_num_threads(o.threads)
    state = State(o, work_dir)
    if saved is not None:
        state.restore(saved)
        del saved
        log(f"[resume] {ckpt_path}: vae step {state.vae_step}/{o.vae_steps}, unet step {state.step}/{o.steps}")
    else:
        log(f"[start] options {json.dumps(o.to_dict())}")
    n_unet = sum(p.numel() for p in state.unet.parameters())
    n_te = sum(p.numel() for p in state.text_encoder.parameters())
    n_vae = sum(p.numel() for p in state.vae.parameters())
    log(f"[model] unet {n_unet / 1e6:.2f}M, text encoder {n_te / 1e6:.2f}M, vae {n_vae / 1e6:.2f}M parameters")

    data_holder: list[Dataset] = []
    if o.config.vae_kind == "pixel":
        acc = vae_accuracy(state.vae, count=100, resolution=o.config.resolution)
        log("[vae] pixel VAE (hand-set); analyser on round trips: " + json.dumps(acc))
    elif state.vae_step < o.vae_steps:
        t0 = time.time()
        data_holder.append(Dataset(o.dataset_size, o.seed, o.config.resolution))
        log(f"[data] rendered {o.dataset_size} pictures in {time.time() - t0:.1f}s")
        _train_vae(state, data_holder[0], ckpt_path, log)
        acc = vae_accuracy(state.vae, resolution=o.config.resolution)
        log("[vae] analyser on round trips: " + json.dumps(acc))
    latents = _latents_for(state, work_dir, data_holder, log)
    data_holder.clear()
    if state.step == 0:
        state.save(ckpt_path)
    _train_unet(state, latents, ckpt_path, log, stop_at)
    if state.step >= o.steps and out_dir is not None:
        export(out_dir, work_dir=work_dir, state=state, log=log)
    return ckpt_path


def export(
    out_dir: Path | str = OUT_DIR,
    work_dir: Path | str = WORK_DIR,
    state: State | None = None,
    sampler: str = "ddim",
    log=_log,
) -> Path:
    """Write the EMA weights of the latest checkpoint to `out_dir` (fp16 safetensors, diffusers layout)."""
    out_dir = Path(out_dir)
    work_dir = Path(work_dir)
    if state is None:
        state = load_state(work_dir)
    if state.scaling_factor is None:
        raise RuntimeError("the checkpoint has no trained VAE yet; train further before exporting")
    pipe = pipeline_from_state(state, True, sampler)
    pipe = copy.deepcopy(pipe)
    pipe.to(torch.float16)
    # Where the pipeline's defaults come from: these keys ride along in the scheduler config, and
    # dreamgrid.json says the same in plain words (diffusers ignores both).
    pipe.scheduler.register_to_config(
        _dreamgrid_default_steps=shapes_model.DEFAULT_STEPS,
        _dreamgrid_default_guidance=shapes_model.DEFAULT_GUIDANCE,
    )
    with replaced_on_success(out_dir) as staging:
        pipe.save_pretrained(staging, safe_serialization=True)
        last_eval = state.history[-1] if state.history else None
        meta = {
            "name": "shapes",
            "width": state.config.resolution,
            "height": state.config.resolution,
            "steps": shapes_model.DEFAULT_STEPS,
            "guidance": shapes_model.DEFAULT_GUIDANCE,
            "sampler": sampler,
            "max_prompt_tokens": state.config.max_length,
            "trained_unet_steps": state.step,
            "trained_vae_steps": state.vae_step,
            "seed": state.options.seed,
            "last_eval": last_eval,
            "recipe": state.options.to_dict(),
        }
        (staging / "dreamgrid.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        bpe_licence = REPO_ROOT / "models" / "clip-bpe" / "LICENSE"
        if bpe_licence.is_file():
            shutil.copyfile(bpe_licence, staging / "tokenizer" / "LICENSE-clip-bpe")
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    log(f"[export] {out_dir}: unet step {state.step}, vae step {state.vae_step}, {size / 1e6:.1f} MB")
    return out_dir


PREVIEW_PROMPTS = (
    "a red circle on a blue background",
    "a yellow square on the left on a black background",
    "a white triangle at the top on a green background",
    "a blue circle on the right on a orange background",
    "a purple square at the bottom on a white background",
    "a green triangle in the center on a red background",
)


@torch.no_grad()
def preview(path: Path | str, work_dir: Path | str = WORK_DIR, prompts=PREVIEW_PROMPTS, seeds=(1, 2, 3, 4),
            steps: int = shapes_model.DEFAULT_STEPS, guidance: float = shapes_model.DEFAULT_GUIDANCE) -> Path:
    """A PNG of the latest checkpoint's EMA model: one row per prompt, one column per seed."""
    from PIL import Image

    state = load_state(Path(work_dir))
    pipe = pipeline_from_state(state)
    pipe.set_progress_bar_config(disable=True)
    res = state.config.resolution
    sheet = Image.new("RGB", (res * len(seeds), res * len(prompts)), "white")
    for row, prompt in enumerate(prompts):
        images = pipe([prompt] * len(seeds), num_inference_steps=steps, guidance_scale=guidance,
                      generator=[torch.Generator().manual_seed(s) for s in seeds]).images
        for col, image in enumerate(images):
            sheet.paste(image, (col * res, row * res))
    sheet.save(path)
    return Path(path)


def cli(argv: list[str] | None = None) -> int:
    """`dreamgrid models train-shapes [--steps N] [--resume|--fresh] [--out models/shapes] [--export-only]`"""
    parser = argparse.ArgumentParser(prog="dreamgrid models train-shapes", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help=f"UNet steps in all (default {TrainOptions.steps})")
    parser.add_argument("--vae-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--resume", action="store_true", help="go on from the checkpoint in the work dir")
    parser.add_argument("--fresh", action="store_true", help="discard any checkpoint and start over")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to export (default models/shapes)")
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    parser.add_argument("--export-only", action="store_true", help="export the latest checkpoint and stop")
    parser.add_argument("--preview", type=Path, default=None, metavar="PNG",
                        help="draw a few prompts with the latest checkpoint into PNG and stop")
    parser.add_argument("--chunk", type=int, default=None, help="stop after this many more UNet steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--dataset-size", type=int, default=None)
    parser.add_argument("--tiny", action="store_true", help="the tiny test configuration")
    args = parser.parse_args(argv)

    if args.preview is not None:
        torch.set_num_threads(args.threads)
        try:
            preview(args.preview, work_dir=args.work_dir)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.export_only:
        try:
            export(args.out, work_dir=args.work_dir)
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    has_checkpoint = (args.work_dir / CHECKPOINT).is_file()
    if has_checkpoint and not (args.resume or args.fresh):
        print(f"error: {args.work_dir / CHECKPOINT} exists: pass --resume to go on from it or --fresh to "
              "start over", file=sys.stderr)
        return 2
    options = TrainOptions(seed=args.seed, threads=args.threads)
    if args.tiny:
        options.config, options.grow_from = shapes_model.TINY_CONFIG, None
        options.vae_steps, options.steps, options.batch, options.vae_batch = 20, 20, 8, 4
        options.dataset_size, options.eval_every, options.eval_prompts = 64, 0, 4
    if args.vae_steps is not None:
        options.vae_steps = args.vae_steps
    if args.batch is not None:
        options.batch = args.batch
    if args.eval_every is not None:
        options.eval_every = args.eval_every
    if args.dataset_size is not None:
        options.dataset_size = args.dataset_size
    steps = args.steps if args.steps is not None else (None if args.resume else options.steps)
    stop_at = None
    try:
        if args.chunk is not None:
            saved = read_checkpoint(args.work_dir) if args.resume else None
            stop_at = (saved["step"] if saved else 0) + args.chunk
            del saved
        train(args.out, steps=steps, seed=args.seed, resume=args.resume, work_dir=args.work_dir, options=options,
              stop_at=stop_at)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def bench_cli(argv: list[str] | None = None) -> int:
    """`dreamgrid bench shapes` (lives in bot/shapes/bench.py; here too for one import in bot/cli.py)."""
    from bot.shapes.bench import bench_cli as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
