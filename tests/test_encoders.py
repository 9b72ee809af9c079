import pytest
import torch

from jointspace.encoders.tokenizer import PAD_ID, train_wordpiece
from jointspace.registry import available, build

CORPUS = ["a handwritten 7", "the digit seven", "the number 3", "a hand-drawn 3"] * 3


def test_tokenizer_training_is_deterministic_and_covers_the_corpus():
    vocabs = [train_wordpiece(CORPUS, 200, 16).get_vocab() for _ in range(3)]
    assert vocabs[0] == vocabs[1] == vocabs[2]
    tokenizer = train_wordpiece(CORPUS, 200, 16)
    assert tokenizer.encode("the digit seven").tokens == ["[CLS]", "the", "digit", "seven", "[SEP]"]
    # an unseen word falls back to character pieces instead of [UNK]
    assert "[UNK]" not in tokenizer.encode("heaven").tokens
    assert tokenizer.token_to_id("[PAD]") == PAD_ID


def test_tokenizer_truncates_and_pads():
    tokenizer = train_wordpiece(CORPUS, 200, max_len=6)
    ids = [e.ids for e in tokenizer.encode_batch(["the digit seven the digit seven", "a 7"])]
    assert len(ids[0]) == len(ids[1]) == 6 and ids[1][-1] == PAD_ID


def test_vocab_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="below the"):
        train_wordpiece(CORPUS, vocab_size=5)


def test_registered_towers_project_to_the_shared_dimension():
    assert {"cnn", "transformer", "vit"} <= set(available("encoder"))
    for name, params in [
        ("cnn", dict(image_size=16, widths=[8, 16])),
        ("vit", dict(image_size=16, patch_size=8, width=16, depth=1, heads=2)),
    ]:
        tower = build("encoder", name, embed_dim=12, **params)
        assert tower(torch.zeros(3, 3, 16, 16)).shape == (3, 12)
    with pytest.raises(ValueError, match="not a multiple"):
        build("encoder", "vit", embed_dim=12, image_size=15, patch_size=4)
