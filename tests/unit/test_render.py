"""The render kernel: upright, sRGB, the right sizes, and one clear RenderError for a bad source."""

from __future__ import annotations

import errno
import importlib.util
import io
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageCms, ImageFile, ImageStat, JpegImagePlugin

from actors.render import Rendered, image_size, render
from domain.errors import (
    ERROR_CLASSES,
    CorruptImage,
    RenderError,
    SourceMissing,
    TooManyPixels,
    TransientIOError,
    UnsupportedFormat,
)
from domain.specs import RenditionSpec

HEIF_INSTALLED = importlib.util.find_spec("pillow_heif") is not None
CACHE = RenditionSpec("cache", 1920, 1920, "jpeg", 85)
THUMB = RenditionSpec("thumbnail", 300, 300, "jpeg", 80)
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)
# The EXIF orientation value -> the Pillow transpose that shows the stored pixels upright.
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}


@pytest.fixture
def corpus(shared_corpus: Path) -> Path:
    return shared_corpus


def decoded(rendition: Rendered) -> Image.Image:
    im = Image.open(io.BytesIO(rendition.data))
    im.load()
    return im


def near(actual: object, expected: tuple[int, ...], tolerance: int) -> bool:
    assert isinstance(actual, tuple)
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def marked_picture(size: tuple[int, int] = (800, 600)) -> Image.Image:
    """White landscape, red block top-left, blue block top-right: any turn or mirror shows."""
    width, height = size
    im = Image.new("RGB", size, WHITE)
    im.paste(RED, (0, 0, width // 4, height // 4))
    im.paste(BLUE, (width - width // 4, 0, width, height // 4))
    return im


def save(im: Image.Image, path: Path, **params: Any) -> Path:
    im.save(path, **params)
    return path


# --- orientation ---------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_renders_upright(tmp_path: Path, orientation: int) -> None:
    # Given the marked picture stored turned or mirrored, with the tag that undoes it
    upright = marked_picture()
    stored = upright
    if orientation in UPRIGHT:
        method = UPRIGHT[orientation]
        stored = upright.transpose(INVERSE.get(method, method))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(stored, tmp_path / "o.jpg", quality=95, exif=exif.tobytes())
    # When it renders into a box that needs the DCT draft path
    (out,) = render(path, [RenditionSpec("cache", 400, 400)])
    # Then it is landscape, red at the top left, blue at the top right, white below
    im = decoded(out)
    assert (out.width, out.height) == im.size == (400, 300)
    assert image_size(path) == (800, 600)
    assert near(im.getpixel((40, 30)), RED, 12)
    assert near(im.getpixel((360, 30)), BLUE, 12)
    assert near(im.getpixel((40, 260)), WHITE, 12)


def test_corpus_orientation_samples_all_come_out_alike(corpus: Path) -> None:
    # Given the sample camera pictures stored in all eight orientations
    folder = corpus / "exif-samples" / "jpg" / "orientation"
    for shape in ("landscape", "portrait"):
        reference = decoded(render(folder / f"{shape}_1.jpg", [THUMB])[0])
        for orientation in range(2, 9):
            # When each renders
            im = decoded(render(folder / f"{shape}_{orientation}.jpg", [THUMB])[0])
            # Then it matches the untagged one: same size, same picture (small colour drift
            # comes from their non-sRGB profile)
            assert im.size == reference.size
            assert _mean_difference(im, reference) < 12, f"{shape}_{orientation}"


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    small_a = a.convert("L").resize((32, 24)).tobytes()
    small_b = b.convert("L").resize((32, 24)).tobytes()
    return sum(abs(x - y) for x, y in zip(small_a, small_b, strict=True)) / len(small_a)


# --- sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "box"),
    [((1600, 1200), (700, 700)), ((1601, 1199), (400, 300)), ((3001, 997), (300, 300))],
)
def test_draft_path_gives_exactly_the_spec_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], box: tuple[int, int]
) -> None:
    # Given a JPEG much larger than the box, and a watch on the DCT draft
    path = save(marked_picture(size), tmp_path / "big.jpg", quality=90)
    drafted: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, want: object) -> object:
        result = original(self, mode, want)  # type: ignore[arg-type]
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    spec = RenditionSpec("cache", *box)
    # When it renders
    (out,) = render(path, [spec])
    # Then it was decoded at a reduced scale and still came out at exactly the target size
    assert drafted and drafted[0][0] < size[0]
    assert (out.width, out.height) == decoded(out).size == spec.target_size(*size)


