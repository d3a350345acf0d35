"""Builders of hostile ZIP archives for the tests: members zipfile cannot write (encrypted,
Deflate64) are crafted by patching the headers of ordinary ones."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image

# Offsets of the fields in a local file header (after "PK\x03\x04") and in a central directory
# entry (after "PK\x01\x02"), from the start of each.
_LOCAL = {"flag": 6, "method": 8, "crc": 14, "csize": 18, "usize": 22}
_CENTRAL = {"flag": 8, "method": 10, "crc": 16, "csize": 20, "usize": 24}
_FORMATS = {"flag": "<H", "method": "<H", "crc": "<I", "csize": "<I", "usize": "<I"}


def picture(
    size: tuple[int, int] = (320, 240), colour: tuple[int, int, int] = (200, 60, 30)
) -> bytes:
    """A small JPEG."""
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def patch(data: bytes, name: str, **fields: int) -> bytes:
    """`data` (a whole archive) with header fields of member `name` replaced, in its local
    header and its central directory entry alike: flag, method, crc, csize, usize."""
    out = bytearray(data)
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = archive.getinfo(name)
    starts = [(info.header_offset, _LOCAL), (_central_entry(data, archive, name), _CENTRAL)]
    for start, layout in starts:
        for field, value in fields.items():
            struct.pack_into(_FORMATS[field], out, start + layout[field], value)
    return bytes(out)


def _central_entry(data: bytes, archive: zipfile.ZipFile, name: str) -> int:
    position = archive.start_dir
    while data[position : position + 4] == b"PK\x01\x02":
        length, extra, comment = struct.unpack_from("<HHH", data, position + 28)
        if data[position + 46 : position + 46 + length].decode() == name:
            return position
        position += 46 + length + extra + comment
    raise KeyError(name)


def data_offset(data: bytes, name: str) -> int:
    """Where the (compressed) bytes of member `name` start."""
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    length, extra = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + length + extra


def zeros_member(archive: zipfile.ZipFile, name: str, size: int, prefix: bytes = b"") -> None:
    """Write member `name`: `prefix`, then zeros up to `size` bytes, deflated as it streams
    (a large member costs little memory or disk: zeros compress ~1000:1)."""
    info = zipfile.ZipInfo(name, date_time=(2024, 5, 1, 12, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    block = bytes(1 << 20)
    with archive.open(info, "w", force_zip64=size > 0x7FFF0000) as out:
        out.write(prefix)
        left = size - len(prefix)
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)


def hostile_archive(path: Path, *, bomb_bytes: int) -> dict[str, str]:
    """A CBZ of good pages and one bad member of each kind, mixed; returns each bad member's
    name -> the error class its render must fail with (good members map to "")."""
    good = picture()
    expected = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n, name in enumerate(
            ["001.jpg", "encrypted.jpg", "002.jpg", "deflate64.jpg", "corrupt-deflate.jpg",
             "bad-crc.jpg", "003.jpg"]
        ):  # fmt: skip
            stored = name in ("bad-crc.jpg", "002.jpg")
            method = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
            archive.writestr(zipfile.ZipInfo(name, (2024, 5, 1, 12, 0, n)), good, method)
            expected[name] = ""
        zeros_member(archive, "bomb.jpg", bomb_bytes + 1, prefix=good)
        zeros_member(archive, "lying-size.jpg", bomb_bytes + 1, prefix=good)
    data = buffer.getvalue()
    data = patch(data, "encrypted.jpg", flag=0x1)
    data = patch(data, "deflate64.jpg", method=9)
    data = patch(data, "bad-crc.jpg", crc=zlib.crc32(good) ^ 0xFFFF)
    # A deflate stream whose first block has the reserved type 3: zlib refuses it at once.
    broken = bytearray(data)
    broken[data_offset(data, "corrupt-deflate.jpg")] = 0xFF
    data = bytes(broken)
    # A member that inflates to more than the limit but declares a few bytes more than the
    # picture it starts with: read to its declared end only, whose CRC then cannot match.
    data = patch(data, "lying-size.jpg", usize=len(good) + 1000)
    path.write_bytes(data)
    expected.update(
        {
            "encrypted.jpg": "unsupported",
            "deflate64.jpg": "unsupported",
            "corrupt-deflate.jpg": "corrupt",
            "bad-crc.jpg": "corrupt",
            "lying-size.jpg": "corrupt",
            "bomb.jpg": "too_large",
        }
    )
    return expected
