import numpy as np
import pytest
import torch
from PIL import Image

from jointspace.data import ImageError, ImageTransform, load_image


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_becomes_white(tmp_path):
    image = Image.new("P", (3, 3), 0)
    image.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "p.png", transparency=0)
    loaded = load_image(tmp_path / "p.png")
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (200, 0, 0)


def test_cmyk_and_grayscale_become_rgb(tmp_path):
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    red = load_image(tmp_path / "c.jpg").getpixel((0, 0))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    Image.new("L", (2, 2), 90).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").getpixel((0, 0)) == (90, 90, 90)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").size == (2, 4)


def test_unreadable_image_names_the_file(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"bad.png: unreadable or corrupt image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageError, match=r"gone.png: file not found"):
        load_image(tmp_path / "gone.png")


def test_transform_shape_and_normalisation():
    out = ImageTransform(size=8)(Image.new("RGB", (20, 12), (255, 255, 255)))
    assert out.shape == (3, 8, 8) and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))  # (1 - 0.5) / 0.5


def test_center_crop_keeps_the_middle():
    array = np.zeros((8, 16, 3), dtype=np.uint8)
    array[:, 4:12] = 255  # a white band in the middle of a wide image
    out = ImageTransform(size=8, mean=(0, 0, 0), std=(1, 1, 1))(Image.fromarray(array))
    assert out.min() > 0.9  # only the white middle survives the crop


def test_augmentation_is_deterministic_per_generator():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), np.uint8))
    transform = ImageTransform(size=8)
    first = transform(image, np.random.default_rng(1))
    assert torch.equal(first, transform(image, np.random.default_rng(1)))
    assert not torch.equal(first, transform(image, np.random.default_rng(2)))
    assert torch.equal(transform(image), transform(image))


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big.png: 300×300 pixels exceeds the limit of 50000"):
        load_image(tmp_path / "big.png", max_pixels=50_000)
    assert load_image(tmp_path / "big.png", max_pixels=90_000).size == (300, 300)


def test_pillow_bomb_guard_also_gives_a_clear_error(tmp_path, monkeypatch):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # Pillow refuses > 2× this
    with pytest.raises(ImageError, match=r"big.png: 90000 pixels exceeds Pillow's decompression"):
        load_image(tmp_path / "big.png")


def test_truncated_file_fails_even_if_pillow_is_told_to_be_lenient(tmp_path, monkeypatch):
    from PIL import ImageFile

    array = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    Image.fromarray(array).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match=r"cut.png: unreadable or corrupt image"):
        load_image(tmp_path / "cut.png")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


def test_sixteen_bit_grayscale_keeps_its_brightness(tmp_path):
    Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)).save(tmp_path / "w.png")
    Image.fromarray(np.full((2, 2), 257 * 40, dtype=np.uint16)).save(tmp_path / "d.png")
    assert load_image(tmp_path / "w.png").getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "d.png").getpixel((0, 0)) == (40, 40, 40)


def test_float_image_in_unit_range_is_scaled(tmp_path):
    image = Image.fromarray(np.full((2, 2), 0.5, dtype=np.float32), mode="F")
    assert load_image(image).getpixel((0, 0)) == (128, 128, 128)


def test_transform_accepts_non_rgb_images():
    out = ImageTransform(size=4)(Image.new("L", (6, 6), 255))
    assert out.shape == (3, 4, 4) and torch.allclose(out, torch.ones_like(out))


def test_augmented_output_stays_in_the_normalised_range():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), np.uint8))
    out = ImageTransform(size=8)(image, np.random.default_rng(5))
    assert out.shape == (3, 8, 8) and out.min() >= -1 and out.max() <= 1


