"""Render cache images and thumbnails: one decode per source, every size made from it.

Errors, each with a one-line message:

    no such file, a directory, permission denied          SourceMissing
    empty, truncated or undecodable picture               CorruptImage
    starts like a format we read, header unreadable       CorruptImage
    no format we read (text, PDF, SVG, PSD, ...)          UnsupportedFormat
    HEIC/HEIF without pillow-heif installed               UnsupportedFormat (says to install it)
    an encoder that refuses the output                    UnsupportedFormat
    more pixels than max_pixels, decompression bomb       TooManyPixels
    EIO, ESTALE and other read errors; MemoryError        TransientIOError (retried)

The JPEG fast path: most sources are camera JPEGs, stored as YCbCr. When such a JPEG needs no
colour conversion (no ICC profile, or an sRGB one), it is decoded to its own YCbCr planes, not
to RGB; the luma is resized with Lanczos like everything else, the chroma straight to the half
resolution a 4:2:0 JPEG keeps of it (`_resize_planes`), and the YCbCr image goes to the JPEG
encoder as it is (for WebP and AVIF it becomes RGB, at the output size). Measured on the 12 bench
photos (12 MP to 1920 + 300 JPEGs, one core, A/B in one process): 0.91-0.94 of the CPU time of
the RGB path; luma SSIM the same, chroma SSIM min 0.9911 against 0.9929 (through q100)."""

from __future__ import annotations

import errno
import functools
import importlib
import io
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, JpegImagePlugin, UnidentifiedImageError, features

from actors import colour
from domain.errors import (
    CorruptImage,
    RenderError,
    SourceMissing,
    TooManyPixels,
    TransientIOError,
    UnsupportedFormat,
    foreign_text,
)
from domain.specs import RenditionSpec

Size = tuple[int, int]

# What we open. Pillow can read more (EPS runs Ghostscript, PSD, ...); those stay unsupported.
# (No "MPO": Pillow 13 opens MPO files through its JPEG opener; naming it is a KeyError.)
READ_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "AVIF", "JPEG2000", "PPM", "ICO")
# Encoder effort, measured on 1920x1440 photos, one core (JPEG q85: 16 ms, 385 KB):
# WebP method 1 takes 68 ms for 276 KB; method 0 is no faster and larger, the default 4
# takes 230 ms (3.4x) for 244 KB (12 % smaller). AVIF speed 9 takes 136 ms for 176 KB;
# 8 takes 390 ms for 3 % less, the default 6 over 1 s. One encoder thread per render:
# workers already run one render per core.
WEBP_METHOD = 1
AVIF_SPEED = 9
MAX_PIXELS = 100_000_000
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
)
# Component ids that libjpeg 9 reads as RGB ('RGB'), big gamut RGB ('rgb') or big gamut YCC.
_NOT_YCBCR_IDS = ((82, 71, 66), (114, 103, 98), (1, 34, 35))
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, struct.error, Warning,
)  # fmt: skip
_heif_lock = threading.Lock()
# Our own limit (max_pixels) is checked on the header before any decode, and an image over
# Pillow's is refused as TooManyPixels anyway: its warning would only be noise on stderr.
# Installed once, here, not toggled per call: renders run in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Rendered:
    """One encoded rendition."""

    kind: str
    data: bytes
    width: int
    height: int
    format: str  # "jpeg", "webp" or "avif"


def render(
    source: BinaryIO | Path, specs: Sequence[RenditionSpec], *, max_pixels: int = MAX_PIXELS
) -> list[Rendered]:
    """Every spec rendered upright in sRGB from one decode of `source`, in the order given."""
    for spec in specs:
        _check_encoder(spec.format)
    with _decoding(), _source(source) as fp:
        im = _open(fp, max_pixels)
        draftable = im.format in ("JPEG", "MPO")
        if not draftable:
            im.load()  # some formats find their EXIF only after the pixels
        orientation = _orientation(im)
        upright = _upright(im.size, orientation)
        targets = [spec.target_size(*upright) for spec in specs]
        largest = max(targets, key=_area, default=upright)
        stored = _upright(largest, orientation)  # the same swap turns it back
        if draftable:
            # DCT scaling: decode at the smallest 1/8..1/1 still >= stored; a JPEG that can take
            # the fast path as YCbCr (libjpeg then skips its colour conversion), others as RGB.
            im.draft("YCbCr" if _planar_source(im) else None, stored)
            im.load()
        icc_profile = im.info.get("icc_profile")
        planar = draftable and im.mode == "YCbCr"  # not if Pillow declined the draft
        working = im if planar else colour.to_working(im)
    if planar:
        base = _resize_planes(working, stored)  # sRGB already: _planar_source checked
    else:
        base = colour.to_srgb(_resize(working, stored), icc_profile)
    if orientation in _TRANSPOSE:
        base = base.transpose(_TRANSPOSE[orientation])  # after the downscale: fewer pixels
    base.info = {}  # no stale ICC profile or orientation tag may reach an encoder
    made: dict[Size, Image.Image] = {largest: base}
    rendered: dict[int, Rendered] = {}
    for index in sorted(range(len(specs)), key=lambda i: -_area(targets[i])):
        size = targets[index]
        if size not in made:
            made[size] = _resize(_smallest_cover(made, size), size)
        rendered[index] = _encode(made[size], specs[index])
    return [rendered[index] for index in range(len(specs))]


