"""Render cache images and thumbnails: one decode per source, every size made from it.

Errors, each with a one-line message:

    no such file, a directory, permission denied          SourceMissing
    empty, truncated or undecodable picture               CorruptImage
    starts like a format we read, header unreadable       CorruptImage
    no format we read (text, PDF, SVG, PSD, ...)          UnsupportedFormat
    HEIC/HEIF without pillow-heif installed               UnsupportedFormat (says to install it)
    an encoder that refuses the output                    UnsupportedFormat
    more pixels than max_pixels, decompression bomb       TooManyPixels
    EIO, ESTALE and other read errors; MemoryError        TransientIOError (retried)"""

from __future__ import annotations

import errno
import functools
import importlib
import io
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, UnidentifiedImageError, features

from actors import colour
from domain.errors import (
    CorruptImage,
    RenderError,
    SourceMissing,
    TooManyPixels,
    TransientIOError,
    UnsupportedFormat,
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
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_DECODE_ERRORS = (
    OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError,
    ZeroDivisionError, OverflowError, struct.error, Warning,
)  # fmt: skip
_heif_lock = threading.Lock()


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
            im.draft(None, stored)  # DCT scaling: decode at the smallest 1/8..1/1 still >= stored
            im.load()
        icc_profile = im.info.get("icc_profile")
        working = colour.to_working(im)
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
        raise UnsupportedFormat(
            f"not an image format we read (content starts {head[:8]!r})"
        ) from exc
    width, height = im.size
    if max_pixels is not None and width * height > max_pixels:
        raise TooManyPixels(
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels,"
            f" over the limit of {max_pixels / 1e6:g}"
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
        raise UnsupportedFormat(
            f"{spec.format} encoder refused {out.width}x{out.height} {out.mode}: {_line(exc)}"
        ) from exc
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
        raise TooManyPixels(f"refused as a decompression bomb: {_line(exc)}") from exc
    except MemoryError as exc:
        raise TransientIOError("ran out of memory while decoding") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system, not the image
            raise _read_error(exc) from exc
        raise CorruptImage(f"cannot be decoded: {_line(exc)}") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"cannot be decoded: {type(exc).__name__}: {_line(exc)}") from exc


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


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
