"""WordPiece tokenizers trained on the caption corpus with the ``tokenizers`` library."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from jointspace.config import ConfigError
from jointspace.errors import ArtifactError, InputError

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
SPECIAL_TOKENS = [PAD, UNK, CLS, SEP]
PAD_ID = 0  # PAD is the first special token, so padded positions are exactly the zeros.


def train_wordpiece(
    texts: Sequence[str], vocab_size: int = 2000, max_len: int = 32, min_frequency: int = 1
) -> Tokenizer:
    """A lower-casing BERT-style WordPiece tokenizer whose vocabulary is learned from ``texts``.

    Vocabulary: the corpus' characters, then its words by frequency, then the most frequent word
    prefixes and ``##`` suffixes, so an unseen "sneakers" becomes "sneaker ##s". We count it
    ourselves because ``WordPieceTrainer`` breaks ties in hash order: two trainings on one
    corpus gave different vocabularies, and runs would not repeat.
    """
    if not texts:
        raise InputError("cannot train a tokenizer on an empty corpus")
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for word in counts for c in word})
    base = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    if vocab_size < len(base):
        raise ConfigError(f"vocab_size {vocab_size} is below the {len(base)} base tokens needed")
    words = _by_count({w: n for w, n in counts.items() if n >= min_frequency and len(w) > 1})
    pieces: Counter[str] = Counter()
    for word, n in counts.items():
        pieces.update({word[:i]: n for i in range(2, len(word))})
        pieces.update({f"##{word[i:]}": n for i in range(1, len(word) - 1)})
    ordered = dict.fromkeys(base + words + _by_count(pieces))
    vocab = {token: i for i, token in enumerate(list(ordered)[:vocab_size])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = splitter
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", special_tokens=[(CLS, vocab[CLS]), (SEP, vocab[SEP])]
    )
    return configure(tokenizer, max_len)


def _by_count(counts: dict[str, int]) -> list[str]:
    return sorted(counts, key=lambda token: (-counts[token], token))


def configure(tokenizer: Tokenizer, max_len: int) -> Tokenizer:
    """Pad to the longest in a batch and truncate to ``max_len`` tokens."""
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD)
    tokenizer.enable_truncation(max_length=max_len)
    return tokenizer


def load_tokenizer(path: Path, max_len: int) -> Tokenizer:
    """Load a tokenizer saved with ``Tokenizer.save``; a damaged file is an ``ArtifactError``."""
    return configure(read_tokenizer(path), max_len)


def read_tokenizer(path: Path) -> Tokenizer:
    """``Tokenizer.from_file`` with one clear error naming a missing or damaged file."""
    if not path.is_file():
        raise ArtifactError(f"tokenizer file not found: {path}")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for every parse error
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else "unreadable"
        raise ArtifactError(f"{path}: damaged tokenizer file ({reason})") from None
