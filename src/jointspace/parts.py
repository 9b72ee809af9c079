"""Every built-in part, by kind and name, as ``"module:attribute"``: imported only when looked up.

One explicit table instead of ``@register`` lines run at import, so a documented name can never
go missing because the module that would register it was not imported.
"""

from __future__ import annotations

BUILTIN_PARTS: dict[str, dict[str, str]] = {
    "encoder": {
        "transformer": "jointspace.encoders.text:TextTransformer",
        "cnn": "jointspace.encoders.image:SmallCNN",
        "vit": "jointspace.encoders.image:SmallViT",
        "audio_cnn": "jointspace.encoders.audio:AudioCNN",
        "efficientnet_lite0": "jointspace.encoders.efficientnet:EfficientNetTower",
        "hf_text": "jointspace.encoders.pretrained_text:PretrainedText",
        "hf_clip_text": "jointspace.encoders.hf_clip:HFClipText",
        "hf_clip_image": "jointspace.encoders.hf_clip:HFClipImage",
        "hf_vision": "jointspace.encoders.hf_vision:HFVision",
    },
    "objective": {
        "clip": "jointspace.objectives.contrastive:ClipObjective",
        "siglip": "jointspace.objectives.siglip:SigLipObjective",
        "triplet": "jointspace.objectives.triplet:TripletObjective",
        "dcca": "jointspace.objectives.cca:DeepCCAObjective",
    },
    # Fusion heads of a multimodal classifier (jointspace classify): `head.name`.
    "fusion": {
        "concat": "jointspace.models.fusion:ConcatFusion",
        "gated": "jointspace.models.fusion:GatedFusion",
        "attention": "jointspace.models.coattention:attention_fusion",
        "graph": "jointspace.models.graph_fusion:GraphFusion",
    },
    "miner": {
        "all": "jointspace.objectives.miners:AllMiner",
        "hardest": "jointspace.objectives.miners:HardestMiner",
        "semi_hard": "jointspace.objectives.miners:SemiHardMiner",
    },
    "dataset": {
        "digits": "jointspace.data.builtin.digits:build_digits",
        "digits-vqa": "jointspace.data.builtin.digits_vqa:build_digits_vqa",
        "emoji": "jointspace.data.builtin.emoji:build_emoji",
        "emoji-pairs": "jointspace.data.builtin.emoji_pairs:build_emoji_pairs",
        "emoji-pairs-vqa": "jointspace.data.builtin.emoji_pairs_vqa:build_emoji_pairs_vqa",
        "spoken-digits": "jointspace.data.builtin.spoken_digits:build_spoken_digits",
        "tuxpaint": "jointspace.data.builtin.tuxpaint:build_tuxpaint",
    },
    "format": {
        "coco": "jointspace.data.formats:read_coco",
        "karpathy": "jointspace.data.formats:read_karpathy",
        "hf": "jointspace.data.formats:read_hf",
        "folder": "jointspace.data.formats:read_folder",
        "clotho": "jointspace.data.formats:read_clotho",
        "audiocaps": "jointspace.data.formats:read_audiocaps",
    },
    # Vector index back-ends, chosen by an index URI's scheme (``faiss://…``, ``milvus://…``).
    "index": {
        "faiss": "jointspace.index.backends:open_faiss",
        "milvus": "jointspace.index.backends:open_milvus",
    },
}

# How error messages name each kind in the plural.
PLURALS = {"index": "index back-ends"}
