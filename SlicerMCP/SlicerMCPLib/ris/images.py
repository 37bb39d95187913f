"""Synthetic radiograph pixels for the virtual CR, behind one small generator interface.

`simple` draws procedural anatomy outlines per body part (soft tissue, bone, air) with
noise; `sample` reads images shipped in `ris/samples/<BODY_PART>*.png` or `.npy`; `ai` asks an
external generator and, when no key or service is reachable, falls back to `simple` and
says so; `auto` takes `sample` when one exists for the body part, else `simple`.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).with_name("samples")
MAX_VALUE = 4095  # 12-bit detector


@dataclass
class Picture:
    pixels: np.ndarray  # uint16, rows x columns, MONOCHROME2
    mode: str  # the mode that produced it
    notes: list[str] = field(default_factory=list)


class ImageGenerator(Protocol):
    name: str

    def generate(self, body_part: str, view: str, size: int, seed: int) -> Picture: ...


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    return x * 2 - 1, y * 2 - 1  # -1..1


def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2) <= 1.0


def _bar(x: np.ndarray, y: np.ndarray, cx: float, cy: float, half_w: float, half_h: float) -> np.ndarray:
    return (np.abs(x - cx) <= half_w) & (np.abs(y - cy) <= half_h)


def _smooth(a: np.ndarray, passes: int = 3) -> np.ndarray:
    for _ in range(passes):
        a = (a + np.roll(a, 1, 0) + np.roll(a, -1, 0) + np.roll(a, 1, 1) + np.roll(a, -1, 1)) / 5.0
    return a


def is_lateral(view: str) -> bool:
    """A left or right lateral view (LL, RL, RLD...): seen from the side, so in the sagittal plane."""
    return view.startswith(("LL", "RL"))


class SimpleGenerator:
    """Procedural outlines: enough anatomy to tell a chest from a knee, nothing clinical."""

    name = "simple"

    def generate(self, body_part: str, view: str, size: int, seed: int) -> Picture:
        x, y = _grid(size)
        lateral = is_lateral(view)
        img = np.full((size, size), 0.05, np.float32)  # air
        part = body_part.upper()
        if part == "CHEST":
            img[_ellipse(x, y, 0, 0.05, 0.6 if lateral else 0.85, 0.9)] = 0.45
            if lateral:
                img[_ellipse(x, y, 0.05, 0.0, 0.4, 0.65)] = 0.15
                img[_bar(x, y, 0.45, 0.05, 0.07, 0.8)] = 0.85  # spine
            else:
                for side in (-1, 1):
                    img[_ellipse(x, y, side * 0.38, -0.05, 0.3, 0.62)] = 0.15  # lungs
                    for k in range(8):  # ribs
                        ry = -0.6 + k * 0.15
                        arc = np.abs(y - (ry + 0.15 * (x * side) ** 2)) < 0.018
                        img[arc & (x * side > 0.05) & (x * side < 0.75)] = 0.7
                img[_bar(x, y, 0, 0.05, 0.06, 0.85)] = 0.85  # spine
                img[_ellipse(x, y, 0.1, 0.3, 0.28, 0.22)] = 0.55  # heart
        elif part in ("ABDOMEN", "PELVIS", "LSPINE", "HIP"):
            img[_ellipse(x, y, 0, 0, 0.8, 0.95)] = 0.45
            img[_bar(x, y, 0.3 if lateral else 0, -0.2, 0.08, 0.75)] = 0.85
            if part in ("PELVIS", "HIP") or not lateral:
                img[_ellipse(x, y, -0.4, 0.55, 0.3, 0.2) ^ _ellipse(x, y, -0.4, 0.55, 0.2, 0.12)] = 0.8
                img[_ellipse(x, y, 0.4, 0.55, 0.3, 0.2) ^ _ellipse(x, y, 0.4, 0.55, 0.2, 0.12)] = 0.8
        elif part in ("CSPINE", "SKULL"):
            img[_ellipse(x, y, 0, -0.55, 0.6, 0.45)] = 0.75
            img[_ellipse(x, y, 0, -0.55, 0.52, 0.37)] = 0.4
            img[_bar(x, y, 0, 0.35, 0.25, 0.6)] = 0.45
            for k in range(6):
                img[_bar(x, y, 0.05 if lateral else 0, 0.0 + k * 0.15, 0.09, 0.055)] = 0.85
        else:  # extremities: a limb with two bones meeting at a joint
            img[_bar(x, y, 0, 0, 0.45, 1.0)] = 0.4
            img[_bar(x, y, -0.12 if not lateral else 0, -0.5, 0.09, 0.45)] = 0.85
            img[_bar(x, y, 0.12 if not lateral else 0.05, 0.5, 0.09, 0.45)] = 0.85
            img[_ellipse(x, y, 0, 0, 0.22, 0.09)] = 0.85
            if part in ("HAND", "FOOT"):
                for k in range(5):
                    img[_bar(x, y, -0.32 + k * 0.16, 0.65, 0.035, 0.3)] = 0.85
        rng = np.random.default_rng(seed)
        img = _smooth(img) + rng.normal(0, 0.015, img.shape).astype(np.float32)
        pixels = np.clip(img * MAX_VALUE, 0, MAX_VALUE).astype(np.uint16)
        return Picture(pixels, self.name)


class SampleGenerator:
    """Images shipped with the project, one or more per body part."""

    name = "sample"

    def __init__(self, folder: Path = SAMPLES_DIR):
        self.folder = folder

    def available(self, body_part: str) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob(f"{body_part.upper()}*") if p.suffix in (".png", ".npy"))

    def generate(self, body_part: str, view: str, size: int, seed: int) -> Picture:
        files = self.available(body_part)
        if not files:
            raise LookupError(f"no sample image for body part {body_part} in {self.folder}")
        path = files[seed % len(files)]
        if path.suffix == ".npy":
            array = np.load(path)
        else:
            from PIL import Image

            with Image.open(path) as image:  # closes the file now, not at garbage collection
                array = np.asarray(image.convert("I;16"))
        array = array.astype(np.float32)
        array = (array - array.min()) / max(float(np.ptp(array)), 1.0)
        return Picture((array * MAX_VALUE).astype(np.uint16), self.name, [f"sample {path.name}"])


class AiGenerator:
    """An external image generator (JSON in, .npy bytes out); falls back to `simple` on any trouble."""

    name = "ai"

    def __init__(
        self,
        endpoint: str | None,
        api_key: str | None,
        timeout_s: float = 20.0,
        description: str | None = None,
    ):
        self.endpoint = endpoint
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.description = description

    def generate(self, body_part: str, view: str, size: int, seed: int) -> Picture:
        reason = self._unavailable()
        if reason is None:
            try:
                return self._ask(body_part, view, size, seed)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                reason = f"the image generator at {self.endpoint} failed ({type(exc).__name__})"
        picture = SimpleGenerator().generate(body_part, view, size, seed)
        picture.notes.append(
            f"ai mode fell back to simple: {reason}. Set mini_ris.modality.ai_endpoint and ai_api_key to use it."
        )
        return picture

    def _unavailable(self) -> str | None:
        if not self.endpoint:
            return "no generator endpoint is configured"
        if not self.api_key:
            return "no API key is configured"
        return None

    def _ask(self, body_part: str, view: str, size: int, seed: int) -> Picture:
        asked = {"body_part": body_part, "view": view, "size": size, "seed": seed}
        if self.description:
            asked["description"] = self.description
        body = json.dumps(asked).encode()
        request = urllib.request.Request(
            str(self.endpoint),
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
        )
        import io

        with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310 - configured URL
            array = np.load(io.BytesIO(reply.read()), allow_pickle=False)
        if array.ndim != 2:
            raise ValueError("generator returned a non-2D image")
        return Picture(np.clip(array, 0, MAX_VALUE).astype(np.uint16), self.name)


def generator_for(
    mode: str,
    body_part: str,
    ai_endpoint: str | None = None,
    ai_key: str | None = None,
    description: str | None = None,
) -> ImageGenerator:
    """The generator a mode stands for (`auto`: a shipped sample when there is one, else simple)."""
    if mode == "simple":
        return SimpleGenerator()
    if mode == "sample":
        return SampleGenerator()
    if mode == "ai":
        return AiGenerator(ai_endpoint, ai_key, description=description)
    sample = SampleGenerator()
    return sample if sample.available(body_part) else SimpleGenerator()
