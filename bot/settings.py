"""Settings from the environment and `.env`.

Every variable is declared once in `SETTINGS` with its default and a one-line explanation;
`.env.example` is written from the same table (a test keeps the two in step). A missing or malformed
value stops start-up with one line that names the variable.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

from dotenv import dotenv_values


class SettingsError(Exception):
    """A variable is missing or malformed; the message is one line naming it."""


def _ids(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.replace(" ", "").split(",") if part)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError("needs at least one name")
    return names


def _positive_int(text: str) -> int:
    if not text.isdigit():
        raise ValueError("must be a whole number")
    value = int(text)
    if value < 1:
        raise ValueError("must be 1 or more")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be a number above 0")
    return value


def _origins(text: str) -> str:
    from bot.service.fetch import parse_hosts  # checked here, used by the service

    if not parse_hosts(text):
        raise ValueError("name at least one host")
    return text


def _threads(text: str) -> int:
    # Measured on 2 cores with another process busy: a 64 px grid took 10.4 s with torch on both cores
    # (threads fighting) and 0.68 s with one. See docs/architecture.md.
    if text == "auto":
        return max(1, (os.cpu_count() or 2) - 1)
    return _positive_int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise ValueError("must be a whole number, 0 or more")
    return int(text)


def _bool(text: str) -> bool:
    if text.lower() not in {"true", "false", "1", "0", "yes", "no"}:
        raise ValueError("must be true or false")
    return text.lower() in {"true", "1", "yes"}


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return text.lower()
    return parse


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach an address (127.0.0.0/8, ::1, localhost)."""
    try:
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name or nothing (aiohttp's "every interface"): it may be reachable from outside
        return False


def _client_id(text: str) -> str:
    if text and not (text.isdigit() and len(text) <= 20):
        raise ValueError("must be the application's id, digits only (the developer portal's OAuth2 page)")
    return text


def _web_secret(text: str) -> str:
    if text and len(text) < 32:
        raise ValueError("must be at least 32 characters (python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return text


def _base_url(text: str) -> str:
    """An http(s) address without query or fragment, its trailing / dropped; or empty."""
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an http:// or https:// address such as https://dreamgrid.example.org")
    return text.rstrip("/")


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise ValueError("must be a port number, 1 to 65535, or 0")
    return int(text)


def _level(text: str) -> str:
    level = text.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str
    parse: Callable[[str], object] = str
    secret: bool = False


# (field name on Settings, declaration). The order is the order of .env.example.
SETTINGS: dict[str, Variable] = {
    "discord_token": Variable(
        "DISCORD_TOKEN", "", "Bot token from the Discord developer portal (required for `dreamgrid run`).",
        secret=True,
    ),
    "discord_client_id": Variable(
        "DISCORD_CLIENT_ID", "",
        "The application's client id (developer portal, OAuth2): with the secret, the web pages ask members to "
        "log in with Discord.", _client_id,
    ),
    "discord_client_secret": Variable(
        "DISCORD_CLIENT_SECRET", "",
        "The application's client secret (developer portal, OAuth2; add WEB_PUBLIC_URL/oauth/callback as a "
        "redirect there). Never shown or logged.", secret=True,
    ),
    "guild_ids": Variable(
        "DISCORD_GUILD_IDS", "",
        "Comma-separated server ids to register slash commands in at once (empty: global, up to an hour).",
        _ids,
    ),
    "admin_user_ids": Variable(
        "ADMIN_USER_IDS", "", "Comma-separated user ids that are admins everywhere.", _ids,
    ),
    "admin_role_ids": Variable(
        "ADMIN_ROLE_IDS", "", "Comma-separated role ids whose members are admins (Manage Server also counts).",
        _ids,
    ),
    "data_dir": Variable(
        "DATA_DIR", "data", "Where the SQLite database and every generated image are kept.", Path,
    ),
    "models_dir": Variable(
        "MODELS_DIR", "models", "Folder with model files and catalog.toml.", Path,
    ),
    "default_model": Variable(
        "DEFAULT_MODEL", "", "Catalog model used by /imagine (empty: the catalog's default).",
    ),
    "engine": Variable(
        "ENGINE", "local",
        "Where pictures are made: local (worker threads in this process, on DEVICES) or ray (a Ray Serve "
        "application at RAY_SERVE_URL, started with `dreamgrid serve`; see docs/operations.md).",
        _choice("local", "ray"),
    ),
    "ray_serve_url": Variable(
        "RAY_SERVE_URL", "http://127.0.0.1:8000/dreamgrid",
        "With ENGINE=ray: the address of the Ray Serve application (its route prefix included).", _base_url,
    ),
    "devices": Variable(
        "DEVICES", "cpu", "Comma-separated torch devices, one worker thread each: cpu, or cuda:0,cuda:1.",
        _names,
    ),
    "torch_threads": Variable(
        "TORCH_THREADS", "auto",
        "CPU threads torch may use (auto: all cores but one, so the event loop always has a core).", _threads,
    ),
    "max_batch_jobs": Variable(
        "MAX_BATCH_JOBS", "4",
        "Most jobs (of any users) that share one pipeline call when their size, steps and model match; the pool "
        "measures and uses fewer where batching is not faster (1: no batching).", _positive_int,
    ),
    "torch_dtype": Variable(
        "TORCH_DTYPE", "auto",
        "Weights' precision: auto (fp16 on CUDA, fp32 elsewhere), fp32, fp16 or bf16 (bf16 for recent GPUs).",
        _choice("auto", "fp32", "fp16", "bf16"),
    ),
    "attention": Variable(
        "ATTENTION", "sdpa", "Attention kernels: sdpa (torch's fused attention; fastest) or classic (plain matmuls).",
        _choice("sdpa", "classic"),
    ),
    "channels_last": Variable(
        "CHANNELS_LAST", "false", "UNet in channels-last memory layout (often faster convolutions on NVIDIA GPUs).",
        _bool,
    ),
    "compile_unet": Variable(
        "COMPILE_UNET", "false",
        "torch.compile the UNet: the first job of each size is slow, later ones faster (GPU; needs a C++ compiler).",
        _bool,
    ),
    "vae_tiling": Variable(
        "VAE_TILING", "false", "Decode images tile by tile: large images fit in less GPU memory (faint seams possible).",
        _bool,
    ),
    "cpu_offload": Variable(
        "CPU_OFFLOAD", "false",
        "Keep weights in RAM and move each model to the GPU only while it runs: small cards, slower (needs accelerate).",
        _bool,
    ),
    "daily_images": Variable(
        "DAILY_IMAGES", "200",
        "Fast images each user may make per quota period (a grid costs 4, an upscale 1; relax jobs are free).",
        _positive_int,
    ),
    "quota_period_days": Variable(
        "QUOTA_PERIOD_DAYS", "1", "Length of the quota period in UTC days (1: the allowance resets every midnight).",
        _positive_int,
    ),
    "relax_allowed": Variable(
        "RELAX_ALLOWED", "true", "Whether /relax is offered: free jobs that run only when no fast job waits.", _bool,
    ),
    "max_running_per_user": Variable(
        "MAX_RUNNING_PER_USER", "3", "Jobs one user may have running at once (matters with several devices).",
        _positive_int,
    ),
    "max_waiting_per_user": Variable(
        "MAX_WAITING_PER_USER", "10", "Jobs one user may have waiting in the queue; more are refused.",
        _positive_int,
    ),
    "queue_limit": Variable(
        "QUEUE_LIMIT", "100", "Jobs that may wait in the queue in all; past that new jobs are refused.",
        _positive_int,
    ),
    "retention_days": Variable(
        "RETENTION_DAYS", "0", "Delete the image files of jobs older than this many days (0: keep them forever).",
        _non_negative_int,
    ),
    "max_prompt_chars": Variable(
        "MAX_PROMPT_CHARS", "1000", "Longest prompt accepted, in characters.", _positive_int,
    ),
    "image_hosts": Variable(
        "IMAGE_HOSTS", "cdn.discordapp.com,media.discordapp.net",
        "Hosts image prompts, references, /blend and /describe may fetch from (Discord's CDN; nothing else is ever "
        "fetched). A full origin such as http://127.0.0.1:8080 is for a local Discord.", _origins,
    ),
    "max_image_mb": Variable(
        "MAX_IMAGE_MB", "25", "Largest image file accepted from members, in MB (checked before and while downloading).",
        _positive_float,
    ),
    "max_image_megapixels": Variable(
        "MAX_IMAGE_MEGAPIXELS", "40", "Most pixels an accepted image may have, in millions (checked before decoding).",
        _positive_float,
    ),
    "progress_interval": Variable(
        "PROGRESS_INTERVAL", "1.5",
        "Seconds between progress edits of a job's message (Discord rate-limits edits).", _non_negative_float,
    ),
    "position_interval": Variable(
        "POSITION_INTERVAL", "5",
        "Seconds between updates of a waiting job's place in line on its message (0: shown once, when queued).",
        _non_negative_float,
    ),
    "preview_interval": Variable(
        "PREVIEW_INTERVAL", "3",
        "Seconds between live previews of a grid while it is generated (a cheap decode of the latents; 0: off).",
        _non_negative_float,
    ),
    "job_timeout": Variable(
        "JOB_TIMEOUT", "600",
        "Seconds a running job may go without progress (loading its model counts) before it is stopped, failed and "
        "refunded (0: no limit).", _non_negative_float,
    ),
    "delivery_timeout": Variable(
        "DELIVERY_TIMEOUT", "600",
        "Seconds the bot keeps retrying to show a finished job in its message (Discord down) before it posts "
        "the result as a new message; if even that fails, the job is refunded.", _non_negative_float,
    ),
    "web_host": Variable(
        "WEB_HOST", "127.0.0.1",
        "Address of the bot's own web server; loopback only (127.0.0.1, ::1, localhost) unless login with "
        "Discord is on (DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET); 0.0.0.0 for every interface.",
    ),
    "web_port": Variable(
        "WEB_PORT", "8088",
        "Port of the bot's web server, http://WEB_HOST:WEB_PORT, with Prometheus metrics at /metrics (0: off).",
        _port,
    ),
    "web_public_url": Variable(
        "WEB_PUBLIC_URL", "",
        "The address members open the web pages at (behind a reverse proxy: its https:// address); the login's "
        "redirect URI is this + /oauth/callback. Empty: http://WEB_HOST:WEB_PORT.", _base_url,
    ),
    "web_secret": Variable(
        "WEB_SECRET", "",
        "Key that signs the web sessions' cookies, 32 characters or more (empty: one is made and kept in "
        "DATA_DIR/web-secret, readable by this user only).", _web_secret, secret=True,
    ),
    "discord_oauth_url": Variable(
        "DISCORD_OAUTH_URL", "",
        "Where Discord's login page is, /oauth2/authorize under it (empty: https://discord.com; tests point it "
        "at the local one).", _base_url,
    ),
    "discord_api_base": Variable(
        "DISCORD_API_BASE", "", "Discord REST base URL (empty: real Discord; tests point it at the local one).",
    ),
    "discord_gateway_url": Variable(
        "DISCORD_GATEWAY_URL", "", "Discord gateway URL (empty: real Discord).",
    ),
    "log_level": Variable(
        "LOG_LEVEL", "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.", _level,
    ),
}


@dataclass(frozen=True)
class Settings:
    """One field per entry of SETTINGS (its default and help are there, declared once)."""

    discord_token: str
    guild_ids: frozenset[int]
    admin_user_ids: frozenset[int]
    admin_role_ids: frozenset[int]
    data_dir: Path
    models_dir: Path
    default_model: str
    devices: tuple[str, ...]
    engine: str
    ray_serve_url: str
    torch_threads: int
    daily_images: int
    max_prompt_chars: int
    progress_interval: float
    position_interval: float
    discord_api_base: str
    discord_gateway_url: str
    log_level: str
    quota_period_days: int
    relax_allowed: bool
    max_running_per_user: int
    max_waiting_per_user: int
    queue_limit: int
    retention_days: int
    max_batch_jobs: int
    preview_interval: float
    job_timeout: float
    delivery_timeout: float
    torch_dtype: str
    attention: str
    channels_last: bool
    compile_unet: bool
    vae_tiling: bool
    cpu_offload: bool
    image_hosts: str
    max_image_mb: float
    max_image_megapixels: float
    web_host: str
    web_port: int
    discord_client_id: str = ""
    discord_client_secret: str = ""
    web_public_url: str = ""
    web_secret: str = ""
    discord_oauth_url: str = ""

    @property
    def database_path(self) -> Path:
        return self.data_dir / "dreamgrid.sqlite3"

    @property
    def catalog_path(self) -> Path:
        return self.models_dir / "catalog.toml"

    @property
    def login(self) -> bool:
        """Whether the web pages ask members to log in with Discord (the client id and secret are set)."""
        return bool(self.discord_client_id and self.discord_client_secret)

    @property
    def secrets(self) -> list[str]:
        """Every secret's value that is set: for the log filter (bot/logs.py)."""
        return [getattr(self, name) for name, var in SETTINGS.items() if var.secret and getattr(self, name)]

    def __repr__(self) -> str:  # never print the token, even by accident
        shown = {f.name: ("***" if SETTINGS[f.name].secret and getattr(self, f.name) else getattr(self, f.name))
                 for f in fields(self)}
        return f"Settings({shown})"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, env_file: Path | None = Path(".env"),
             **overrides: object) -> "Settings":
        """Read the variables: `env` (default os.environ) wins over `env_file`, `overrides` over both."""
        source: dict[str, str] = {}
        if env_file is not None and env_file.is_file():
            source.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
        source.update(os.environ if env is None else env)
        values: dict[str, object] = {}
        for field_name, var in SETTINGS.items():
            if field_name in overrides:
                values[field_name] = overrides[field_name]
                continue
            raw = source.get(var.name, var.default).strip()
            try:
                values[field_name] = var.parse(raw)
            except ValueError as error:
                shown = "(hidden)" if var.secret else repr(raw)
                raise SettingsError(f"{var.name}={shown} is not valid: {error}. {var.help}") from None
        settings = cls(**values)
        settings._check_login()
        return settings

    def _check_login(self) -> None:
        if bool(self.discord_client_id) != bool(self.discord_client_secret):
            given, missing = (("DISCORD_CLIENT_ID", "DISCORD_CLIENT_SECRET") if self.discord_client_id
                              else ("DISCORD_CLIENT_SECRET", "DISCORD_CLIENT_ID"))
            raise SettingsError(f"{given} is set but {missing} is empty: login with Discord needs both (the "
                                "developer portal's OAuth2 page), or neither")
        if not self.login and not is_loopback(self.web_host):
            raise SettingsError(f"WEB_HOST={self.web_host} would expose the web pages without login: set "
                                "DISCORD_CLIENT_ID and DISCORD_CLIENT_SECRET (login with Discord), or keep 127.0.0.1")
        if self.login and not self.web_public_url and self.web_host in ("", "0.0.0.0", "::"):
            raise SettingsError(f"WEB_HOST={self.web_host or '(every interface)'} is no address a browser can open: "
                                "set WEB_PUBLIC_URL to the one members use (the login's redirect URI is under it)")


def env_example() -> str:
    """The text of .env.example: every variable, its default and one line of explanation."""
    lines = ["# Dreamgrid settings. Copy to .env and fill in DISCORD_TOKEN; every other line shows the default."]
    for var in SETTINGS.values():
        lines += ["", f"# {var.help}", f"{var.name}={var.default}"]
    return "\n".join(lines) + "\n"