def image_size(source: BinaryIO | Path) -> Size:
    """The upright width and height, read from the header without decoding the pixels."""
    with _decoding(), _source(source) as fp:
        im = _open(fp, max_pixels=None)
        return _upright(im.size, _orientation(im))


def _open(fp: BinaryIO, max_pixels: int | None) -> ImageFile.ImageFile:
    start = fp.tell()
    head = fp.read(64)
    fp.seek(start)
    if not head:
        raise CorruptImage("file is empty (0 bytes)")
    kind = _sniff(head)
    formats: tuple[str, ...] = READ_FORMATS
    if kind == "HEIF":
        if not _heif_opener():
            raise UnsupportedFormat(
                "HEIC/HEIF needs the pillow-heif package: pip install pillow-heif"
            )
        formats += ("HEIF",)
    try:
        im = Image.open(fp, formats=formats)
    except UnidentifiedImageError as exc:
        if kind is not None:
            raise CorruptImage(f"starts like a {kind} file but its header is unreadable") from exc
        # Never the first bytes themselves: a failure message must not echo a file's content.
        raise UnsupportedFormat(
            "not an image format we read (JPEG, PNG, GIF, WebP, TIFF, BMP, AVIF, HEIC, ...)"
        ) from exc
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise TooManyPixels(
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels,"
            f" over the limit of {max_pixels / 1e6:g} megapixels (IMAGECACHE_MAX_PIXELS)"
        )
    return im


def _sniff(head: bytes) -> str | None:
    """The image format the first bytes announce, or None."""
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        brands = head[8 : min(len(head), int.from_bytes(head[:4], "big"))]
        if b"avif" in brands or b"avis" in brands:
            return "AVIF"
        if any(brand in brands for brand in _HEIF_BRANDS):
            return "HEIF"
    return None


def _orientation(im: Image.Image) -> int:
    if im.format == "PNG" and "exif" not in im.info:
        return 1  # Pillow would decode the whole PNG to look for it
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF never spoils good pixels: take them as they are stored
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright(size: Size, orientation: int) -> Size:
    return (size[1], size[0]) if orientation >= 5 else size


def _area(size: Size) -> int:
    return size[0] * size[1]


def _resize(im: Image.Image, size: Size) -> Image.Image:
    if im.size == size:
        return im
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _planar_source(im: ImageFile.ImageFile) -> bool:
    """True for a JPEG whose three channels libjpeg decodes from YCbCr to RGB and whose colours
    `colour.to_srgb` would leave alone: the fast path then gives the colours the RGB path does.

    libjpeg-turbo takes three channels as YCbCr unless an Adobe marker says transform 0 or the
    component ids spell 'RGB' (jdapimin.c); decoding those to YCbCr fails, so they keep to RGB,
    as does anything with component ids libjpeg 9 reads as another colour space.
    """
    if not isinstance(im, JpegImagePlugin.JpegImageFile) or im.mode != "RGB":
        return False
    ids = tuple(component[0] for component in im.layer)
    if len(ids) != 3 or ids in _NOT_YCBCR_IDS or im.info.get("adobe_transform") == 0:
        return False
    if ids != (1, 2, 3) and "jfif" not in im.info and "adobe_transform" not in im.info:
        return False  # libjpeg-turbo would guess YCbCr, libjpeg 9 might not: no guessing here
    return colour.leaves_rgb_alone(im.info.get("icc_profile"))


