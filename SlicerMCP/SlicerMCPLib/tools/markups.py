"""Markups tools: place points, lines, angles, ROIs and planes in RAS and read Slicer's measurements."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from ..core.analysis_models import MarkupInfo, MarkupList, MarkupType
from ..scene import markups
from .annotations import ADDS, READS
from .running import run_analysis
from .segments import Point


async def place_markup(
    ctx: Context,
    type: Annotated[
        MarkupType,
        Field(
            description="point_list (1+ points), line (2), angle (3, vertex second), roi (centre + size_mm, or 2 corners), plane (3)"
        ),
    ],
    points: Annotated[
        list[Point], Field(min_length=1, max_length=1000, description="control points in RAS mm")
    ],
    name: Annotated[str | None, Field(max_length=256, description="node name")] = None,
    size_mm: Annotated[
        list[Annotated[float, Field(gt=0)]] | None,
        Field(min_length=3, max_length=3, description="roi from one point: edge lengths [R, A, S] mm"),
    ] = None,
) -> MarkupInfo:
    """Place a markup (Slicer's Markups) and return it with its measurement: a line's length in mm,
    an angle in degrees, an ROI's size. Shown in screenshots; undo_last_edit removes it."""
    work = partial(markups.place, markup_type=type, points=points, name=name, size_mm=size_mm)
    return await run_analysis(ctx, work, "place markup")


async def measure_markup(
    ctx: Context,
    node_id: Annotated[str, Field(min_length=1, max_length=256, description="markups node ID")],
) -> MarkupInfo:
    """A markup's control points and Slicer's measurement of it (length mm, angle degrees, ROI size)."""
    return await run_analysis(ctx, partial(markups.measure, node_id=node_id), "measure markup")


async def list_markups(ctx: Context) -> MarkupList:
    """Every markup in the scene (points, lines, angles, ROIs, planes) with its measurements."""
    return await run_analysis(ctx, markups.list_markups, "list markups")


def register(server: MCPServer) -> None:
    server.add_tool(place_markup, title="Place markup", annotations=ADDS)
    server.add_tool(measure_markup, title="Measure markup", annotations=READS)
    server.add_tool(list_markups, title="List markups", annotations=READS)
