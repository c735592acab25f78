"""Image references through an IP-Adapter: --sref (style), --oref (object/character) and /blend.

A model whose catalog entry names an `ip_adapter` (the classic h94 format: an image projection and a
to_k_ip/to_v_ip pair per cross-attention layer) and its CLIP `image_encoder` gets one `ImageReferences`,
made on the first request that needs it. It loads the adapter twice onto every UNet of the model (the style
slot and the object slot, one image encoder shared), so one call can carry both, each at its own scale. From
then on every call sets both scales and passes both slots' image embeddings (zeros, at scale 0, for a call
without references: a UNet with an IP-Adapter cannot run without them, and a slot at scale 0 is skipped, so
the pixels are those of the model without the adapter).

The style slot is InstantStyle's: its scale reaches only the style layer (the middle attention of the first
up block with cross-attention, found from the UNet's config), every other layer 0. The object slot takes its
scale on every layer. Embeddings are computed here, not by the pipeline: the reference pictures' embeddings
are averaged (several --sref pictures, a blend's pictures), and a style code draws its own.

`dreamgrid models create-tiny --family ip-adapter-sd` (and `ip-adapter-sdxl`) writes a tiny random adapter
and image encoder matched to models/tiny-sd's (tiny-sdxl's) UNet, for tests.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from pathlib import Path

import torch
from PIL import Image

from bot.engine.catalog import CatalogError, ModelSpec
from bot.engine.requests import BLEND_IP_SCALE, EngineError, GenerateRequest, image_hash

log = logging.getLogger(__name__)

# The two adapters loaded from the one file: index 0 carries the style, 1 the object (and a blend).
STYLE_SLOT, OBJECT_SLOT = 0, 1
# CLIP's own normalisation of pixels (what CLIPImageProcessor applies before the image encoder).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# A style code's embedding has the norm of a mid-grey picture's embedding, rounded to this many significant
# digits, so that the norm (computed on the device, in its dtype) is the same number on every machine.
STYLE_CODE_NORM_DIGITS = 3
_EMBEDDING_CACHE = 64  # reference pictures whose embeddings are kept (per model and device)


def style_layer(unet) -> tuple[int, int, int]:
    """InstantStyle's style layer of this UNet: (up block, attention in it, attentions in that block) — the
    middle attention of the first up block with cross-attention (SDXL: up_blocks.0.attentions.1)."""
    for index, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        if getattr(block, "has_cross_attention", False) and attentions:
            return index, len(attentions) // 2, len(attentions)
    raise EngineError("this UNet has no up block with cross-attention, so it has no style layer")


def style_scale_config(unet, scale: float) -> dict | float:
    """diffusers' per-block scale for the style slot: `scale` on the style layer only, 0 elsewhere."""
    if not scale:
        return 0.0
    block, attention, count = style_layer(unet)
    return {"up": {f"block_{block}": [scale if at == attention else 0.0 for at in range(count)]}}


def classifier_free_guidance(pipe, guidance: float) -> bool:
    """Whether the call runs a negative branch (its image embeddings then come as [negative; positive]): the
    test every SD/SDXL pipeline makes."""
    return guidance > 1 and pipe.unet.config.time_cond_proj_dim is None


