"""How many tokens a prompt takes in a model's text encoder, counted without loading the model.

The tokenizer is the one of the text encoder that reads the whole prompt (CLIP's `tokenizer/` for SD and
SDXL, T5's for SD3 and FLUX), from the model's own folder (or its hub cache), built once per model.
Counting is CPU work in Python: callers on the event loop run it in a thread.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from bot.engine.catalog import CatalogError, ModelSpec
from bot.engine.families import Family
from bot.engine.requests import EngineError

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def _tokenizer(source: str, subfolder: str, local: bool):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, subfolder=subfolder, local_files_only=local)
    except Exception:  # no tokenizer to be had before the model loads: the engine still checks at run time
        log.warning("no tokenizer for %s; prompts are checked when the model runs", source, exc_info=True)
        return None


def prompt_tokens(spec: ModelSpec, models_dir: Path, text: str) -> int | None:
    """Tokens `text` takes, start and end tokens included (as LoadedModel.prompt_tokens); None if unknown."""
    try:
        source = spec.resolve(models_dir)
        if spec.single_file:  # its tokenizers are in the config folder it loads with
            from bot.engine.checkpoints import config_folder

            source = str(config_folder(source, spec.config, models_dir))
    except (CatalogError, EngineError):  # the model cannot load either; the job's own failure says why
        return None
    tokenizer = _tokenizer(source, spec.family.prompt_tokenizer, Path(source).is_dir())
    return None if tokenizer is None else count_tokens(tokenizer, text, spec.family)


def count_tokens(tokenizer, text: str, family: Family) -> int:
    """Tokens `text` takes as the family's pipeline feeds it to its text encoder (inside the chat template,
    for an LLM encoder), start and end tokens included."""
    if family.chat_prompt:
        text = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True, enable_thinking=True)
    return len(tokenizer(text, truncation=False).input_ids)