def test_outputs_fit_their_boxes_and_small_sources_are_never_enlarged(tmp_path: Path) -> None:
    # Given a big and a tiny picture
    big = save(marked_picture((2000, 500)), tmp_path / "big.png")
    tiny = save(marked_picture((50, 40)), tmp_path / "tiny.png")
    specs = [CACHE, THUMB, RenditionSpec("thumbnail", 100, 400, "webp")]
    # When both render
    for path in (big, tiny):
        outputs = render(path, specs)
        # Then every output fits its box, keeps the aspect and is no larger than the source
        for spec, out in zip(specs, outputs, strict=True):
            assert out.width <= spec.box_w and out.height <= spec.box_h
            assert (out.width, out.height) == spec.target_size(*image_size(path))
            assert decoded(out).size == (out.width, out.height)
    assert [(o.width, o.height) for o in render(tiny, specs)] == [(50, 40)] * 3


def test_outputs_come_back_in_spec_order_with_kind_and_format(tmp_path: Path) -> None:
    path = save(marked_picture(), tmp_path / "p.jpg")
    specs = [THUMB, RenditionSpec("cache", 640, 640, "webp"), RenditionSpec("cache", 500, 500)]
    outputs = render(path, specs)
    assert [(o.kind, o.format, o.width) for o in outputs] == [
        ("thumbnail", "jpeg", 300),
        ("cache", "webp", 640),
        ("cache", "jpeg", 500),
    ]
    assert decoded(outputs[1]).format == "WEBP"


def test_avif_output_is_encoded_when_pillow_has_it(tmp_path: Path) -> None:
    path = save(marked_picture((400, 300)), tmp_path / "p.png")
    (out,) = render(path, [RenditionSpec("thumbnail", 200, 200, "avif", 60)])
    assert out.format == "avif" and decoded(out).format == "AVIF"
    assert (out.width, out.height) == (200, 150)


# --- colour ----------------------------------------------------------------------------------


def test_wide_gamut_profile_is_converted_to_srgb(tmp_path: Path) -> None:
    # Given flat patches tagged with a non-sRGB profile (Adobe RGB primaries, gamma 1.8)
    patches = [(128, 128, 128), (180, 90, 70), (60, 140, 90)]
    im = Image.new("RGB", (90, 30))
    for i, colour in enumerate(patches):
        im.paste(colour, (i * 30, 0, i * 30 + 30, 30))
    path = save(im, tmp_path / "wide.png", icc_profile=_matrix_profile(1.8))
    # When it renders to JPEG
    out = decoded(render(path, [RenditionSpec("cache", 90, 90, "jpeg", 95)])[0])
    # Then each patch shows the sRGB value that colour science predicts, not the stored one
    for i, colour in enumerate(patches):
        expected = _adobe_gamma18_to_srgb(colour)
        assert near(out.getpixel((i * 30 + 15, 15)), expected, 4), (colour, expected)
    assert not near(out.getpixel((15, 15)), (128, 128, 128), 10)


def test_srgb_profile_leaves_colours_alone(tmp_path: Path) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = save(Image.new("RGB", (40, 40), (180, 90, 70)), tmp_path / "s.png", icc_profile=srgb)
    out = decoded(render(path, [RenditionSpec("thumbnail", 40, 40, "jpeg", 95)])[0])
    assert near(out.getpixel((20, 20)), (180, 90, 70), 3)
    assert "icc_profile" not in out.info  # sRGB is implied; nothing stale is embedded


