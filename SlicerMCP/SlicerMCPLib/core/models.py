"""Typed results of the scene tools; the MCP client receives them as structuredContent."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, Field

from .breaker import BreakerStatus

ViewType = Literal["axial", "sagittal", "coronal", "3d", "full"]
LookFromAxis = Literal["left", "right", "anterior", "posterior", "superior", "inferior"]
GuiMode = Literal["full", "viewers"]
LayoutName = Literal[
    "FourUp",
    "OneUp3D",
    "OneUpRedSlice",
    "OneUpYellowSlice",
    "OneUpGreenSlice",
    "Conventional",
    "ConventionalWidescreen",
    "ThreeOverThree",
    "FourOverFour",
    "Dual3D",
    "SideBySide",
    "CompareView",
]
LAYOUT_NAMES: tuple[str, ...] = get_args(LayoutName)


class SegmentInfo(BaseModel):
    id: str
    name: str
    color: tuple[float, float, float] = Field(description="RGB, 0..1")
    label_value: int | None = None


class VolumeInfo(BaseModel):
    dimensions: tuple[int, int, int] = Field(description="voxels along I, J, K")
    spacing: tuple[float, float, float] = Field(description="mm")
    origin: tuple[float, float, float] = Field(description="RAS, mm")
    scalar_range: tuple[float, float] | None = None
    scalar_type: str | None = None
    is_labelmap: bool = False


class NodeSummary(BaseModel):
    """The fields every listed node carries, plus volume geometry or segments where they apply."""

    id: str
    name: str
    class_name: str
    visible: bool | None = Field(default=None, description="display visibility, None when not displayable")
    volume: VolumeInfo | None = None
    segments: list[SegmentInfo] | None = None


class NodeList(BaseModel):
    nodes: list[NodeSummary]
    total: int = Field(description="nodes matching the filters, before paging")
    offset: int
    limit: int
    has_more: bool


class NodeDetails(NodeSummary):
    """Everything known about one node."""

    attributes: dict[str, str] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict, description="node properties by name")
    references: dict[str, list[str]] = Field(default_factory=dict, description="role -> referenced node ids")
    storage_file: str | None = None
    notes: list[str] = Field(
        default_factory=list, description="what this backend could not read exactly, and how to get it"
    )


class ScreenshotInfo(BaseModel):
    view_type: ViewType
    width: int
    height: int
    scroll_position: float | None = None
    slice_offset_mm: float | None = None
    look_from_axis: LookFromAxis | None = None
    background_volume_id: str | None = None
    renderer: str = Field(description="what drew it: slicer, headless-vtk or webserver")
    image_format: Literal["png", "jpeg"] = Field(
        default="png", description="jpeg when a PNG would not fit in one MCP message (notes say so)"
    )
    notes: list[str] = Field(default_factory=list)


class SegmentVolume(BaseModel):
    segment_id: str
    name: str
    label_value: int | None = None
    voxel_count: int
    volume_mm3: float
    volume_ml: float


class VolumeMeasurement(BaseModel):
    node_id: str
    node_name: str
    node_class: str
    voxel_volume_mm3: float
    segments: list[SegmentVolume]


class LoadedNodes(BaseModel):
    nodes: list[NodeSummary]
    source: str = Field(description="file, URL or sample name the nodes came from")


class LayoutResult(BaseModel):
    layout: str
    gui_mode: GuiMode | None = None
    applied: bool
    notes: list[str] = Field(default_factory=list, description="what the backend could not do, and why")


class PythonResult(BaseModel):
    success: bool
    stdout: str = ""
    stderr: str = ""
    result: str | None = Field(default=None, description="repr of the last expression's value, if any")
    error: str | None = None
    traceback: str | None = None
    namespace: str | None = Field(
        default=None, description="the namespace the code ran in: pass it as `namespace` to run in it again"
    )
    notes: list[str] = Field(default_factory=list)


class ClearResult(BaseModel):
    removed_nodes: int


class SceneStatus(BaseModel):
    backend: str = Field(description="mrml (in Slicer), headless, webserver or proxy")
    connection: Literal["connected", "unreachable"] = Field(
        default="connected",
        description="unreachable: Slicer did not answer; `error` says why, the counts are unknown (None)",
    )
    error: dict[str, Any] | None = Field(
        default=None, description="when unreachable: the coded error (code, message, details)"
    )
    slicer_version: str | None = None
    node_count: int | None = None
    volume_count: int | None = None
    segmentation_count: int | None = None
    gui: bool | None = Field(default=None, description="whether a GUI shows the views")
    rendering_3d: bool | None = None
    settings: dict[str, str] = Field(
        default_factory=dict,
        description="each setting not at its default -> where it came from ('file PATH', "
        "'environment NAME', 'command line'); values are not shown",
    )
    notes: list[str] = Field(default_factory=list)
    peers: list[BreakerStatus] = Field(
        default_factory=list,
        description="circuit breaker of each peer called so far (WebServer, DICOM nodes, FHIR servers, "
        "RIS database): open ones fail fast with CIRCUIT_OPEN until retry_at",
    )


class SampleDataInfo(BaseModel):
    name: str
    description: str
    file_name: str
    sha256: str
    size_bytes: int | None = None
    cached: bool


class SampleDataList(BaseModel):
    samples: list[SampleDataInfo]
    source: str = Field(description="base URL or mirror folder the files come from")
