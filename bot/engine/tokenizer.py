"""A real CLIPTokenizer built offline from OpenAI CLIP's BPE vocabulary (models/clip-bpe).

The vocabulary is rebuilt exactly the way CLIP's own SimpleTokenizer (open_clip) does it, so token ids
match every Stable Diffusion text encoder: 256 byte symbols, the same with '</w>', one token per merge,
then <|startoftext|> and <|endoftext|>.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

from transformers import CLIPTokenizer

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BPE_PATH = REPO_ROOT / "models" / "clip-bpe" / "bpe_simple_vocab_16e6.txt.gz"

# CLIP keeps the first 49152 - 256 - 2 merges of the file: 49408 tokens in all.
CLIP_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable unicode character, as in GPT-2 and CLIP (so BPE never sees whitespace/control bytes)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes)))


def clip_vocab_and_merges(
    bpe_path: Path = DEFAULT_BPE_PATH, max_merges: int | None = None
) -> tuple[dict[str, int], list[str]]:
    """CLIP's token -> id map and its merge lines ("a b"), optionally keeping only the first `max_merges`."""
    if max_merges is not None and not 0 <= max_merges <= CLIP_MERGES:
        raise ValueError(f"max_merges must be in 0..{CLIP_MERGES}, got {max_merges}")
    with gzip.open(bpe_path, "rt", encoding="utf-8") as file:
        lines = file.read().split("\n")
    merges = lines[1 : CLIP_MERGES + 1]  # line 0 is the "#version" header
    if max_merges is not None:
        merges = merges[:max_merges]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [BOS, EOS]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ValueError(f"{bpe_path}: duplicate tokens; is this CLIP's bpe_simple_vocab_16e6.txt.gz?")
    return vocab, merges


def build_clip_tokenizer(
    out_dir: Path,
    bpe_path: Path = DEFAULT_BPE_PATH,
    max_merges: int | None = None,
    model_max_length: int = 77,
) -> CLIPTokenizer:
    """Write vocab.json + merges.txt to `out_dir`, load them as a CLIPTokenizer and save_pretrained it there.

    The full vocabulary has 49408 tokens; with `max_merges` it has 512 + max_merges + 2, and the ids of
    the tokens it keeps are the same as CLIP's except for the two special tokens, which come last.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocab_and_merges(Path(bpe_path), max_merges)
    vocab_file = out_dir / "vocab.json"
    merges_file = out_dir / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "".join(merge + "\n" for merge in merges), encoding="utf-8")
    # model_max_length matters: Stable Diffusion pads every prompt to it (77 for CLIP's text encoder).
    tokenizer = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=model_max_length)
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def t5_pieces(bpe_path: Path = DEFAULT_BPE_PATH) -> list[str]:
    """SentencePiece-style pieces from CLIP's vocabulary: a word token ("cat</w>") becomes "▁cat" (a word
    start), a fragment stays as it is. ASCII only: T5's own vocabulary is mostly English too."""
    vocab, _ = clip_vocab_and_merges(bpe_path)
    pieces, seen = [], set()
    for token in vocab:
        if token in (BOS, EOS):
            continue
        word = token.removesuffix("</w>")
        if not (word.isascii() and word.isprintable()):
            continue
        piece = "▁" + word if token.endswith("</w>") else word
        if piece not in seen:
            seen.add(piece)
            pieces.append(piece)
    return pieces


def build_t5_tokenizer(out_dir: Path, bpe_path: Path = DEFAULT_BPE_PATH, model_max_length: int = 512):
    """A T5TokenizerFast (SentencePiece unigram, as FLUX's and SD3's T5 encoders use) built offline.

    Google's spiece.model cannot be downloaded here, so the pieces come from CLIP's vocabulary, scored by
    merge order (earlier merges are commoner words). Special tokens sit where T5 has them: <pad> 0, </s> 1,
    <unk> 2, and every encoding ends with </s>. Ids differ from Google's T5, so this tokenizer goes with
    the random-weight text encoders built here, never with a downloaded one.
    """
    import math

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    scored = [(token, 0.0) for token in specials]
    scored += [(piece, -math.log(2 + rank)) for rank, piece in enumerate(t5_pieces(Path(bpe_path)))]
    backend = Tokenizer(models.Unigram(scored, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Replace(" {2,}", " ")
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=backend, eos_token="</s>", unk_token="<unk>",
                                pad_token="<pad>", extra_ids=0, model_max_length=model_max_length)
    tokenizer.save_pretrained(Path(out_dir))
    return tokenizer


# Qwen's chat template, as far as a text encoder needs it: Z-Image wraps each prompt as a user turn and
# opens the assistant's.
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)


def build_qwen_tokenizer(out_dir: Path, bpe_path: Path = DEFAULT_BPE_PATH, vocab_size: int = 8192,
                         model_max_length: int = 512):
    """A Qwen2TokenizerFast (byte-level BPE with Qwen's special tokens and chat template), built offline.

    Qwen's own vocabulary cannot be downloaded here, so a BPE of `vocab_size` tokens is trained on the words
    of CLIP's vocabulary (deterministic: the same input gives the same merges). Like the T5 one, it goes with
    the random-weight text encoders built here only.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    backend.train_from_iterator([piece.replace("▁", " ") for piece in t5_pieces(Path(bpe_path))], trainer=trainer)
    tokenizer = Qwen2TokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token=None, model_max_length=model_max_length)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    tokenizer.save_pretrained(Path(out_dir))
    return tokenizer
