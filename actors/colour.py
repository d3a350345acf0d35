"""Colour for rendering: modes to 8 bits, embedded ICC profiles to sRGB, alpha onto a background.

Working modes after `to_working`: L, LA, RGB, RGBA, or CMYK (CMYK is resized first and turned
into sRGB afterwards, on the smaller image). `to_srgb` leaves L, LA, RGB or RGBA. One more mode
reaches `for_encoder`: YCbCr, from the render kernel's JPEG fast path, which takes it only when
`leaves_rgb_alone` says that `to_srgb` would not touch the pixels.
"""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageCms, ImageColor

from domain.errors import InvalidSpec

WORKING_MODES = ("L", "LA", "RGB", "RGBA", "CMYK")
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}
_SIXTEEN_BIT_SCALE = 1 / 257  # 65535 -> 255


def to_working(im: Image.Image) -> Image.Image:
    """The image in a working mode with 8 bits a channel; transparency becomes an alpha channel."""
    mode = im.mode
    if mode in ("P", "PA"):
        return im.convert("RGBA" if im.has_transparency_data else "RGB")
    if mode in ("L", "RGB") and "transparency" in im.info:
        return im.convert("RGBA")  # a transparent colour key (PNG tRNS) becomes alpha
    if mode in WORKING_MODES:
        return im
    if mode in _PREMULTIPLIED:
        return im.convert(_PREMULTIPLIED[mode])
    if mode == "1":
        return im.convert("L")
    if mode.startswith("I;16") or mode == "I":
        # Scale the 16-bit range down; a plain convert("L") would clip everything above 255.
        wide = im if mode == "I" else im.convert("I")
        return wide.point(lambda v: v * _SIXTEEN_BIT_SCALE + 0.5).convert("L")
    if mode == "F":
        # Floating point samples have no agreed range: stretch what is there.
        low, high = im.getextrema()
        span = float(high) - float(low) or 1.0  # type: ignore[arg-type]
        return im.point(lambda v: (v - low) * (255 / span)).convert("L")
    if mode == "LAB":
        return ImageCms.applyTransform(im, _lab_transform()) or im
    return im.convert("RGB")


def to_srgb(im: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """Pixels converted from the embedded profile to sRGB; no profile or an sRGB one means as-is."""
    if icc_profile:
        out_mode = "RGBA" if im.mode in ("RGBA", "LA") else "RGB"
        in_mode = "RGBA" if im.mode == "LA" else im.mode
        transform = _transform_to_srgb(icc_profile, in_mode, out_mode)
        if transform is not None:
            source = im.convert(in_mode) if in_mode != im.mode else im
            converted = ImageCms.applyTransform(source, transform)
            if converted is not None:
                return converted
    if im.mode == "CMYK":
        return im.convert("RGB")  # no usable profile: Pillow's plain formula
    return im


def leaves_rgb_alone(icc_profile: bytes | None) -> bool:
    """True when `to_srgb` would hand RGB pixels back unchanged: no profile, an sRGB one, or one
    that cannot be used (then the pixels are taken as sRGB)."""
    return not icc_profile or _transform_to_srgb(icc_profile, "RGB", "RGB") is None


def flatten(im: Image.Image, background: str) -> Image.Image:
    """An image without alpha: transparent parts show `background` (a CSS colour)."""
    if im.mode not in ("RGBA", "LA"):
        return im
    try:
        colour = ImageColor.getrgb(background)[:3]
    except ValueError as exc:
        raise InvalidSpec(f"background {background!r} is not a colour") from exc
    rgba = im.convert("RGBA") if im.mode == "LA" else im
    base = Image.new("RGB", im.size, colour)
    base.paste(rgba, (0, 0), rgba)
    return base


def for_encoder(im: Image.Image, fmt: str) -> Image.Image:
    """The image in a mode the encoder takes: JPEG takes what it is given (L, RGB, CMYK, or
    YCbCr as is, without a colour conversion); WebP and AVIF want RGB or RGBA, so L and YCbCr
    become RGB."""
    if fmt == "jpeg" or im.mode in ("RGB", "RGBA"):
        return im
    return im.convert("RGBA" if im.mode == "LA" else "RGB")


def is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """True when the profile describes sRGB, so converting would change nothing worth the time."""
    core = profile.profile
    if core.xcolor_space.strip() != "RGB":
        return False
    names = f"{core.profile_description or ''} {core.model or ''}"
    return "srgb" in names.lower()


@functools.lru_cache(maxsize=64)
def _transform_to_srgb(
    icc_profile: bytes, in_mode: str, out_mode: str
) -> ImageCms.ImageCmsTransform | None:
    # None means: nothing to do (already sRGB) or the profile is unusable, and then the pixels
    # are taken as sRGB, which is what every viewer without colour management does too.
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if is_srgb(profile):
            return None
        # NOCACHE: lcms's one-pixel cache is not safe when threads share a transform.
        return ImageCms.buildTransform(
            profile, _srgb(), in_mode, out_mode, flags=ImageCms.Flags.NOCACHE
        )
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


@functools.cache
def _srgb() -> ImageCms.ImageCmsProfile:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@functools.cache
def _lab_transform() -> ImageCms.ImageCmsTransform:
    lab = ImageCms.createProfile("LAB")
    return ImageCms.buildTransform(lab, _srgb(), "LAB", "RGB", flags=ImageCms.Flags.NOCACHE)
