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


def test_token_states_pool_to_the_towers_features():
    from jointspace.encoders.text import TextTransformer

    torch.manual_seed(0)
    text = TextTransformer(12, train_wordpiece(CORPUS, 200, 16), width=16, depth=1, heads=2)
    ids = text.collate(["the digit seven", "a 7"])
    states, mask = text.tokens(ids)
    assert states.shape == (2, 5, 16) and mask.sum(1).tolist() == [5, 4]
    mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(mean, text.pooled(ids), atol=1e-6)
    images = torch.randn(2, 3, 16, 16)
    cnn = build("encoder", "cnn", embed_dim=12, image_size=16, widths=[8, 16])
    states, mask = cnn.tokens(images)
    assert states.shape == (2, 64, 16) and mask.all()  # an 8×8 map, read row by row
    assert torch.allclose(states.mean(1), cnn.pooled(images), atol=1e-6)
    vit = build("encoder", "vit", embed_dim=12, image_size=16, patch_size=8, width=16, depth=1)
    states, _ = vit.tokens(images)
    assert states.shape == (2, 5, 16) and torch.equal(states[:, 0], vit.pooled(images))


def test_conv_backbones_expose_their_feature_maps_as_tokens():
    from jointspace.encoders.audio import AudioCNN
    from jointspace.encoders.efficientnet import EfficientNetLite0, EfficientNetTower

    torch.manual_seed(0)
    net = EfficientNetTower(12, EfficientNetLite0(), image_size=64).eval()
    images = torch.randn(2, 3, 64, 64)
    states, mask = net.tokens(images)
    assert states.shape == (2, 4, 1280) and mask.all()  # 64 px / 32 = a 2×2 map
    assert torch.allclose(states.mean(1), net.pooled(images), atol=1e-5)
    audio = AudioCNN(12, seconds=0.5, widths=[8, 16]).eval()
    waves = torch.randn(2, 8000)
    states, mask = audio.tokens(waves)
    assert states.shape[0] == 2 and states.shape[2] == 16 and mask.all()
    assert torch.allclose(states.mean(1), audio.pooled(waves), atol=1e-5)