class ImageReferences:
    """One model's IP-Adapter on one device: the image encoder, the adapter in both slots on every UNet of
    the model, and the image embeddings of each call. Only used by the worker thread that owns the device."""

    def __init__(self, spec: ModelSpec, models_dir: Path, device: str, dtype: torch.dtype, pipes: list,
                 attention: str = "sdpa") -> None:
        from transformers import CLIPVisionModelWithProjection

        self.spec, self.device, self.dtype = spec, device, dtype
        started = time.perf_counter()
        try:
            folder, subfolder, weight_name, local = spec.resolve_ip_adapter(models_dir)
            encoder_folder, encoder_subfolder, encoder_local = spec.resolve_image_encoder(models_dir)
        except CatalogError as exc:
            raise EngineError(str(exc)) from None
        try:
            self.encoder = CLIPVisionModelWithProjection.from_pretrained(
                encoder_folder, subfolder=encoder_subfolder, local_files_only=encoder_local, dtype=dtype,
            ).to(device).eval()
        except OSError as exc:
            raise EngineError(f"model {spec.name}: cannot load its IP-Adapter's image encoder "
                              f"{spec.image_encoder}: {_first_line(exc)}") from None
        self.image_size = self.encoder.config.image_size
        self.embedding_size = self.encoder.config.projection_dim
        # Every distinct UNet (img2img and from_pipe inpainting share the txt2img one; a dedicated
        # inpainting model has its own) gets the adapter, through a pipeline that owns it. All or none: a UNet
        # left with IP-Adapter processors but no image projection would quietly misread every prompt.
        owners = list({id(pipe.unet): pipe for pipe in pipes}.values())
        saved = [_unet_state(pipe) for pipe in owners]
        try:
            for pipe in owners:
                self._attach(pipe, folder, subfolder, weight_name, local, attention)
        except BaseException:
            for pipe, state in zip(owners, saved):
                _restore_unet(pipe, state)
            raise
        self._embeddings: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()
        self._style_norm: float | None = None
        log.info("loaded the IP-Adapter of model %s (%s) on %s in %.1f s", spec.name, spec.ip_adapter, device,
                 time.perf_counter() - started)

    def _attach(self, pipe, folder: str, subfolder: str, weight_name: str, local: bool, attention: str) -> None:
        # The encoder is ours (embeddings are computed here): registered first, the pipeline loads none.
        pipe.register_modules(image_encoder=self.encoder)
        if getattr(pipe, "feature_extractor", False) is None:
            pipe.register_modules(feature_extractor=_feature_extractor(self.image_size))
        try:
            pipe.load_ip_adapter([folder, folder], subfolder=[subfolder, subfolder],
                                 weight_name=[weight_name, weight_name], image_encoder_folder=None,
                                 local_files_only=local)
        except OSError as exc:
            raise EngineError(f"model {self.spec.name}: cannot load its IP-Adapter {self.spec.ip_adapter}: "
                              f"{_first_line(exc)}") from None
        except (KeyError, RuntimeError, ValueError) as exc:
            raise EngineError(f"model {self.spec.name}: its IP-Adapter {self.spec.ip_adapter} does not fit its "
                              f"UNet ({_first_line(exc)}); it must be made for this model's base "
                              f"({self.spec.family.label})") from None
        from diffusers.models.embeddings import ImageProjection

        projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
        if not isinstance(projection, ImageProjection):
            raise EngineError(f"model {self.spec.name}: its IP-Adapter {self.spec.ip_adapter} is a "
                              f"{type(projection).__name__} (Plus, Full or FaceID); only the classic IP-Adapter "
                              "(one image embedding into 4 tokens) is supported")
        embed_dim = projection.image_embeds.in_features
        if embed_dim != self.embedding_size:
            raise EngineError(f"model {self.spec.name}: its IP-Adapter takes {embed_dim}-wide image embeddings "
                              f"but its image encoder {self.spec.image_encoder} makes {self.embedding_size}-wide "
                              "ones; name the encoder the adapter was trained with")
        if attention == "classic":
            _classic_processors(pipe.unet)

    # -- embeddings ---------------------------------------------------------------------------------------

    def pixel_values(self, images: list[Image.Image]) -> torch.Tensor:
        """CLIP's preprocessing: the short side resized to the encoder's size (bicubic), the centre cropped,
        normalised with CLIP's mean and deviation."""
        size = self.image_size
        rows = []
        for image in images:
            image = image.convert("RGB")
            scale = size / min(image.size)
            width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
            image = image.resize((width, height), Image.Resampling.BICUBIC)
            left, top = (width - size) // 2, (height - size) // 2
            image = image.crop((left, top, left + size, top + size))
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(size, size, 3)
            rows.append(pixels.permute(2, 0, 1).float() / 255)
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return (torch.stack(rows) - mean) / std

    @torch.no_grad()
    def embed(self, images: tuple[Image.Image, ...] | list[Image.Image]) -> torch.Tensor:
        """The average of the pictures' image embeddings (projection_dim,), each computed once."""
        missing = [image for image in images if image_hash(image) not in self._embeddings]
        if missing:
            pixels = self.pixel_values(missing).to(self.device, self.dtype)
            for image, embedding in zip(missing, self.encoder(pixel_values=pixels).image_embeds):
                self._embeddings[image_hash(image)] = embedding
        for image in images:
            self._embeddings.move_to_end(image_hash(image))
        vectors = [self._embeddings[image_hash(image)] for image in images]
        while len(self._embeddings) > _EMBEDDING_CACHE:
            self._embeddings.popitem(last=False)
        return torch.stack(vectors).float().mean(dim=0)

    def style_norm(self) -> float:
        """The typical norm of this encoder's image embeddings: a mid-grey picture's, computed once."""
        if self._style_norm is None:
            grey = Image.new("RGB", (self.image_size, self.image_size), (128, 128, 128))
            norm = float(self.embed([grey]).norm())
            self._style_norm = float(f"{norm:.{STYLE_CODE_NORM_DIGITS}g}")
        return self._style_norm

    def code_embedding(self, code: int) -> torch.Tensor:
        """--sref <code>: a normal vector drawn by a CPU generator seeded with the code, at style_norm(): the
        same code gives the same embedding on every machine, different codes different styles."""
        vector = torch.randn(self.embedding_size, generator=torch.Generator("cpu").manual_seed(code),
                             dtype=torch.float32)
        return vector / vector.norm() * self.style_norm()

    def _slot_embeddings(self, request: GenerateRequest) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        style = obj = None
        if request.style_reference is not None:
            style = (self.code_embedding(request.style_code) if request.style_code is not None
                     else self.embed(request.style_images))
        if request.blend_images:
            obj = self.embed(request.blend_images)
        elif request.object_reference is not None:
            obj = self.embed(request.object_images)
        return style, obj

    # -- one call -----------------------------------------------------------------------------------------

    def call_options(self, pipe, requests: list[GenerateRequest], guidance: float) -> dict:
        """Set both slots' scales on `pipe`'s UNet and return the call's `ip_adapter_image_embeds`: per slot,
        one row per image (each request's own references; zeros where it has none), negatives (zeros) first
        when the call runs classifier-free guidance. The requests share a batch key, so their scales agree."""
        first = requests[0]
        style_scale = first.style_scale if first.style_reference is not None else 0.0
        object_scale = (BLEND_IP_SCALE if first.blend_images
                        else first.object_scale if first.object_reference is not None else 0.0)
        pipe.set_ip_adapter_scale([style_scale_config(pipe.unet, style_scale), object_scale])

        zero = torch.zeros(self.embedding_size, device=self.device)
        slots: list[list[torch.Tensor]] = [[], []]
        for request in requests:
            style, obj = self._slot_embeddings(request)
            for slot, embedding in ((STYLE_SLOT, style), (OBJECT_SLOT, obj)):
                slots[slot].extend([zero if embedding is None else embedding.to(self.device)] * len(request.seeds))
        dtype = pipe.unet.dtype
        embeds = []
        for rows in slots:
            positive = torch.stack(rows)[:, None, :]  # (images, 1 picture, projection_dim)
            if classifier_free_guidance(pipe, guidance):
                positive = torch.cat([torch.zeros_like(positive), positive])
            embeds.append(positive.to(self.device, dtype))
        return {"ip_adapter_image_embeds": embeds}


