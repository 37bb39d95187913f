"""Volume rendering for the headless 3D view: presets shipped with the package, CPU ray casting.

The slicer-core wheel has no volume rendering presets (Slicer keeps them in its share folder),
so SlicerMCPLib/scene/data/volume_rendering_presets.json carries a few: CT presets in HU, and
`Window-Level`, which follows the volume's display window/level (any modality). Main thread only.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from ..core.errors import InvalidParameter
from .nodes import scalar_range

AUTO_CT_BELOW_HU = -500  # a volume whose minimum is below this is taken to be CT in HU


@functools.cache
def presets() -> dict[str, dict[str, Any]]:
    text = (
        resources.files(__package__)
        .joinpath("data/volume_rendering_presets.json")
        .read_text(encoding="utf-8")
    )
    return {name: spec for name, spec in json.loads(text).items() if not name.startswith("_")}


def choose_preset(volume: Any) -> str:
    image = volume.GetImageData()
    low = (scalar_range(image) or (0.0, 0.0))[0] if image is not None else 0.0
    return "CT-Soft-Tissue" if low < AUTO_CT_BELOW_HU else "Window-Level"


def apply_preset(volume_property: Any, volume: Any, name: str) -> None:
    """Fill a vtkVolumeProperty from preset `name`, scaled to `volume` where the preset is relative."""
    import vtk

    try:
        spec = presets()[name]
    except KeyError:
        raise InvalidParameter(
            f"unknown volume rendering preset {name!r}; use one of {', '.join(presets())}",
            details={"presets": list(presets())},
        ) from None
    scale = _scaler(spec["scale"], volume)
    opacity = vtk.vtkPiecewiseFunction()
    for value, alpha in spec["opacity"]:
        opacity.AddPoint(scale(value), alpha)
    color = vtk.vtkColorTransferFunction()
    for value, r, g, b in spec["color"]:
        color.AddRGBPoint(scale(value), r, g, b)
    volume_property.SetScalarOpacity(opacity)
    volume_property.SetColor(color)
    volume_property.SetShade(bool(spec.get("shade", False)))
    volume_property.SetInterpolationTypeToLinear()


def _scaler(kind: str, volume: Any):
    if kind == "absolute":
        return float
    display = volume.GetDisplayNode()
    if display is not None and display.IsA("vtkMRMLScalarVolumeDisplayNode"):
        window, level = display.GetWindow(), display.GetLevel()
    else:
        low, high = scalar_range(volume.GetImageData()) or (0.0, 1.0)
        window, level = high - low, (high + low) / 2
    window = window or 1.0
    return lambda f: level - window / 2 + f * window


def enable(app: Any, volume: Any, preset: str | None = None) -> str:
    """Turn on (CPU ray-cast) volume rendering of `volume`; returns the preset used."""
    logic = app.volume_rendering_logic
    display = logic.GetFirstVolumeRenderingDisplayNode(volume)
    if display is None:
        display = logic.CreateDefaultVolumeRenderingNodes(volume)
    name = preset or choose_preset(volume)
    apply_preset(display.GetVolumePropertyNode().GetVolumeProperty(), volume, name)
    display.SetVisibility(True)
    return name
