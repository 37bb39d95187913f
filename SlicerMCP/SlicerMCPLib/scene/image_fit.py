"""Screenshots that fit in one MCP message: re-encoded as JPEG, then scaled down, when too big.

A 2048-pixel `full` or `3d` PNG is several MB; base64 adds a third, and the MCP Python client
refuses an SSE event over 1 MiB (its default `max_sse_event_size`), so the call failed on the
client side. `fit_image` keeps the PNG when it fits, else tries JPEG at falling quality, then
smaller sizes, and says in `notes` what it did so the assistant knows what it is looking at.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

_QUALITIES = (90, 80, 70, 60)
_SMALLEST = 64


@dataclass
class FittedImage:
    data: bytes
    mime_type: str
    width: int | None = None
    height: int | None = None
    notes: list[str] = field(default_factory=list)


def fit_image(png: bytes, max_bytes: int) -> FittedImage:
    """`png` unchanged when it is at most `max_bytes`, else the best JPEG that is."""
    if len(png) <= max_bytes:
        return FittedImage(png, "image/png")
    from PIL import Image  # Slicer bundles Pillow; only needed for images over the limit

    with Image.open(io.BytesIO(png)) as opened:
        image = opened.convert("RGB")
    full_w, full_h = image.size
    scaled = image
    while True:
        for quality in _QUALITIES:
            out = io.BytesIO()
            scaled.save(out, format="JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return _fitted(out.getvalue(), scaled.size, (full_w, full_h), quality, len(png), max_bytes)
        w, h = scaled.size
        if min(w, h) * 3 // 4 < _SMALLEST:
            return _fitted(out.getvalue(), scaled.size, (full_w, full_h), quality, len(png), max_bytes)
        scaled = image.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS)


def _fitted(
    data: bytes, size: tuple[int, int], full: tuple[int, int], quality: int, png_bytes: int, max_bytes: int
) -> FittedImage:
    notes = [
        f"re-encoded as JPEG (quality {quality}, {len(data) // 1000} kB): the PNG was {png_bytes // 1000} kB, "
        f"over the {max_bytes // 1000} kB an image may take in one MCP message (rendering.max_image_bytes)"
    ]
    if size != full:
        notes.append(
            f"scaled down from {full[0]}x{full[1]} to {size[0]}x{size[1]} to fit; ask for a smaller "
            "view or a single slice view for full detail"
        )
    return FittedImage(data, "image/jpeg", size[0], size[1], notes)
