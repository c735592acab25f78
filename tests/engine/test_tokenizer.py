"""The offline-built tokenizer must give the ids CLIP's text encoders were trained with."""

import gzip

import pytest
import regex
from transformers import CLIPTokenizer

from bot.engine.tokenizer import CLIP_MERGES, DEFAULT_BPE_PATH, build_clip_tokenizer, bytes_to_unicode

PROMPTS = [
    "a red circle",
    "A photo of an astronaut riding a horse on Mars, 4k, highly detailed!",
    "don't   stop -- it's 1999's \"best\" café",
    "naïve façade, 東京 at night",
]


class ReferenceClipTokenizer:
    """A transcription of CLIP's SimpleTokenizer (open_clip), minus its ftfy/html clean-up."""

    def __init__(self):
        with gzip.open(DEFAULT_BPE_PATH, "rt", encoding="utf-8") as file:
            merges = [tuple(line.split()) for line in file.read().split("\n")[1 : CLIP_MERGES + 1]]
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(merges, range(len(merges))))
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    def bpe(self, token):
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text):
        text = " ".join(text.split()).lower()
        ids = [self.encoder["<|startoftext|>"]]
        for token in self.pattern.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids += [self.encoder[piece] for piece in self.bpe(token)]
        return ids + [self.encoder["<|endoftext|>"]]


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    return build_clip_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_known_ids(clip_tokenizer):
    assert clip_tokenizer("a red circle").input_ids == [49406, 320, 736, 7117, 49407]
    assert len(clip_tokenizer) == 49408
    assert clip_tokenizer.model_max_length == 77


def test_matches_clips_own_algorithm(clip_tokenizer):
    reference = ReferenceClipTokenizer()
    for prompt in PROMPTS:
        assert clip_tokenizer(prompt).input_ids == reference.encode(prompt), prompt


def test_saved_tokenizer_reloads_identically(clip_tokenizer, tmp_path):
    build_clip_tokenizer(tmp_path)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    reloaded = CLIPTokenizer.from_pretrained(tmp_path)
    for prompt in PROMPTS:
        assert reloaded(prompt).input_ids == clip_tokenizer(prompt).input_ids
    padded = reloaded("a cat", padding="max_length", max_length=reloaded.model_max_length).input_ids
    assert len(padded) == 77 and padded[-1] == reloaded.pad_token_id == 49407


def test_truncated_vocabulary_keeps_the_first_merges(clip_tokenizer, tmp_path):
    small = build_clip_tokenizer(tmp_path, max_merges=300)
    assert len(small) == 512 + 300 + 2
    assert (small.bos_token_id, small.eos_token_id) == (812, 813)
    # Byte symbols and early merges ("a</w>" = 320) keep CLIP's ids.
    assert small("a red circle").input_ids[:2] == [812, 320]
    assert max(small("a red circle").input_ids) == 813


def test_rejects_more_merges_than_clip_has(tmp_path):
    with pytest.raises(ValueError, match="max_merges"):
        build_clip_tokenizer(tmp_path, max_merges=CLIP_MERGES + 1)