def test_cmyk_jpeg_renders_as_rgb(tmp_path: Path) -> None:
    # Given a CMYK JPEG of full magenta and yellow ink (no profile: Pillow's formula)
    path = save(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    # When it renders
    (out,) = render(path, [THUMB])
    # Then it is an RGB JPEG showing red
    im = decoded(out)
    assert im.mode == "RGB" and near(im.getpixel((32, 32)), RED, 8)


# --- the JPEG fast path (YCbCr planes) -------------------------------------------------------


@pytest.fixture
def draft_modes(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The modes render asks of the JPEG draft, in order: "YCbCr" is the fast path."""
    modes: list[str | None] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: Any) -> Any:
        modes.append(mode)
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    return modes


def rgb_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, Pillow decodes every JPEG to RGB, as if it declined the YCbCr draft."""
    original = JpegImagePlugin.JpegImageFile.draft

    def rgb(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: Any) -> Any:
        return original(self, None, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", rgb)


def saturated_picture(size: tuple[int, int] = (1600, 1200)) -> Image.Image:
    """Full primaries and secondaries on top, a hue sweep in the middle, coloured stripes on
    white below: what chroma filtering and colour conversion would get wrong shows."""
    width, height = size
    im = Image.new("RGB", size, WHITE)
    colours = [RED, (0, 255, 0), BLUE, (255, 255, 0), (255, 0, 255), (0, 255, 255)]
    for i, colour in enumerate(colours):
        im.paste(colour, (i * width // 6, 0, (i + 1) * width // 6, height // 3))
    sweep = Image.linear_gradient("L").rotate(90).resize((width, height // 3))
    full, bright = Image.new("L", sweep.size, 255), Image.new("L", sweep.size, 230)
    hsv = Image.merge("HSV", [sweep, full, bright])
    im.paste(hsv.convert("RGB"), (0, height // 3))
    for x in range(0, width, 16):
        im.paste(colours[x // 16 % 6], (x, 2 * height // 3, x + 8, height))
    return im


def mean_colour(rendition: Rendered) -> list[float]:
    return list(ImageStat.Stat(decoded(rendition).convert("RGB")).mean)


def mean_abs_difference(a: Rendered, b: Rendered) -> float:
    pa, pb = decoded(a).convert("RGB").tobytes(), decoded(b).convert("RGB").tobytes()
    assert len(pa) == len(pb)
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


FAST_PATH_SPECS = [
    RenditionSpec("cache", 700, 700, "jpeg", 95),
    RenditionSpec("thumbnail", 150, 150, "jpeg", 95),
    RenditionSpec("cache", 500, 500, "webp", 95),
]


def test_plain_jpeg_takes_the_fast_path_with_the_colours_of_the_rgb_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, draft_modes: list[str | None]
) -> None:
    # Given a saturated-colour JPEG without a profile, odd sizes on the way (1600x1200 -> 700x525)
    path = save(saturated_picture(), tmp_path / "colours.jpg", quality=95)
    # When it renders to JPEG and WebP on the fast path, and again with the decode forced to RGB
    fast = render(path, FAST_PATH_SPECS)
    assert draft_modes == ["YCbCr"]
    rgb_path_only(monkeypatch)
    slow = render(path, FAST_PATH_SPECS)
    # Then both give the same sizes, the same mean colours and near-identical pixels
    for a, b in zip(fast, slow, strict=True):
        assert (a.width, a.height, a.format) == (b.width, b.height, b.format)
        assert max(abs(x - y) for x, y in zip(mean_colour(a), mean_colour(b), strict=True)) < 1.5
        assert mean_abs_difference(a, b) < 2.5, a  # measured 1.7 for the 700 px JPEG
    # and the fast JPEG is an ordinary 4:2:0 JPEG, its colours where they belong
    cache = decoded(fast[0])
    assert cache.mode == "RGB" and JpegImagePlugin.get_sampling(cache) == 2
    assert near(cache.getpixel((50, 50)), RED, 6)
    assert near(cache.getpixel((300, 50)), BLUE, 6)
    assert decoded(fast[2]).mode == "RGB"


def test_jpeg_with_a_non_srgb_profile_keeps_to_the_rgb_path(
    tmp_path: Path, draft_modes: list[str | None]
) -> None:
    # Given the same pixels as a plain JPEG, tagged with a profile that is almost sRGB (sRGB
    # primaries, gamma 2.2) but not sRGB, and tagged with a wide gamut profile
    picture = saturated_picture()
    plain = save(picture, tmp_path / "plain.jpg", quality=95)
    almost = save(picture, tmp_path / "almost.jpg", quality=95, icc_profile=_near_srgb_profile())
    wide = save(picture, tmp_path / "wide.jpg", quality=95, icc_profile=_matrix_profile(1.8))
    # When each renders
    outputs = [render(path, FAST_PATH_SPECS[:1])[0] for path in (plain, almost, wide)]
    # Then only the plain one takes the fast path; the others are converted to sRGB on the RGB
    # path: the almost-sRGB one comes out near-identical, the wide gamut one visibly changed
    assert draft_modes == ["YCbCr", None, None]
    assert mean_abs_difference(outputs[0], outputs[1]) < 3  # measured 2.0
    assert mean_abs_difference(outputs[0], outputs[2]) > 5  # measured 6.1


def test_jpeg_with_an_srgb_profile_takes_the_fast_path(
    tmp_path: Path, draft_modes: list[str | None]
) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = save(marked_picture((1200, 900)), tmp_path / "s.jpg", quality=95, icc_profile=srgb)
    (out,) = render(path, [THUMB])
    assert draft_modes == ["YCbCr"]
    assert near(decoded(out).getpixel((30, 20)), RED, 8)


@pytest.mark.parametrize("how", ["adobe transform 0", "component ids RGB"])
def test_rgb_coded_jpeg_keeps_to_the_rgb_path(
    tmp_path: Path, draft_modes: list[str | None], how: str
) -> None:
    # Given a JPEG that stores R, G and B themselves (libjpeg cannot decode it to YCbCr)
    path = tmp_path / "rgb.jpg"
    path.write_bytes(_rgb_coded_jpeg(marked_picture(), adobe=how.startswith("adobe")))
    # When it renders, Then it is decoded as RGB, with the right colours, upright
    (out,) = render(path, [RenditionSpec("cache", 400, 400)])
    assert draft_modes == [None]
    im = decoded(out)
    assert near(im.getpixel((40, 30)), RED, 12)
    assert near(im.getpixel((360, 30)), BLUE, 12)
    assert near(im.getpixel((40, 260)), WHITE, 12)


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_grey_and_cmyk_jpegs_keep_to_their_path(
    tmp_path: Path, draft_modes: list[str | None], mode: str
) -> None:
    path = save(marked_picture((900, 600)).convert(mode), tmp_path / "p.jpg", quality=95)
    (out,) = render(path, [THUMB])
    assert draft_modes == [None]
    assert (out.width, out.height) == (300, 200)


def test_mpo_takes_the_fast_path(tmp_path: Path, draft_modes: list[str | None]) -> None:
    first, second = marked_picture((1200, 900)), Image.new("RGB", (1200, 900), BLUE)
    path = tmp_path / "stereo.mpo"
    first.save(path, "MPO", save_all=True, append_images=[second], quality=95)
    (out,) = render(path, [THUMB])
    assert draft_modes == ["YCbCr"]
    assert near(decoded(out).getpixel((30, 20)), RED, 8)


def test_sixteen_bit_greyscale_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    # Given a 16-bit grey PNG at half scale (32896 of 65535)
    path = save(Image.new("I;16", (64, 48), 32896), tmp_path / "grey16.png")
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    # When it renders
    im = decoded(render(path, [THUMB])[0])
    # Then it is mid grey, not the white a plain 8-bit conversion would give
    assert abs(im.convert("L").getpixel((32, 24)) - 128) <= 2  # type: ignore[operator]


def test_palette_transparency_flattens_for_jpeg_and_stays_for_webp(tmp_path: Path) -> None:
    # Given a palette picture whose left half is the transparent index
    im = Image.new("P", (80, 40), 1)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(0, (0, 0, 40, 40))
    path = save(im, tmp_path / "p.png", transparency=0)
    specs = [
        RenditionSpec("thumbnail", 80, 80, "jpeg", 95, "#00ff00"),
        RenditionSpec("cache", 80, 80, "webp", 90),
    ]
    # When it renders to JPEG and WebP
    jpeg, webp = (decoded(out) for out in render(path, specs))
    # Then the JPEG shows the background there, and the WebP keeps it transparent
    assert near(jpeg.getpixel((10, 20)), (0, 255, 0), 8)
    assert near(jpeg.getpixel((70, 20)), RED, 8)
    assert webp.mode == "RGBA"
    assert webp.getpixel((10, 20))[3] == 0  # type: ignore[index]
    assert near(webp.getpixel((70, 20)), (255, 0, 0, 255), 8)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_flattened_onto_the_background_for_jpeg(tmp_path: Path, mode: str) -> None:
    # Given a picture that is opaque at the right and half transparent at the left
    im = Image.new("RGBA", (100, 50), (0, 0, 0, 255))
    im.paste((0, 0, 0, 128), (0, 0, 50, 50))
    path = save(im.convert(mode), tmp_path / "a.png")
    specs = [
        RenditionSpec("thumbnail", 100, 100, "jpeg", 95, "#ffffff"),
        RenditionSpec("cache", 100, 100, "webp", 95),
    ]
    # When it renders
    jpeg, webp = (decoded(out) for out in render(path, specs))
    # Then the JPEG is grey where half of the white shows through, black where opaque
    assert jpeg.mode in ("RGB", "L")
    assert near(jpeg.convert("RGB").getpixel((20, 25)), (127, 127, 127), 6)
    assert near(jpeg.convert("RGB").getpixel((80, 25)), (0, 0, 0), 6)
    # and the WebP keeps the alpha
    assert webp.mode == "RGBA"
    assert abs(webp.getpixel((20, 25))[3] - 128) <= 3  # type: ignore[index]


def test_animated_gif_renders_its_first_frame(tmp_path: Path) -> None:
    # Given a two-frame GIF, red then blue
    frames = [Image.new("RGB", (60, 40), RED), Image.new("RGB", (60, 40), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    # When it renders
    im = decoded(render(path, [THUMB])[0])
    # Then it shows the first frame
    assert near(im.getpixel((30, 20)), RED, 8)


# --- errors ----------------------------------------------------------------------------------


def test_missing_path_is_source_missing(tmp_path: Path) -> None:
    with pytest.raises(SourceMissing, match="no such file") as caught:
        render(tmp_path / "gone.jpg", [THUMB])
    assert caught.value.error_class == "source_missing"
    with pytest.raises(SourceMissing, match="directory"):
        render(tmp_path, [THUMB])


def test_empty_file_is_corrupt(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(CorruptImage, match="empty"):
        render(tmp_path / "empty.jpg", [THUMB])


def test_truncated_jpeg_fails_instead_of_rendering_grey(tmp_path: Path) -> None:
    # Given a JPEG cut off at 60 %
    whole = save(marked_picture((1200, 900)), tmp_path / "whole.jpg", quality=90).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole[: len(whole) * 6 // 10])
    # When it renders, on the draft path and at full size, Then it is corrupt
    for spec in (THUMB, CACHE):
        with pytest.raises(CorruptImage, match="truncated"):
            render(path, [spec])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_renamed_to_jpg_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("these are my notes, not a picture\n")
    with pytest.raises(UnsupportedFormat, match="not an image format") as caught:
        render(path, [THUMB])
    assert "\n" not in str(caught.value)


def test_image_magic_with_a_broken_header_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    with pytest.raises(CorruptImage, match="JPEG"):
        render(path, [THUMB])


def test_heic_without_pillow_heif_says_what_to_install(corpus: Path) -> None:
    if HEIF_INSTALLED:
        pytest.skip("pillow-heif is installed: HEIC renders")
    with pytest.raises(UnsupportedFormat, match="pip install pillow-heif"):
        render(corpus / "exif-samples" / "heic" / "IMG_5195.HEIC", [THUMB])


def test_crafted_bomb_header_is_refused_before_decoding(tmp_path: Path) -> None:
    # Given a PNG whose header claims 30000x30000 pixels (and holds almost nothing)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(30000, 30000))
    # When it renders with the default limit, Then it is refused at once
    with pytest.raises(TooManyPixels):
        render(path, [THUMB])


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    # Given a header over the default 100 MP limit but under Pillow's own error threshold
    limit_before = Image.MAX_IMAGE_PIXELS
    path = tmp_path / "large.png"
    path.write_bytes(_png_header(11000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(TooManyPixels, match=r"110\.0 megapixels"):
            render(path, [THUMB])
    # and a small real picture under a low limit
    small = save(marked_picture((200, 100)), tmp_path / "small.png")
    with pytest.raises(TooManyPixels, match=r"over the limit of 0\.01"):
        render(small, [THUMB], max_pixels=10_000)
    assert limit_before == Image.MAX_IMAGE_PIXELS  # untouched


def test_read_error_is_transient() -> None:
    class FailingDisk(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(TransientIOError, match="EIO") as caught:
        render(FailingDisk(b"\xff\xd8\xff"), [THUMB])
    assert caught.value.transient


def test_renders_in_threads_match_renders_in_sequence(tmp_path: Path) -> None:
    paths = [save(marked_picture((900 + i, 700)), tmp_path / f"{i}.jpg") for i in range(4)]
    expected = [render(p, [THUMB])[0].data for p in paths]
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        results[i] = render(paths[i], [THUMB])[0].data

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[i] for i in range(4)] == expected


def test_every_corpus_sample_renders_or_fails_with_a_render_error(corpus: Path) -> None:
    # Given every file of the exif samples: cameras, phones, TIFF, HEIC, broken files, READMEs
    samples = sorted(p for p in (corpus / "exif-samples").rglob("*") if p.is_file())
    assert len(samples) > 90
    outcomes: dict[str, list[str]] = {}
    for path in samples:
        # When each renders
        try:
            outputs = render(path, [CACHE, THUMB])
        except RenderError as exc:
            # Then a failure is a RenderError of a known class, with a one-line message:
            # unsupported for what is no image we read, corrupt for a broken picture
            assert exc.error_class in ERROR_CLASSES and "\n" not in str(exc), path
            not_ours = path.suffix.lower() in ("", ".rst") or (
                path.suffix.lower() in (".heic", ".heif") and not HEIF_INSTALLED
            )
            assert isinstance(exc, UnsupportedFormat if not_ours else CorruptImage), (path, exc)
            outcomes.setdefault(exc.error_class, []).append(path.name)
            continue
        # and a success is a picture, with exactly the sizes the specs ask for
        assert path.suffix.lower() in (".jpg", ".jpeg", ".tiff", ".heic", ".heif"), path
        upright = image_size(path)
        for spec, out in zip((CACHE, THUMB), outputs, strict=True):
            assert (out.width, out.height) == spec.target_size(*upright), path
            assert decoded(out).size == (out.width, out.height), path
        outcomes.setdefault("rendered", []).append(path.name)
    assert len(outcomes["rendered"]) >= 90, outcomes


# --- helpers that build files ----------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that only claims its size: IHDR, one tiny IDAT, IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# Adobe RGB (1998) primaries adapted to D50, as an ICC matrix/TRC profile stores them.
_ADOBE_D50 = ((0.6097, 0.2053, 0.1492), (0.3111, 0.6257, 0.0632), (0.0195, 0.0609, 0.7446))
# sRGB primaries adapted to D50 (lcms's built-in sRGB), for the inverse.
_SRGB_D50 = ((0.4361, 0.3851, 0.1431), (0.2225, 0.7169, 0.0606), (0.0139, 0.0971, 0.7141))


def _matrix_profile(
    gamma: float,
    primaries: tuple[tuple[float, ...], ...] = _ADOBE_D50,
    name: bytes = b"Test wide RGB, gamma 1.8\x00",
) -> bytes:
    """An ICC v2 RGB display profile: Adobe RGB primaries (or others), a pure power-law curve."""

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + s15(x) + s15(y) + s15(z)

    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(name)) + name
    desc += b"\x00" * 8 + b"\x00\x00\x00" + b"\x00" * 67
    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, round(gamma * 256)) + b"\x00\x00"
    columns = list(zip(*primaries, strict=True))
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*columns[0])),
        (b"gXYZ", xyz(*columns[1])),
        (b"bXYZ", xyz(*columns[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text\x00\x00\x00\x00none\x00\x00\x00\x00"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\x00" * (-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = struct.pack(">I", size) + b"lcms" + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ "
    header += b"\x00" * 12 + b"acsp" + b"\x00" * 24 + struct.pack(">I", 0)
    header += s15(0.9642) + s15(1.0) + s15(0.8249) + b"\x00" * 48
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _near_srgb_profile() -> bytes:
    """sRGB primaries with a plain gamma 2.2 curve: not sRGB by name, nearly so by numbers."""
    return _matrix_profile(2.2, _SRGB_D50, b"Test display, gamma 2.2\x00")


def _rgb_coded_jpeg(picture: Image.Image, *, adobe: bool) -> bytes:
    """A JPEG that stores R, G, B without the YCbCr transform, marked as such by an Adobe
    marker with transform 0, or (adobe=False) by the component ids 'R', 'G', 'B'."""
    # The encoder writes whatever a YCbCr image holds: give it R, G, B, no subsampling.
    buffer = io.BytesIO()
    Image.merge("YCbCr", picture.split()).save(buffer, "JPEG", quality=95, subsampling=0)
    data = buffer.getvalue()
    out, position = bytearray(data[:2]), 2
    while True:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            segment = bytearray(data[position:])
            if not adobe:
                for k, cid in enumerate(b"RGB"):
                    segment[5 + 2 * k] = cid
            out += segment
            return bytes(out)
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segment = bytearray(data[position : position + 2 + length])
        position += 2 + length
        if marker == 0xE0:  # JFIF says YCbCr: drop it
            if adobe:
                body = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0)
                out += b"\xff\xee" + struct.pack(">H", len(body) + 2) + body
            continue
        if marker == 0xC0 and not adobe:
            for k, cid in enumerate(b"RGB"):
                segment[10 + 3 * k] = cid
        out += segment


def _adobe_gamma18_to_srgb(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    linear = [(c / 255) ** 1.8 for c in colour]
    x = [sum(row[i] * linear[i] for i in range(3)) for row in _ADOBE_D50]
    out = _solve(_SRGB_D50, x)
    return tuple(round(255 * _srgb_encode(min(1.0, max(0.0, v)))) for v in out)  # type: ignore[return-value]


def _srgb_encode(v: float) -> float:
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def _solve(m: tuple[tuple[float, ...], ...], b: list[float]) -> list[float]:
    """x with m x = b, by Cramer's rule (3x3)."""

    def det(a: list[list[float]]) -> float:
        return (
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
            - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
            + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        )

    base = [list(row) for row in m]
    whole = det(base)
    result = []
    for column in range(3):
        replaced = [row[:] for row in base]
        for r in range(3):
            replaced[r][column] = b[r]
        result.append(det(replaced) / whole)
    return result