def png_claiming(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header claims ``width``×``height`` pixels (CRC fixed, data left as is)."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def real_png_bomb(width: int, height: int) -> bytes:
    """A genuine grayscale PNG of zeros: tiny on disk, ``width×height`` bytes once decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def refused_fast(source, pattern, **kwargs):
    import time

    start = time.perf_counter()
    with pytest.raises(ImageError, match=pattern):
        load_image(source, **kwargs)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    ("width", "height", "pattern"),
    [
        (1, 20_000, r"1×20000 pixels: aspect ratio over the limit of 50:1"),
        (2_000_000, 1, r"2000000×1 pixels: aspect ratio over the limit of 50:1"),
        (20_000, 20_000, r"400000000 pixels exceeds Pillow's decompression-bomb limit"),
        (24_960, 24_960, r"623001600 pixels exceeds Pillow's decompression-bomb limit"),
        (8_000, 7_000, r"8000×7000 pixels exceeds the limit of 50000000"),
    ],
)
def test_slivers_and_bombs_are_refused_from_the_header(tmp_path, width, height, pattern):
    path = tmp_path / "claims.png"
    path.write_bytes(png_claiming(width, height))
    refused_fast(path, rf"claims.png: {pattern}")
    refused_fast(path.read_bytes(), rf"^uploaded image: {pattern}")


def test_a_real_bomb_is_refused_before_decoding(tmp_path):
    data = real_png_bomb(8_000, 8_000)  # 64 M pixels in about 60 kB
    assert len(data) < 100_000
    (tmp_path / "bomb.png").write_bytes(data)
    refused_fast(tmp_path / "bomb.png", r"bomb.png: 8000×8000 pixels exceeds the limit of 50000000")


def test_a_sliver_within_the_aspect_limit_still_loads(tmp_path):
    Image.new("RGB", (50, 1), "red").save(tmp_path / "ok.png")
    assert load_image(tmp_path / "ok.png").size == (50, 1)
    assert ImageTransform(size=8)(load_image(tmp_path / "ok.png")).shape == (3, 8, 8)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "unreadable or corrupt image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "unreadable or corrupt image"),
        (b"GIF89a" + bytes(range(256)) * 4, "unreadable or corrupt image"),
    ],
)
def test_bad_bytes_name_the_file_and_leak_no_repr(tmp_path, data, reason):
    (tmp_path / "bad.png").write_bytes(data)
    for source, name in (
        (tmp_path / "bad.png", str(tmp_path / "bad.png")),
        (data, "uploaded image"),
    ):
        with pytest.raises(ImageError) as caught:
            load_image(source)
        assert str(caught.value).startswith(f"{name}: {reason}")
        assert " at 0x" not in str(caught.value) and "<" not in str(caught.value)


def test_a_folder_is_not_an_image(tmp_path):
    with pytest.raises(ImageError, match="is a folder, not an image file"):
        load_image(tmp_path)


def tiny_image_model():
    from conftest import tiny_config
    from jointspace.models.build import build_model

    torch.manual_seed(0)
    return build_model(tiny_config().model, corpus=["a handwritten 7", "the digit one"])


def test_encode_takes_arrays_pil_images_bytes_and_paths_alike(tmp_path):
    model = tiny_image_model()
    pixels = np.random.default_rng(0).integers(0, 255, (20, 24, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    from_path = model.encode([tmp_path / "a.png"], "image")
    inputs = [
        pixels,
        pixels.astype(np.float32) / 255,
        Image.fromarray(pixels),
        (tmp_path / "a.png").read_bytes(),
    ]
    for given in inputs:
        np.testing.assert_allclose(model.encode([given], "image"), from_path, atol=1e-6)
    gray = pixels[:, :, 0]
    np.testing.assert_allclose(
        model.encode([gray], "image"), model.encode([Image.fromarray(gray)], "image"), atol=1e-6
    )


@pytest.mark.parametrize(
    ("array", "pattern"),
    [
        (np.zeros((4, 4, 2), np.uint8), r"expected an H×W, H×W×3 or H×W×4 array, got shape"),
        (np.zeros(16, np.uint8), r"expected an H×W, H×W×3 or H×W×4 array"),
        (np.full((4, 4), np.nan, np.float32), r"the array holds NaN or infinite values"),
        (np.full((4, 4), 2.0), r"float pixel values must lie in \[0, 1\]"),
        (np.zeros((4, 4), np.int64), r"pixel type int64"),
        (np.zeros((1, 20_000), np.uint8), r"20000×1 pixels: aspect ratio over the limit of 50:1"),
        (np.zeros((0, 4), np.uint8), r"4×0 pixels: the image is empty"),
    ],
)
def test_bad_arrays_are_image_errors(array, pattern):
    with pytest.raises(ImageError, match=rf"^image array: {pattern}"):
        tiny_image_model().encode([array], "image")


def test_arrays_use_the_feature_cache_of_a_frozen_tower(tmp_path):
    from jointspace.models.feature_cache import FeatureCache

    model = tiny_image_model()
    tower = model.towers["image"]
    tower.locked, tower.unlocked = True, [tower.head]
    model.feature_cache = FeatureCache(tmp_path / "cache", progress=False)
    pixels = np.random.default_rng(1).integers(0, 255, (16, 16, 3), np.uint8)
    first = model.encode([pixels], "image")
    assert (model.feature_cache.misses, model.feature_cache.hits) == (1, 0)
    again = model.encode([pixels.copy(), Image.fromarray(pixels)], "image")
    assert model.feature_cache.hits == 1  # the same array content hits; a PIL image has its key
    np.testing.assert_allclose(again, np.concatenate([first, first]), atol=1e-6)
