"""Two-stream co-attention: padding never matters, a stream alone still answers, XOR is learned."""

import pytest
import torch
from test_fusion import DIMS, inputs, padded, xor_scores

from jointspace.config import ConfigError, PartConfig
from jointspace.models.coattention import CoAttentionFusion
from jointspace.models.fusion import AttentionFusion, build_fusion_head


def two(**params):
    return build_fusion_head(PartConfig(name="attention", params={"stream": "two", **params}), DIMS)


def test_stream_chooses_the_head_and_single_is_todays_attention():
    torch.manual_seed(0)
    single = build_fusion_head(PartConfig(name="attention", params={"stream": "single"}), DIMS)
    torch.manual_seed(0)
    default = build_fusion_head(PartConfig(name="attention", params={"width": 128}), DIMS)
    torch.manual_seed(0)
    direct = AttentionFusion(DIMS).eval()
    assert type(single) is AttentionFusion and type(default) is AttentionFusion
    assert isinstance(two(width=16), CoAttentionFusion)
    given = inputs()
    with torch.no_grad():
        expected, _ = direct(given)
        for head in (single.eval(), default.eval()):
            torch.testing.assert_close(head(given)[0], expected, atol=0, rtol=0)
    with pytest.raises(ConfigError, match="stream 'single' or 'two', not 'three'"):
        build_fusion_head(PartConfig(name="attention", params={"stream": "three"}), DIMS)
    with pytest.raises(ConfigError, match="not divisible"):
        two(width=10, heads=4)


@pytest.mark.parametrize("drop", [None, "image", "text"])
def test_padding_tokens_never_change_the_two_stream_output(drop):
    torch.manual_seed(0)
    head = two(width=16, depth=2).eval()
    given = {m: v for m, v in inputs(lengths=(4, 3)).items() if m != drop}
    # Ragged rows: row 1 keeps fewer text tokens, row 2 no image tokens but the CLS.
    text, keep = given.get("text", (None, None))
    if text is not None:
        keep = keep.clone()
        keep[1, 2:] = False
        given["text"] = (torch.where(keep.unsqueeze(-1), text, torch.full_like(text, 1e3)), keep)
    if "image" in given:
        image, keep = given["image"]
        keep = keep.clone()
        keep[2] = False
        given["image"] = (image, keep)
    with torch.no_grad():
        plain, used = head(given)
        with_padding, _ = head(padded(given))
        trimmed = {m: (s.clone(), k) for m, (s, k) in given.items()}
        for states, keep in trimmed.values():  # other garbage where keep is False
            states[~keep] = -7.0
        changed, _ = head(trimmed)
    assert used == [m for m in ("image", "text") if m != drop] and plain.shape == (4, 16)
    assert torch.isfinite(plain).all()
    torch.testing.assert_close(with_padding, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(changed, plain, atol=1e-5, rtol=1e-5)


def test_co_attention_is_what_carries_the_other_modality():
    """With both given, a stream's CLS output depends on the other modality's tokens."""
    torch.manual_seed(0)
    head = two(width=16).eval()
    given = inputs()
    other = dict(given, image=(given["image"][0] + 1.0, given["image"][1]))
    with torch.no_grad():
        cls_text = head.streams["text"][0](*_text_stream(head, given))
        cls_text_other = head.streams["text"][0](*_text_stream(head, other))
    assert not torch.allclose(cls_text[:, 0], cls_text_other[:, 0])


def _text_stream(head, given):
    """The text stream's layer-0 inputs: its tokens after CLS, padding, and the image context."""
    streams = {}
    for m, (states, keep) in given.items():
        cls = head.cls[head.modalities.index(m)].expand(states.shape[0], 1, -1)
        tokens = torch.cat([cls, head.project[m](states)], 1)
        mask = ~torch.cat([torch.ones_like(keep[:, :1]), keep], 1)
        streams[m] = (tokens, mask)
    return (*streams["text"], *streams["image"])


def test_two_stream_learns_what_neither_modality_tells_alone():
    scores = xor_scores(lambda: two(width=32), steps=200)
    assert scores["both"] >= 0.85, scores
    assert scores["text"] <= 0.65, scores