def _unet_state(pipe) -> tuple:
    """What loading an IP-Adapter changes on a pipeline and its UNet, to put back if the load fails."""
    unet = pipe.unet
    return (dict(unet.attn_processors), unet.encoder_hid_proj, unet.config.encoder_hid_dim_type,
            getattr(pipe, "image_encoder", None), getattr(pipe, "feature_extractor", None))


def _restore_unet(pipe, state: tuple) -> None:
    processors, projection, hid_type, encoder, extractor = state
    unet = pipe.unet
    unet.set_attn_processor(processors)
    unet.encoder_hid_proj = projection
    unet.config.encoder_hid_dim_type = hid_type  # as diffusers' own unload_ip_adapter does
    if hasattr(pipe, "image_encoder"):
        pipe.register_modules(image_encoder=encoder)
    if hasattr(pipe, "feature_extractor"):
        pipe.register_modules(feature_extractor=extractor)


def _classic_processors(unet) -> None:
    """ATTENTION=classic: diffusers gives the cross-attention layers its torch-2 IP-Adapter processor; swap
    each for the classic one with the same weights, as the rest of the UNet runs."""
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    processors = {}
    for name, processor in unet.attn_processors.items():
        if isinstance(processor, IPAdapterAttnProcessor2_0):
            classic = IPAdapterAttnProcessor(processor.hidden_size, processor.cross_attention_dim,
                                             processor.num_tokens, list(processor.scale))
            classic.load_state_dict(processor.state_dict())
            processor = classic.to(device=unet.device, dtype=unet.dtype)
        processors[name] = processor
    unet.set_attn_processor(processors)


def _feature_extractor(size: int):
    """The pipeline's feature extractor where it has none (load_ip_adapter would make one): CLIP's, at the
    encoder's size. Not used for our embeddings (pixel_values), only to complete the pipeline."""
    import transformers

    processor = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return processor(size=size, crop_size=size)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


# -- the tiny random IP-Adapter ---------------------------------------------------------------------------

# `create-tiny --family` value -> the tiny model family whose UNet it is made for.
ADAPTER_FAMILIES = {"ip-adapter-sd": "sd", "ip-adapter-sdxl": "sdxl"}
ADAPTER_FILE = "ip-adapter.safetensors"
ENCODER_FOLDER = "image_encoder"
IMAGE_TOKENS = 4  # the classic IP-Adapter's image tokens (diffusers' ImageProjection assumes 4)
# The tiny image encoder: a small CLIP ViT on 32 px pictures.
TINY_IMAGE_SIZE, TINY_PATCH, TINY_HIDDEN, TINY_PROJECTION = 32, 8, 32, 32
# The spread of the random to_k_ip/to_v_ip weights: large enough that a reference visibly changes the picture.
TINY_IP_STD = 1.0


