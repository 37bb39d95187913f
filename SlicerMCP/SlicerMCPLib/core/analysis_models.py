"""Typed results of the analysis tools (segment editing, statistics, markups, undo).

Flat on purpose: clients validate structuredContent against the output schema on every call,
and nested optional objects make that check slow (see serving/output_schema.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MarkupType = Literal["point_list", "line", "angle", "roi", "plane"]
IslandMode = Literal["keep_largest", "remove_small", "split"]
SmoothingMethod = Literal["median", "closing", "opening"]
LogicalOperation = Literal["union", "subtract", "intersect", "copy"]


class SegmentChange(BaseModel):
    """One segment before and after an edit (voxel counts in the segmentation's geometry)."""

    segment_id: str
    name: str
    voxels_before: int = Field(description="0 for a segment the edit created")
    voxels_after: int = Field(description="0 for a segment the edit removed")
    volume_mm3_after: float
    status: Literal["created", "modified", "unchanged", "removed"]


class EditResult(BaseModel):
    """What an edit changed; `undo_last_edit` reverts it as one step."""

    operation: str
    segmentation_id: str
    source_volume_id: str | None = Field(description="the volume whose grid and intensities the edit used")
    changes: list[SegmentChange]
    undo_steps: int = Field(description="edits that undo_last_edit can still revert, this one included")
    notes: list[str] = Field(default_factory=list)


class SegmentStatistics(BaseModel):
    """Slicer's Segment Statistics for one segment: labelmap, scalar volume and closed surface measures."""

    segment_id: str
    name: str
    voxel_count: int
    volume_mm3: float
    volume_ml: float
    surface_area_mm2: float | None = Field(
        description="of the closed surface; None when not asked for or empty"
    )
    mean: float | None = Field(description="intensity inside the segment, in the volume's units (e.g. HU)")
    std: float | None = Field(description="population standard deviation of the intensity")
    min: float | None
    max: float | None
    median: float | None
    centroid_ras: list[float] | None = Field(description="[R, A, S] mm")
    bounding_box_ras: list[float] | None = Field(
        description="axis-aligned box of the voxel centres: [Rmin, Rmax, Amin, Amax, Smin, Smax] mm"
    )


class StatisticsResult(BaseModel):
    segmentation_id: str
    volume_id: str | None = Field(description="the scalar volume the intensity measures come from")
    segments: list[SegmentStatistics]
    notes: list[str] = Field(default_factory=list)


class MarkupInfo(BaseModel):
    """A markups node: its control points and the measurements Slicer keeps for it."""

    node_id: str
    name: str
    type: MarkupType
    points_ras: list[list[float]] = Field(description="control points, [R, A, S] mm each")
    length_mm: float | None = Field(default=None, description="line: distance between its two points")
    angle_deg: float | None = Field(default=None, description="angle: at the second point")
    roi_size_mm: list[float] | None = Field(default=None, description="ROI: edge lengths along its axes")
    plane_normal: list[float] | None = Field(default=None, description="plane: unit normal in RAS")
    undo_steps: int | None = Field(default=None, description="set when the call changed the scene")


class MarkupList(BaseModel):
    markups: list[MarkupInfo]


class UndoResult(BaseModel):
    undone: str = Field(description="the edit that was reverted")
    undo_steps: int = Field(description="edits that can still be reverted")
    affected_node_ids: list[str]
