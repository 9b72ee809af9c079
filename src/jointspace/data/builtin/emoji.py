"""Built-in ``emoji``: every RGI emoji rendered from Noto Color Emoji, captioned with CLDR names.

Sources are Debian packages (no download at run time): glyphs from ``fonts-noto-color-emoji``,
names and group/subgroup from ``unicode-data`` (emoji-test.txt), keywords from
``unicode-cldr-core`` (CLDR annotations).
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from jointspace.atomic import atomic_dir
from jointspace.data.builtin.target import dataset_dir, reuse_or_check
from jointspace.errors import MissingPackageError

FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
CLDR = Path("/usr/share/unicode/cldr/common")
SOURCES = {FONT: "fonts-noto-color-emoji", EMOJI_TEST: "unicode-data", CLDR: "unicode-cldr-core"}
FONT_SIZE = 109  # the only size Noto Color Emoji's bitmap strikes come in
SKIPPED_GROUPS = ("Component",)  # bare skin-tone and hair swatches, not emoji on their own
HELD_OUT_FRACTION = 0.1
FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
SEED = 0
GENDER_WORDS = re.compile(r"\b(man|woman|men|women|person|people|boy|girl)\b")


@dataclass(frozen=True)
class Emoji:
    """One fully-qualified emoji with its CLDR name, keywords and subgroup."""

    chars: str
    name: str
    keywords: tuple[str, ...]
    group: str
    subgroup: str

    @property
    def family(self) -> str:
        """Skin-tone and gender variants share a family, so they always share a split."""
        base = GENDER_WORDS.sub("", self.name.split(":")[0])
        return f"{self.subgroup}/{' '.join(base.split())}"


def check_sources() -> None:
    """Name the Debian packages to install when a source file is missing."""
    missing = [pkg for path, pkg in SOURCES.items() if not path.exists()]
    if missing:
        raise MissingPackageError(
            "the emoji dataset needs Debian packages that are not installed: "
            f"{' '.join(missing)} (run: apt-get install {' '.join(missing)}, as `make test` does)"
        )


def parse_emoji_test(path: Path = EMOJI_TEST) -> list[tuple[str, str, str, str]]:
    """(chars, name, group, subgroup) of every fully-qualified emoji, in CLDR order."""
    entries, group, subgroup = [], "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line:
            codes, comment = line.split(";")[0], line.split("#", 1)[1]
            chars = "".join(chr(int(c, 16)) for c in codes.split())
            name = comment.split(maxsplit=2)[2].strip()  # drop the glyph and "E1.0"
            entries.append((chars, name, group, subgroup))
    return entries


def parse_cldr_keywords(root: Path = CLDR) -> dict[str, tuple[str, ...]]:
    """Keywords per emoji (FE0F removed) from CLDR annotations and derived annotations."""
    keywords: dict[str, tuple[str, ...]] = {}
    for name in ("annotations/en.xml", "annotationsDerived/en.xml"):
        for node in ET.parse(root / name).getroot().iter("annotation"):
            if node.get("type") != "tts" and node.text:
                words = tuple(w.strip() for w in node.text.split("|") if w.strip())
                keywords.setdefault(node.get("cp", "").replace("\ufe0f", ""), words)
    return keywords


def load_emoji() -> list[Emoji]:
    """Every fully-qualified emoji outside the skipped groups, with its keywords."""
    check_sources()
    keywords = parse_cldr_keywords()
    return [
        Emoji(chars, name, keywords.get(chars.replace("\ufe0f", ""), ()), group, subgroup)
        for chars, name, group, subgroup in parse_emoji_test()
        if group not in SKIPPED_GROUPS
    ]


def assign_splits(emoji: list[Emoji], seed: int = SEED) -> list[str]:
    """Whole subgroups held out as ``zeroshot``; other families split 80/10/10."""
    rng = np.random.default_rng(seed)
    subgroups = sorted({e.subgroup for e in emoji})
    held = set(rng.choice(subgroups, round(HELD_OUT_FRACTION * len(subgroups)), replace=False))
    families = sorted({e.family for e in emoji if e.subgroup not in held})
    order = rng.permutation(len(families))
    cut_train = round(FRACTIONS[0][1] * len(families))
    cut_val = cut_train + round(FRACTIONS[1][1] * len(families))
    split_of = {}
    for rank, index in enumerate(order):
        split_of[families[index]] = (
            "train" if rank < cut_train else "val" if rank < cut_val else "test"
        )
    return ["zeroshot" if e.subgroup in held else split_of[e.family] for e in emoji]


def render(chars: str, font: ImageFont.FreeTypeFont, size: int) -> Image.Image | None:
    """The emoji on white, centred in a ``size``×``size`` RGB square; None if the font lacks it."""
    canvas = Image.new("RGBA", (320, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), chars, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None or box[2] - box[0] > 150:  # nothing drawn, or shaped as several glyphs
        return None
    glyph = canvas.crop(box)
    side = max(glyph.size) + 8
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2))
    return square.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def captions(e: Emoji) -> list[str]:
    """The CLDR name, and the keywords as one comma-separated caption when they add anything."""
    name = e.name.split(":")[0] if ":" in e.name and not e.keywords else e.name
    keywords = ", ".join(k for k in e.keywords if k != e.name)
    return [name] + ([keywords] if keywords else [])


def build_emoji(
    root: Path | None = None,
    *,
    force: bool = False,
    size: int = 64,
    overwrite: bool = False,
    limit: int | None = None,
) -> Path:
    """Render the dataset under ``root/emoji-SIZE`` once (atomically); return its manifest."""
    target = dataset_dir(root, f"emoji-{size}")
    if limit is not None:
        target = target.with_name(f"{target.name}-first{limit}")
    manifest = target / "manifest.csv"
    if reuse_or_check(target, force=force, overwrite=overwrite):
        return manifest
    emoji = load_emoji()
    splits = assign_splits(emoji)
    font = ImageFont.truetype(str(FONT), FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)
    rows = []
    with atomic_dir(target) as tmp:
        (tmp / "images").mkdir()
        for i, (e, split) in enumerate(list(zip(emoji, splits, strict=True))[:limit]):
            image = render(e.chars, font, size)
            if image is None:
                continue
            (tmp / "images" / f"{i:04d}.png").write_bytes(png_bytes(image))
            rows += [
                {
                    "id": f"{i:04d}-{j}",
                    "image": f"images/{i:04d}.png",
                    "text": text,
                    "label": e.subgroup,
                    "split": split,
                    "meta_emoji": e.chars,
                    "meta_group": e.group,
                }
                for j, text in enumerate(captions(e))
            ]
        pd.DataFrame(rows).to_csv(tmp / "manifest.csv", index=False, lineterminator="\n")
    return manifest
