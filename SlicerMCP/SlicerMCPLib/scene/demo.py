"""A synthetic demo scene, so `slicer-mcp serve --headless --demo` shows something offline.

A head-like phantom (skull shell, brain, ventricles) that is deliberately asymmetric: a
bright marker sits on the patient's LEFT and a notch at the front, so a screenshot shows
at a glance whether left is left and anterior is up. A segmentation holds three segments
(brain, ventricles, a "lesion" on the left) in distinct colours.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.scene_backend import VolumeArray

SHAPE = (64, 96, 96)  # k (S), j (A), i (R)
SPACING = (2.0, 2.0, 2.5)  # i, j, k mm
SEGMENTS = (  # name, label, colour, opacity in 3D
    ("Brain", 1, (0.95, 0.85, 0.55), 0.2),  # see-through, so the structures inside it show in 3D
    ("Ventricles", 2, (0.2, 0.4, 1.0), 1.0),
    ("Lesion", 3, (1.0, 0.1, 0.1), 1.0),
)


def phantom_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(intensities int16 [k,j,i], labels uint8 [k,j,i], IJK->RAS).

    IJK->RAS flips i, so +i runs to the patient's LEFT (as in LPS-ordered scanner data);
    +j is anterior, +k superior.
    """
    k, j, i = np.indices(SHAPE, dtype=np.float32)
    ck, cj, ci = (np.array(SHAPE, np.float32) - 1) / 2
    r = np.sqrt(((i - ci) / 40) ** 2 + ((j - cj) / 44) ** 2 + ((k - ck) / 28) ** 2)
    image = np.zeros(SHAPE, np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    image[r < 1.0] = 900  # skull
    brain = r < 0.88
    image[brain] = 400
    labels[brain] = 1
    vent = (((i - ci) / 8) ** 2 + ((j - cj) / 16) ** 2 + ((k - ck) / 8) ** 2) < 1
    image[vent] = 80
    labels[vent] = 2
    # lesion and marker on the patient's left (+i, see ijk_to_ras)
    lesion = (((i - (ci + 22)) / 6) ** 2 + ((j - (cj + 6)) / 6) ** 2 + ((k - ck) / 5) ** 2) < 1
    image[lesion] = 700
    labels[lesion] = 3
    marker = (np.abs(i - (ci + 44)) < 3) & (np.abs(j - cj) < 10)
    image[marker] = 1500
    # anterior notch (+j is anterior)
    image[(j > SHAPE[1] - 8) & (np.abs(i - ci) < 4)] = 0
    ijk_to_ras = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    ijk_to_ras[:3, 3] = [ci * SPACING[0], -cj * SPACING[1], -ck * SPACING[2]]
    return image, labels, ijk_to_ras


def load_demo_scene(backend: Any) -> None:
    """Add the phantom volume and its segmentation; runs on the main thread."""
    from . import data_io

    image, labels, ijk_to_ras = phantom_arrays()
    app = backend.app
    volume = data_io.add_volume(app, VolumeArray(image, ijk_to_ras, "DemoHead"))
    display = volume.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevel(1200, 500)
    labelmap = data_io.add_volume(app, VolumeArray(labels, ijk_to_ras, "DemoLabels", is_labelmap=True))
    segmentation = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "DemoSegmentation")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    app.segmentations_logic.ImportLabelmapToSegmentationNode(labelmap, segmentation)
    app.scene.RemoveNode(labelmap.GetDisplayNode())
    app.scene.RemoveNode(labelmap)
    for orphan in data_io.orphan_display_nodes(app.scene):  # the import leaves one behind
        app.scene.RemoveNode(orphan)
    seg = segmentation.GetSegmentation()
    seg_display = segmentation.GetDisplayNode()
    for n in range(seg.GetNumberOfSegments()):
        segment = seg.GetNthSegment(n)
        name, _, color, opacity_3d = SEGMENTS[n]
        segment.SetName(name)
        segment.SetColor(*color)
        seg_display.SetSegmentOpacity3D(seg.GetNthSegmentID(n), opacity_3d)
    for n in range(app.scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        comp = app.scene.GetNthNodeByClass(n, "vtkMRMLSliceCompositeNode")
        comp.SetBackgroundVolumeID(volume.GetID())
        comp.SetLabelVolumeID(None)
