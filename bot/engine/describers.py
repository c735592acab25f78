"""/describe's engine: a picture -> four prompts, from a describer folder.

`load_describer(folder, device)` reads what the folder holds (`Describers`: those of one device, kept once
loaded; both pools describe with it, so /describe runs where the pictures are made):

- `describer.json` (kind "dreamgrid-shapes-describer") + `describer.safetensors`: the shapes world's own
  describer, a small CNN trained here (bot/shapes/describer.py; shipped in models/shapes-describer/). Its
  four prompts are in the phrasings the `shapes` model was trained on.
- a transformers BLIP captioning folder (`config.json` with model_type "blip", the processor's files):
  `BlipForConditionalGeneration` + `BlipProcessor`. Four phrasings: beam search returning four captions,
  then captions started with "a picture of", "an illustration of", ...; deduplicated and filled.
  Florence-2 is not supported: it needs `trust_remote_code` (code from the model folder), which the engine
  does not run.

Anything else is a `DescriberError` that says what was expected (no local paths in it).
`create_tiny_blip(out_dir)` writes a tiny random BLIP with a WordPiece tokenizer built offline from CLIP's
vocabulary (models/clip-bpe), so the BLIP path is tested without a download; its captions are random words.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Protocol

from PIL import Image

from bot.engine.requests import EngineError

PROMPT_COUNT = 4
MAX_PROMPT_CHARS = 300
SHAPES_CONFIG = "describer.json"
SHAPES_KIND = "dreamgrid-shapes-describer"
EXPECTED = (f"a describer folder: the shapes describer ({SHAPES_CONFIG} and describer.safetensors, "
            "written by `dreamgrid models train-describer`) or a transformers BLIP captioning model "
            '(config.json with model_type "blip" and its processor files)')
# Captions a BLIP is asked to continue after its own beams, and what fills in when it repeats itself.
BLIP_PREFIXES = ("a picture of", "an illustration of", "a photo of", "a drawing of", "a painting of")
FILLERS = ("a picture", "an illustration", "a photo", "an image")


class DescriberError(EngineError):
    """A folder that is not a describer, or one that cannot be loaded; the message is safe to show."""


class Describer(Protocol):
    def describe(self, image: Image.Image) -> list[str]:
        """Exactly four distinct, non-empty prompts (stripped, at most MAX_PROMPT_CHARS characters)."""


def clean_prompts(candidates, fillers=FILLERS, count: int = PROMPT_COUNT) -> list[str]:
    """`count` distinct prompts from `candidates` (in order): whitespace collapsed, stripped, cut to
    MAX_PROMPT_CHARS at a word; empty ones and repeats (case-insensitive) dropped; `fillers` fill the rest,
    and, if they do too, numbered variants of the first."""
    out, seen = [], set()

    def add(text: str) -> None:
        text = re.sub(r"\s+", " ", str(text)).strip()
        if len(text) > MAX_PROMPT_CHARS:
            cut = text[:MAX_PROMPT_CHARS + 1]
            text = cut[: cut.rfind(" ")] if " " in cut else cut[:MAX_PROMPT_CHARS]
            text = text.rstrip(" ,;")
        key = text.casefold()
        if text and key not in seen and len(out) < count:
            seen.add(key)
            out.append(text)

    for text in candidates:
        add(text)
    for text in fillers:
        add(text)
    n = 2
    while len(out) < count:
        add(f"{out[0][:MAX_PROMPT_CHARS - 4]} {n}" if out else f"an image {n}")
        n += 1
    return out


class Describers:
    """The describers one device holds (the in-process pool's first device, or a Ray replica's), each loaded on
    first use and kept; one description at a time (a captioner is not thread-safe)."""

    def __init__(self, models_dir: Path, device: str) -> None:
        self.models_dir = Path(models_dir)
        self.device = device
        self._loaded: dict[str, Describer] = {}
        self._lock = threading.Lock()

    def describe(self, name: str, image: Image.Image) -> list[str]:
        """Four prompts for `image` by the describer folder `name` (under the models dir); DescriberError if
        there is none there."""
        with self._lock:
            describer = self._loaded.get(name)
            if describer is None:
                describer = self._loaded[name] = load_describer(self.models_dir / name, self.device)
            return list(describer.describe(image))


def load_describer(folder: Path, device: str = "cpu") -> Describer:
    """The describer in `folder`, on `device`; a DescriberError if the folder holds none."""
    folder = Path(folder)
    shapes_config = _read_json(folder / SHAPES_CONFIG)
    if shapes_config is not None:
        if shapes_config.get("kind") != SHAPES_KIND:
            raise DescriberError(f"{SHAPES_CONFIG} does not describe a shapes describer; expected {EXPECTED}")
        return _ShapesAdapter(folder, device)
    config = _read_json(folder / "config.json")
    if config is not None and config.get("model_type") == "blip":
        return BlipDescriber(folder, device)
    if config is not None and str(config.get("model_type", "")).startswith("florence"):
        raise DescriberError("Florence-2 is not supported (it needs trust_remote_code, which the engine does not "
                             f"run); expected {EXPECTED}")
    found = f'a model of type "{config.get("model_type")}"' if config and config.get("model_type") else \
        ("no describer" if folder.is_dir() else "nothing there")
    raise DescriberError(f"not a describer: found {found}; expected {EXPECTED}")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DescriberError(f"{path.name} cannot be read ({type(error).__name__}); expected {EXPECTED}") from None
    if not isinstance(value, dict):
        raise DescriberError(f"{path.name} is not a JSON object; expected {EXPECTED}")
    return value


class _ShapesAdapter:
    """The shapes describer behind the Describer protocol (its prompts checked like any describer's)."""

    def __init__(self, folder: Path, device: str):
        from bot.shapes.describer import load

        try:
            self.describer = load(folder, device)
        except Exception as error:  # noqa: BLE001 - any failure to load is the same answer
            raise DescriberError(f"the shapes describer cannot be loaded ({type(error).__name__}); "
                                 "write it again with `dreamgrid models train-describer`") from None

    def read(self, image: Image.Image):
        return self.describer.read([image])[0]

    def describe(self, image: Image.Image) -> list[str]:
        return clean_prompts(self.describer.describe(image))


class BlipDescriber:
    """A transformers BLIP captioner: four captions for a picture."""

    def __init__(self, folder: Path, device: str = "cpu", max_new_tokens: int = 30):
        import torch
        from transformers import BlipForConditionalGeneration, BlipProcessor

        try:
            self.processor = BlipProcessor.from_pretrained(str(folder), local_files_only=True)
            self.model = BlipForConditionalGeneration.from_pretrained(str(folder), local_files_only=True)
        except Exception as error:  # noqa: BLE001 - any failure to load is the same answer
            raise DescriberError(f"the BLIP model cannot be loaded ({type(error).__name__}); "
                                 f"expected {EXPECTED}") from None
        dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        self.model.to(device=device, dtype=dtype).eval()
        self.device, self.dtype, self.max_new_tokens = device, dtype, max_new_tokens

    def _generate(self, image: Image.Image, prefix: str | None, beams: int) -> list[str]:
        import torch

        inputs = self.processor(images=image, text=prefix, return_tensors="pt")
        inputs = {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        with torch.no_grad():
            ids = self.model.generate(**inputs, num_beams=beams, num_return_sequences=beams,
                                      max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(ids, skip_special_tokens=True)

    def describe(self, image: Image.Image) -> list[str]:
        image = _rgb(image)
        candidates = self._generate(image, None, PROMPT_COUNT)
        for prefix in BLIP_PREFIXES:
            if len({c.strip().casefold() for c in candidates if c.strip()}) >= PROMPT_COUNT:
                break
            candidates += self._generate(image, prefix, 1)
        return clean_prompts(candidates)


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA", "P"):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


# --------------------------------------------------------------------------------------------------
# A tiny random BLIP for tests


def build_wordpiece_tokenizer(out_dir: Path, size: int = 3000):
    """A BERT-style (WordPiece, uncased) tokenizer as BLIP uses, built offline: [PAD] [UNK] [CLS] [SEP] [MASK],
    BLIP's [DEC] (its captions' first token) and [ENC], every letter, digit and punctuation mark alone and as
    a "##" piece, then CLIP's commonest words and word pieces (models/clip-bpe), `size` tokens at most."""
    import string

    from transformers import BertTokenizerFast

    from bot.engine.tokenizer import t5_pieces

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = specials + chars + ["##" + c for c in chars]
    seen = set(tokens)
    for piece in t5_pieces():
        if len(tokens) >= size:
            break
        word = piece.removeprefix("▁")
        if not word or not all(c.isalnum() for c in word) or word != word.lower():
            continue
        token = word if piece.startswith("▁") else "##" + word
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = out_dir / "vocab.txt"
    vocab_file.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    tokenizer = BertTokenizerFast(str(vocab_file), do_lower_case=True, bos_token="[DEC]",
                                  additional_special_tokens=["[ENC]"], model_max_length=512)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def create_tiny_blip(out_dir: Path, seed: int = 0, image_size: int = 32) -> Path:
    """Write a tiny random BlipForConditionalGeneration with its BlipProcessor to `out_dir` (well under 1 MB)."""
    import tempfile

    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

    from bot.engine.folders import replaced_on_success

    try:
        from transformers import BlipImageProcessorPil as ImageProcessor  # no torchvision needed
    except ImportError:  # pragma: no cover - older transformers
        from transformers import BlipImageProcessor as ImageProcessor

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as work:
        tokenizer = build_wordpiece_tokenizer(Path(work))
    text = dict(vocab_size=len(tokenizer), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                projection_dim=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
                bos_token_id=tokenizer.convert_tokens_to_ids("[DEC]"), eos_token_id=tokenizer.sep_token_id,
                sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, projection_dim=32, num_hidden_layers=2,
                  num_attention_heads=2, image_size=image_size, patch_size=8)
    config = BlipConfig(text_config=text, vision_config=vision, projection_dim=32, image_text_hidden_size=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    image_processor = ImageProcessor(size={"height": image_size, "width": image_size})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)
    with replaced_on_success(out_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
    return out_dir
