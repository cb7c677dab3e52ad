"""A GPT-2-style word-level tokenizer built offline for the embedded model.

GPT-2 marks a leading space with "Ġ"; the lab relies on that (`to_single_token(" Mary")`).
A prompt's first word has no leading space, so every word is in the vocabulary twice: with and
without "Ġ". The byte-level pre-tokenizer splits text exactly as GPT-2's does.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from . import data

BOS = "<|endoftext|>"
UNK = "<|unk|>"
_PRE = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)


def corpus_words() -> list[str]:
    """Every word and punctuation mark our prompts can contain, without the space marker."""
    texts = list(data.TEMPLATES) + data.PREFIXES + data.DISTRACTOR_PREFIXES + data.NAMES + data.PLACES + data.OBJECTS
    words: set[str] = set()
    for text in texts:
        for piece, _ in _PRE.pre_tokenize_str(text):
            words.add(piece.lstrip("Ġ"))
    words.discard("")
    return sorted(w for w in words if "{" not in w and "}" not in w)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer, deterministic: the same vocabulary order on every machine."""
    vocab = {BOS: 0, UNK: 1}
    for word in corpus_words():
        for token in (word, "Ġ" + word):
            vocab.setdefault(token, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = _PRE
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS,
                                   unk_token=UNK, pad_token=BOS)


def save_tokenizer(folder: Path) -> Path:
    """Save where TransformerLens can reload it by path (it re-reads `name_or_path`)."""
    folder = Path(folder)
    build_tokenizer().save_pretrained(folder)
    return folder
