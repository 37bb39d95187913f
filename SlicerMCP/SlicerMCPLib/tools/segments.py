"""Analysis tools: make and edit segmentations with Slicer's Segment Editor algorithms, measure them,
and undo an edit. The work runs on the scene's main thread (`SceneBackend.run_analysis`)."""

from __future__ import annotations

from functools import partial
from typing import Annotated, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..core.analysis_models import (
    EditResult,
    IslandMode,
    LogicalOperation,
    SmoothingMethod,
    StatisticsResult,
    UndoResult,
)
from ..scene import segment_edit, segment_stats
from ..scene.edit_history import Workspace
from .annotations import ADDS, EDITS, OVERWRITES, READS, REMOVES, SETS
from .running import run_analysis

T = TypeVar("T")

SegmentationId = Annotated[
    str,
    Field(min_length=1, max_length=256, description="segmentation node ID, e.g. vtkMRMLSegmentationNode1"),
]
SegmentName = Annotated[str, Field(min_length=1, max_length=256, description="segment name or segment ID")]
VolumeId = Annotated[
    str | None,
    Field(
        max_length=256,
        description="scalar volume whose grid and intensities to use (default: the segmentation's source volume)",
    ),
]
Point = Annotated[list[float], Field(min_length=3, max_length=3, description="[R, A, S] in mm")]


async def create_segmentation(
    ctx: Context,
    volume_id: Annotated[str, Field(min_length=1, max_length=256, description="scalar volume to segment")],
    segments: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128)]],
        Field(max_length=64, description="names of empty segments to add, e.g. ['lesion']"),
    ] = [],  # noqa: B006 - pydantic copies defaults
    name: Annotated[str | None, Field(max_length=256, description="node name")] = None,
) -> EditResult:
    """Create a segmentation on a volume's grid (the volume becomes its source volume), with empty
    segments. Next: segment_threshold or segment_grow_from_seeds to fill them."""
    return await run_analysis(
        ctx,
        partial(segment_edit.create_segmentation, volume_id=volume_id, name=name, segments=segments),
        "create",
    )


async def segment_threshold(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: Annotated[
        str, Field(min_length=1, max_length=256, description="segment to set; created if missing")
    ],
    lower: Annotated[float, Field(description="lowest intensity kept, in the volume's units (CT: HU)")],
    upper: Annotated[float, Field(description="highest intensity kept")],
    volume_id: VolumeId = None,
    roi_id: Annotated[
        str | None, Field(max_length=256, description="a markups ROI (place_markup type roi) to stay inside")
    ] = None,
) -> EditResult:
    """Set a segment to the voxels of the source volume within [lower, upper] (Slicer's Threshold
    effect), optionally only inside an ROI. Replaces the segment's voxels; undo_last_edit reverts."""
    work = partial(
        segment_edit.threshold,
        segmentation_id=segmentation_id,
        segment=segment,
        lower=lower,
        upper=upper,
        volume_id=volume_id,
        roi_id=roi_id,
    )
    return await run_analysis(ctx, work, "threshold")


async def segment_grow_from_seeds(
    ctx: Context,
    segmentation_id: SegmentationId,
    seeds: Annotated[
        dict[str, list[Point]],
        Field(
            description="RAS seed points per segment name, at least two segments, e.g. "
            "{'lesion': [[10, 20, 30]], 'background': [[0, 0, 0]]}; missing segments are created"
        ),
    ],
    volume_id: VolumeId = None,
    seed_radius_mm: Annotated[float, Field(ge=0, le=50, description="sphere painted around each seed")] = 2.0,
) -> EditResult:
    """Slicer's Grow from seeds (GrowCut): every voxel goes to the segment whose seeds (the segment's
    current voxels plus the given points) it is closest to in intensity. Segments become a partition."""
    work = partial(
        segment_edit.grow_from_seeds,
        segmentation_id=segmentation_id,
        seeds=seeds,
        volume_id=volume_id,
        seed_radius_mm=seed_radius_mm,
    )
    return await run_analysis(ctx, work, "grow from seeds")


async def segment_islands(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: SegmentName,
    mode: Annotated[
        IslandMode,
        Field(
            description="keep_largest; remove_small (under min_size_voxels); split (each island a segment)"
        ),
    ] = "keep_largest",
    min_size_voxels: Annotated[int, Field(ge=1, description="islands smaller than this are dropped")] = 1000,
) -> EditResult:
    """Connected pieces of a segment (Slicer's Islands effect, 6-connected): keep the largest, remove
    small ones, or split them into new segments named '<segment> 2', '<segment> 3'..."""
    work = partial(
        segment_edit.islands,
        segmentation_id=segmentation_id,
        segment=segment,
        mode=mode,
        min_size_voxels=min_size_voxels,
    )
    return await run_analysis(ctx, work, "islands")


async def segment_margin(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: SegmentName,
    margin_mm: Annotated[
        float, Field(ge=-100, le=100, description="grow (> 0) or shrink (< 0) by this many mm")
    ],
) -> EditResult:
    """Grow or shrink a segment by a distance in mm (Slicer's Margin effect)."""
    work = partial(segment_edit.margin, segmentation_id=segmentation_id, segment=segment, margin_mm=margin_mm)
    return await run_analysis(ctx, work, "margin")


