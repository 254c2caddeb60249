"""Frames for the widget tests that a camera would never send."""

from __future__ import annotations

import struct
import zlib


def huge_png(side: int = 16000) -> bytes:
    """A valid 1-bit grey PNG of side x side pixels: well under 1 MB on the wire, ~0.8 GB once decoded to RGB."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte, then a row of black pixels
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(side)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