def default_adapter_path(family: str) -> Path:
    return Path("models") / f"tiny-{family}"


def default_base_path(family: str) -> Path:
    return Path("models") / f"tiny-{ADAPTER_FAMILIES[family]}"


def adapter_shapes(unet_config: dict, embedding_size: int) -> dict[str, tuple[int, ...]]:
    """The h94 state dict an IP-Adapter for a UNet of this config has: `image_proj.*` (the projection of an
    image embedding into IMAGE_TOKENS tokens) and `ip_adapter.<id>.to_k_ip/to_v_ip.weight` per cross-attention
    processor, ids 1, 3, 5... in the UNet's processor order (diffusers' _convert_ip_adapter_attn_to_diffusers)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    cross = unet.config.cross_attention_dim
    channels = list(unet.config.block_out_channels)
    shapes = {"image_proj.proj.weight": (IMAGE_TOKENS * cross, embedding_size),
              "image_proj.proj.bias": (IMAGE_TOKENS * cross,),
              "image_proj.norm.weight": (cross,), "image_proj.norm.bias": (cross,)}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: no image tokens
        if name.startswith("mid_block"):
            hidden = channels[-1]
        elif name.startswith("up_blocks"):
            hidden = channels[::-1][int(name.split(".")[1])]
        else:
            hidden = channels[int(name.split(".")[1])]
        shapes[f"ip_adapter.{key_id}.to_k_ip.weight"] = (hidden, cross)
        shapes[f"ip_adapter.{key_id}.to_v_ip.weight"] = (hidden, cross)
        key_id += 2
    return shapes


def _unet_config(base: Path) -> dict:
    path = Path(base) / "unet" / "config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise FileNotFoundError(f"{path}: no UNet config there; build the base model first "
                                "(`dreamgrid models create-tiny --family sd` or `--family sdxl`)") from None


def is_current_adapter(path: Path, base: Path) -> bool:
    """The adapter file and the image encoder are there, and the adapter fits `base`'s UNet."""
    from safetensors import safe_open

    path = Path(path)
    encoder = path / ENCODER_FOLDER
    if not ((path / ADAPTER_FILE).is_file() and (encoder / "config.json").is_file()
            and (encoder / "model.safetensors").is_file()):
        return False
    try:
        projection = json.loads((encoder / "config.json").read_text())["projection_dim"]
        expected = adapter_shapes(_unet_config(base), projection)
        with safe_open(path / ADAPTER_FILE, framework="pt") as weights:
            found = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    except (OSError, ValueError, KeyError):
        return False
    return found == expected


def create_tiny_ip_adapter(path: Path | None = None, base: Path | None = None, seed: int = 0,
                           family: str = "ip-adapter-sd", force: bool = False) -> Path:
    """A random IP-Adapter (h94 layout) and CLIP image encoder for the UNet of the tiny model at `base`,
    written to `path`/ip-adapter.safetensors and `path`/image_encoder; deterministic from `seed`. Kept
    if a current one is there (unless `force`)."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from bot.engine.folders import replaced_on_success

    if family not in ADAPTER_FAMILIES:
        raise ValueError(f"unknown IP-Adapter family {family!r}; expected one of {', '.join(ADAPTER_FAMILIES)}")
    path = Path(path) if path is not None else default_adapter_path(family)
    base = Path(base) if base is not None else default_base_path(family)
    if not force and is_current_adapter(path, base):
        return path
    if path.exists() and not force and any(path.iterdir()) and not (path / ADAPTER_FILE).is_file():
        raise FileExistsError(f"{path} exists but is not a tiny IP-Adapter; pass force=True to replace it")
    shapes = adapter_shapes(_unet_config(base), TINY_PROJECTION)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=TINY_HIDDEN, intermediate_size=2 * TINY_HIDDEN, projection_dim=TINY_PROJECTION,
            num_hidden_layers=2, num_attention_heads=4, image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH))
        generator = torch.Generator("cpu").manual_seed(seed)
        weights = {}
        for key, shape in shapes.items():
            if key == "image_proj.norm.weight":
                weights[key] = torch.ones(shape)
            elif key.endswith(".bias"):
                weights[key] = torch.zeros(shape)
            else:
                std = TINY_IP_STD if key.startswith("ip_adapter.") else shape[-1] ** -0.5
                weights[key] = torch.randn(shape, generator=generator) * std
    with replaced_on_success(path) as staging:
        encoder.save_pretrained(staging / ENCODER_FOLDER, safe_serialization=True)
        save_file({key: value.contiguous() for key, value in weights.items()}, staging / ADAPTER_FILE)
    return path