def _resize_planes(im: Image.Image, size: Size) -> Image.Image:
    """A YCbCr image resized plane by plane: the luma with Lanczos, as `_resize` does; the
    chroma straight to half the size (a 2x2 box reduction, then bicubic), each of its pixels
    then repeated 2x2.

    The JPEG encoder keeps the chroma at half resolution (4:2:0, the mean of each 2x2 block),
    so it gets back exactly the chroma resized here (an odd width or height turned by the EXIF
    orientation shifts the blocks by a pixel: a slight blur of the chroma, no more).

    Per 12 MP JPEG decoded at 1/2 scale (2000x1500 -> 1920x1440), one core: RGB Lanczos 58 ms,
    this 42 ms (split 1.7, luma 23, each chroma plane 5.6 + 1.1, merge 4.1); the encoder takes
    1.6-3 ms more for YCbCr than for RGB. Against a full-decode Lanczos reference, 12 photos,
    served at q85: chroma SSIM min / mean and RGB PSNR mean 0.9512 / 0.9818 / 40.29 dB, against
    0.9518 / 0.9820 / 40.32 dB for the RGB path. Other chroma filters (ms a plane; dB at q85):
    Lanczos 7.4 (as the RGB path; the render 3-5 % slower), BOX 4.8 (-0.15 dB), BILINEAR 4.1
    (-0.1 dB, chroma SSIM min 0.9490); BILINEAR at full size 11.
    """
    if im.size == size:
        return im
    luma, blue, red = im.split()
    half = ((size[0] + 1) // 2, (size[1] + 1) // 2)
    chroma = [
        plane.resize(half, Image.Resampling.BICUBIC, reducing_gap=1.0).resize(
            size, Image.Resampling.NEAREST
        )
        for plane in (blue, red)
    ]
    return Image.merge("YCbCr", [_resize(luma, size), *chroma])


def _smallest_cover(made: dict[Size, Image.Image], size: Size) -> Image.Image:
    """The smallest image already made that is at least `size`: the cheapest good source."""
    covers = [s for s in made if s[0] >= size[0] and s[1] >= size[1]]
    return made[min(covers, key=_area)] if covers else made[max(made, key=_area)]


def _encode(im: Image.Image, spec: RenditionSpec) -> Rendered:
    out = colour.flatten(im, spec.background) if spec.format == "jpeg" else im
    out = colour.for_encoder(out, spec.format)
    buffer = io.BytesIO()
    try:
        if spec.format == "jpeg":
            out.save(buffer, "JPEG", quality=spec.quality, optimize=False)
        elif spec.format == "webp":
            out.save(buffer, "WEBP", quality=spec.quality, method=WEBP_METHOD)
        else:
            out.save(buffer, "AVIF", quality=spec.quality, speed=AVIF_SPEED, max_threads=1)
    except (OSError, ValueError) as exc:
        refused = f"{spec.format} encoder refused {out.width}x{out.height} {out.mode}"
        raise UnsupportedFormat(f"{refused}: {foreign_text(exc)}") from exc
    return Rendered(spec.kind, buffer.getvalue(), out.width, out.height, spec.format)


def _check_encoder(fmt: str) -> None:
    if fmt in ("webp", "avif") and not features.check_module(fmt):
        raise UnsupportedFormat(f"{fmt} output needs Pillow built with lib{fmt}; this one has none")


def _heif_opener() -> bool:
    """True once pillow-heif (if installed) has taught Pillow to open HEIC/HEIF."""
    with _heif_lock:
        return _register_heif()


@functools.cache
def _register_heif() -> bool:
    try:
        pillow_heif = importlib.import_module("pillow_heif")
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@contextmanager
def _source(source: BinaryIO | Path) -> Iterator[BinaryIO]:
    if isinstance(source, str | Path):
        with open(source, "rb") as fp:
            yield fp
    else:
        # Pillow needs to seek; a pipe or socket is read into memory first.
        yield source if source.seekable() else io.BytesIO(source.read())


@contextmanager
def _decoding() -> Iterator[None]:
    """Pillow's many exception types as RenderErrors."""
    try:
        yield
    except RenderError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"refused as a decompression bomb: {foreign_text(exc)}") from exc
    except MemoryError as exc:
        raise TransientIOError("ran out of memory while decoding") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system, not the image
            raise _read_error(exc) from exc
        raise CorruptImage(f"cannot be decoded: {foreign_text(exc)}") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot be decoded: {type(exc).__name__}: {foreign_text(exc)}") from exc
    except Exception as exc:  # whatever else a decoder raises on what it was given
        raise unexpected(exc, "decoding") from exc


def unexpected(exc: BaseException, doing: str) -> CorruptImage:
    """An exception type no reader or decoder is known to raise, as a failed outcome (the
    input is the likeliest cause) marked `unexpected`: logged once with its traceback."""
    error = CorruptImage(f"unexpected {type(exc).__name__} while {doing}: {foreign_text(exc)}")
    error.unexpected = True
    return error


def _read_error(exc: OSError) -> RenderError:
    name = f" {exc.filename}" if exc.filename else ""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return SourceMissing(f"no such file{name}")
    if exc.errno == errno.EISDIR:
        return SourceMissing(f"a directory, not an image file:{name}")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return SourceMissing(f"permission denied reading{name}")
    code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return TransientIOError(f"read failed ({code}: {exc.strerror}){name}")