async def segment_smoothing(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: SegmentName,
    method: Annotated[
        SmoothingMethod,
        Field(
            description="median (removes specks, keeps edges), closing (fills small holes), opening (cuts thin bits)"
        ),
    ] = "median",
    kernel_mm: Annotated[float, Field(gt=0, le=50, description="kernel size in mm")] = 3.0,
) -> EditResult:
    """Smooth a segment (Slicer's Smoothing effect: median or morphological closing/opening)."""
    work = partial(
        segment_edit.smoothing,
        segmentation_id=segmentation_id,
        segment=segment,
        method=method,
        kernel_mm=kernel_mm,
    )
    return await run_analysis(ctx, work, "smoothing")


async def segment_logical(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: Annotated[
        str, Field(min_length=1, max_length=256, description="segment to change (created for copy)")
    ],
    operation: Annotated[
        LogicalOperation,
        Field(description="union, subtract (segment minus other), intersect, copy (other into segment)"),
    ],
    other_segment: SegmentName,
    other_segmentation_id: Annotated[
        str | None,
        Field(max_length=256, description="segmentation holding other_segment (default: the same)"),
    ] = None,
) -> EditResult:
    """Combine two segments voxel by voxel (Slicer's Logical operators effect)."""
    work = partial(
        segment_edit.logical,
        segmentation_id=segmentation_id,
        segment=segment,
        operation=operation,
        other_segment=other_segment,
        other_segmentation_id=other_segmentation_id,
    )
    return await run_analysis(ctx, work, "logical")


async def delete_segment(ctx: Context, segmentation_id: SegmentationId, segment: SegmentName) -> EditResult:
    """Remove one segment from a segmentation (undo_last_edit brings it back)."""
    work = partial(segment_edit.delete_segment, segmentation_id=segmentation_id, segment=segment)
    return await run_analysis(ctx, work, "delete")


async def rename_segment(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: SegmentName,
    new_name: Annotated[str | None, Field(min_length=1, max_length=128, description="the new name")] = None,
    color: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]] | None,
        Field(min_length=3, max_length=3, description="RGB, 0..1"),
    ] = None,
    terminology: Annotated[
        bool, Field(description="attach the standard SNOMED CT code the name has (lesion, liver...), if any")
    ] = True,
) -> EditResult:
    """Rename and/or recolour a segment, with the standard terminology code its name has."""
    work = partial(
        segment_edit.rename_segment,
        segmentation_id=segmentation_id,
        segment=segment,
        new_name=new_name,
        color=tuple(color) if color else None,
        use_terminology=terminology,
    )
    return await run_analysis(ctx, work, "rename")


async def segment_statistics(
    ctx: Context,
    segmentation_id: SegmentationId,
    segment: Annotated[
        str | None, Field(max_length=256, description="one segment (name or ID); all when omitted")
    ] = None,
    volume_id: VolumeId = None,
    surface: Annotated[
        bool, Field(description="also the surface area (builds the closed surface: slower)")
    ] = True,
) -> StatisticsResult:
    """Slicer's Segment Statistics for every segment in one call: voxel count, volume (mm³, mL),
    surface area, mean/SD/min/max/median intensity, centroid (RAS) and bounding box."""
    work = partial(
        segment_stats.statistics,
        segmentation_id=segmentation_id,
        segment=segment,
        volume_id=volume_id,
        surface=surface,
    )
    return await run_analysis(ctx, work, "statistics")


async def undo_last_edit(ctx: Context) -> UndoResult:
    """Revert the last analysis edit (segment edits, new segmentations, placed markups) as one step."""

    def undo(ws: Workspace) -> UndoResult:
        step = ws.history.undo()
        return UndoResult(
            undone=step.description, undo_steps=len(ws.history), affected_node_ids=step.node_ids
        )

    return await run_analysis(ctx, undo, "undo")


def register(server: MCPServer) -> None:
    server.add_tool(create_segmentation, title="Create segmentation", annotations=ADDS)
    server.add_tool(segment_threshold, title="Threshold a segment", annotations=OVERWRITES)
    server.add_tool(segment_grow_from_seeds, title="Grow segments from seeds", annotations=EDITS)
    server.add_tool(segment_islands, title="Segment islands", annotations=EDITS)
    server.add_tool(segment_margin, title="Segment margin", annotations=EDITS)
    server.add_tool(segment_smoothing, title="Smooth a segment", annotations=EDITS)
    server.add_tool(segment_logical, title="Combine segments", annotations=EDITS)
    server.add_tool(delete_segment, title="Delete segment", annotations=REMOVES)
    server.add_tool(rename_segment, title="Rename segment", annotations=SETS)
    server.add_tool(segment_statistics, title="Segment statistics", annotations=READS)
    server.add_tool(undo_last_edit, title="Undo last edit", annotations=EDITS)
