"""Tiny randomly initialised CLIP and SigLIP checkpoints, written with transformers itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

_TEXT = """a an the of image picture photo icon digit number numeral handwritten written by
hand scanned small hand-drawn zero one two three four five six seven eight nine 0 1 2 3 4 5 6 7
8 9 cat dog , ."""
WORDS = tuple(_TEXT.split())
CLIP_SPECIAL = ("<|startoftext|>", "<|endoftext|>", "[UNK]")
SIGLIP_SPECIAL = ("<pad>", "</s>", "[UNK]")
MAX_LEN = 16
IMAGE = 32
CLIP_SCALE = math.log(50.0)  # not CLIP's init value: the test sees it came from the weights
SIGLIP_SCALE, SIGLIP_BIAS = math.log(12.0), -7.5


def make_tokenizer(special: tuple[str, ...], template: str):
    """A lower-casing word-level tokenizer with a ``template`` post-processor."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel

    vocab = {token: i for i, token in enumerate([*special, *WORDS])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokens = [t for t in special if t in template]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in tokens]
    )
    return tokenizer, vocab


def make_clip(directory: Path, seed: int = 0) -> Path:
    """A CLIPModel (hidden 32, 2 layers, 32-px images, 8-px patches) with tokenizer and
    preprocessing; the tokenizer pads with its end token, as OpenAI's CLIP does."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tokenizer, vocab = make_tokenizer(CLIP_SPECIAL, "<|startoftext|> $A <|endoftext|>")
    text = dict(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LEN, bos_token_id=0, eos_token_id=1,
        pad_token_id=1,
    )  # fmt: skip
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE, patch_size=8,
    )  # fmt: skip
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    with torch.no_grad():
        model.logit_scale.fill_(CLIP_SCALE)
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    _tokenizer_config(directory, pad="<|endoftext|>", bos="<|startoftext|>", eos="<|endoftext|>")
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
    ).save_pretrained(directory)
    return directory


def make_siglip(directory: Path, seed: int = 0) -> Path:
    """A SiglipModel of the same size; its tokenizer appends ``</s>`` and pads to 16 tokens."""
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(seed)
    tokenizer, vocab = make_tokenizer(SIGLIP_SPECIAL, "$A </s>")
    text = dict(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_LEN, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=IMAGE, patch_size=8,
    )  # fmt: skip
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
    with torch.no_grad():
        for module in model.modules():  # SigLIP's init leaves some weights at zero
            for param in module.parameters(recurse=False):
                param.normal_(0, 0.1)
        model.logit_scale.fill_(SIGLIP_SCALE)
        model.logit_bias.fill_(SIGLIP_BIAS)
    model.save_pretrained(directory)
    tokenizer.save(str(directory / "tokenizer.json"))
    _tokenizer_config(directory, pad="<pad>", eos="</s>")
    SiglipImageProcessor(size={"height": IMAGE, "width": IMAGE}).save_pretrained(directory)
    return directory


def _tokenizer_config(directory: Path, **tokens: str) -> None:
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": MAX_LEN}
    config |= {f"{name}_token": token for name, token in tokens.items()}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


def hf_text_inputs(directory: Path, texts: list[str], siglip: bool = False) -> dict:
    """What the Hugging Face tokenizer gives (the reference the towers must match)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    padding = "max_length" if siglip else True
    batch = tokenizer(
        texts, padding=padding, truncation=True, max_length=MAX_LEN, return_tensors="pt"
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def features(output) -> torch.Tensor:
    """``get_*_features`` output as a tensor (transformers 5 returns a model output)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
