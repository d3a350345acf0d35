"""One error tree for imagecache.

ImageCacheError
├── InvalidInput            bad request from a user: say what and what to do
│   ├── PathOutsideRoots
│   ├── UnknownCollection
│   ├── UnknownFolder
│   ├── UnknownJob
│   └── InvalidSpec
├── LogError                the event log refused or lost an append
│   └── ImportRefused
├── ServiceUnavailable      MongoDB, RabbitMQ or a port did not answer
├── VersionMismatch         the read models were written by another imagecache version
└── RenderError             one image could not be rendered; `error_class` is recorded
    ├── CorruptImage        (permanent)  corrupt
    ├── UnsupportedFormat   (permanent)  unsupported
    ├── TooManyPixels       (permanent)  too_many_pixels
    ├── SourceTooLarge      (permanent)  too_large: more bytes than IMAGECACHE_MAX_SOURCE_BYTES
    ├── SourceMissing       (permanent)  source_missing: gone, or no longer what the scan found
    ├── NoSpace             (permanent for that folder) no_space
    └── TransientIOError    (retried)    io
"""

from __future__ import annotations

import re

# A quoted literal in another library's message: Pillow and zipfile quote bytes (and text) of
# the file they choke on ("invalid literal for int() with base 10: b'...'").
_QUOTED = re.compile(r"""b?(['"])(?:\\.|(?!\1).)*\1""")


class ImageCacheError(Exception):
    """Base of every error imagecache raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.hint})" if self.hint else text


class InvalidInput(ImageCacheError):
    """The request itself is wrong; nothing was changed."""


class PathOutsideRoots(InvalidInput):
    hint = "register a path under one of the library roots (IMAGECACHE_LIBRARY_ROOTS)"


class UnknownCollection(InvalidInput):
    hint = "list collections with `imagecache collections list`"


class UnknownFolder(InvalidInput):
    hint = "list cache folders with `imagecache folders list`"


class UnknownJob(InvalidInput):
    hint = "list jobs with `imagecache jobs list`"


class InvalidSpec(InvalidInput):
    hint = "kind must be cache or thumbnail, format jpeg/webp/avif, quality 1-100"


class LogError(ImageCacheError):
    """The event log could not take or give events."""


class ImportRefused(LogError):
    hint = "import into an empty event log (a fresh data folder or database)"


class ServiceUnavailable(ImageCacheError):
    """A service we depend on did not answer."""


class VersionMismatch(ImageCacheError):
    """A read model in the database has another shape than this code writes."""


class RenderError(ImageCacheError):
    """One image could not be rendered; the job and the worker go on."""

    error_class = "io"
    transient = False
    # Raised for an exception type nobody expected from a decoder or a reader: still an
    # outcome (never a stuck job), but logged once with its traceback, as a bug may be behind it.
    unexpected = False


class CorruptImage(RenderError):
    error_class = "corrupt"


class UnsupportedFormat(RenderError):
    error_class = "unsupported"


class TooManyPixels(RenderError):
    error_class = "too_many_pixels"


class SourceTooLarge(RenderError):
    error_class = "too_large"


class SourceMissing(RenderError):
    error_class = "source_missing"


class NoSpace(RenderError):
    error_class = "no_space"


class TransientIOError(RenderError):
    error_class = "io"
    transient = True


ERROR_CLASSES = (
    "corrupt", "unsupported", "too_many_pixels", "too_large", "source_missing", "no_space", "io",
)  # fmt: skip


def foreign_text(exc: BaseException) -> str:
    """Another library's exception as text for a message: one line, nothing it quoted."""
    return _QUOTED.sub("...", " ".join(str(exc).split())) or type(exc).__name__


def outcome_message(exc: BaseException, limit: int = 300) -> str:
    """A failure's message as recorded: its first line, at most `limit` characters."""
    lines = str(exc).splitlines()
    text = lines[0] if lines and lines[0] else getattr(exc, "error_class", type(exc).__name__)
    return text if len(text) <= limit else text[: limit - 3] + "..."
