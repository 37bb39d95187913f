"""Results out of the scene: DICOM SEG and TID 1500 SR exports, and storing them in the PACS.

export_* build the objects (highdicom) in worker threads and keep them in the session's
results registry (and as files); store_results_to_pacs sends them and asks the PACS back.
The FHIR report tools are in tools/reports.py.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import numpy as np
import pydicom
from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from ..core.errors import InvalidParameter
from ..core.scene_backend import SegmentationArray
from ..core.services import Services, services_of
from ..dicom.codes import QUANTITIES, UNITS, segment_codes
from ..dicom.export import volume_to_datasets
from ..dicom.metadata import series_headers
from ..dicom.move import Target
from ..dicom.results import (
    Exported,
    MeasurementResult,
    ResultsRegistry,
    SegExport,
    SegmentResult,
    SrExport,
    StoreMethod,
    StoreResultsResult,
    store_and_verify,
)
from ..dicom.seg_export import AlgorithmType, build_seg, order_sources
from ..dicom.service import DicomService
from ..dicom.sr_export import SegmentFindings, Value, build_sr
from ..ris.links import object_link
from ..ris.models import ResultLink
from .annotations import ADDS, ADDS_FROM_REMOTE
from .confirm import asks_person
from .dicom import node_text
from .order_links import RisOrderUpdate, link_to_orders
from .running import DomainRunner, run_blocking

_run = DomainRunner(DicomService)

NodeId = Annotated[str, Field(min_length=1, max_length=200, description="a node id from list_scene_nodes")]
SopUid = Annotated[str, Field(min_length=1, max_length=64, description="SOP Instance UID an export returned")]
Quantity = Literal["volume", "mean", "minimum", "maximum", "standard_deviation", "diameter", "length"]
Unit = Literal["mm3", "mL", "cm3", "mm", "cm", "mm2", "[hnsf'U]", "1"]
assert set(QUANTITIES) == set(Quantity.__args__) and set(UNITS) == set(Unit.__args__)  # type: ignore[attr-defined]


class SegmentMeasurement(BaseModel):
    """A value measured on one segment of the SEG (e.g. from segment_statistics)."""

    segment: str = Field(min_length=1, max_length=64, description="segment label (or number) in the SEG")
    quantity: Quantity
    value: float
    unit: Unit = Field(description="UCUM unit: mm3, mL, mm, [hnsf'U] (Hounsfield), 1 (unitless)...")


class MarkupMeasurement(BaseModel):
    """A markup measurement (a line's length, a diameter) to report besides the segments."""

    name: str = Field(min_length=1, max_length=64, description="the markup's name, e.g. 'L-1'")
    quantity: Quantity = "length"
    value: float
    unit: Unit = "mm"


TYPE2_STUDY = ("PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def results_registry(services: Services) -> ResultsRegistry:
    folder = services.domain(DicomService).storage_dir() / "results"
    return services.domain(ResultsRegistry, lambda _: ResultsRegistry(folder))


def _source_headers(dicom: DicomService, segmentation: SegmentationArray) -> list[pydicom.Dataset]:
    """Headers of the reference volume's DICOM images from the current node (no pixel data)."""
    study = segmentation.attributes.get("DICOM.StudyInstanceUID", "")
    series = segmentation.attributes.get("DICOM.SeriesInstanceUID", "")
    name, node = dicom.node()
    return series_headers(node, name, Target(study, series), dicom.fetch_instances)


async def export_dicom_seg(
    ctx: Context,
    segmentation_node_id: NodeId,
    segments: Annotated[
        list[str] | None, Field(description="segment names or ids to export (default: all)")
    ] = None,
    reference_volume_id: Annotated[
        str | None, Field(description="the image the segments belong to (default: the segmentation's source)")
    ] = None,
    series_description: Annotated[
        str | None,
        Field(max_length=64, description="the SEG series' description (default: '<name> segmentation')"),
    ] = None,
    algorithm_type: Annotated[
        AlgorithmType, Field(description="MANUAL (drawn), SEMIAUTOMATIC (threshold, islands...), AUTOMATIC")
    ] = "SEMIAUTOMATIC",
    patient_id: Annotated[
        str | None,
        Field(max_length=64, description="only for a volume not loaded from DICOM: its patient ID"),
    ] = None,
    patient_name: Annotated[
        str | None, Field(max_length=64, description="likewise, DICOM PN Family^Given")
    ] = None,
) -> SegExport:
    """Export segments as a DICOM Segmentation (SEG) over the images they were drawn on: same study,
    frame of reference and patient, each source image referenced, segment labels with SNOMED CT
    category/type codes, voxel-exact on the source grid. Returns the SEG's UIDs, per-segment voxel
    counts and volumes. A volume that came from no DICOM series gets new images made for it (stored
    with the SEG). Nothing leaves the machine: store it with store_results_to_pacs."""
    started = time.perf_counter()
    services = services_of(ctx)
    segmentation = await services.backend.export_segmentation(
        segmentation_node_id, segments, reference_volume_id
    )
    created: list[pydicom.Dataset] = []
    if segmentation.attributes.get("DICOM.SeriesInstanceUID"):
        sources = await _run(ctx, lambda dicom, _: _source_headers(dicom, segmentation))
    else:
        volume = await services.backend.export_volume(segmentation.reference_volume_id)
        created = volume_to_datasets(volume, patient_id=patient_id, patient_name=patient_name, modality="CT")
        for ds in created:  # the study's Type 2 attributes, empty (a SEG or SR copies them)
            for keyword in TYPE2_STUDY:
                if keyword not in ds:
                    setattr(ds, keyword, "")
        sources = created
    registry = results_registry(services)

    def build() -> Exported:
        seg = build_seg(
            segmentation, sources, series_description=series_description, algorithm_type=algorithm_type
        )
        ordered = order_sources(sources, segmentation.ijk_to_ras, segmentation.segments[0].mask.shape)
        voxel_mm3 = float(abs(np.linalg.det(np.asarray(segmentation.ijk_to_ras)[:3, :3])))
        findings = []
        for number, (item, desc) in enumerate(
            zip(segmentation.segments, seg.SegmentSequence, strict=True), 1
        ):
            voxels = int(np.count_nonzero(item.mask))
            findings.append(
                SegmentFindings(
                    number,
                    item.name,
                    item.terminology,
                    str(desc.TrackingUID),
                    [Value("volume", voxels * voxel_mm3, "mm3")],
                )
            )
        uid = str(seg.SOPInstanceUID)
        return registry.add(
            Exported("SEG", seg, registry.path_for("SEG", uid), ordered, findings, [], created)
        )

    item = await run_blocking(ctx, lambda _: build())
    seg = item.dataset
    rows = []
    for finding in item.findings:
        category, kind = segment_codes(finding.label, finding.terminology)
        volume = finding.values[0].value
        rows.append(
            SegmentResult(
                segment_number=finding.segment_number,
                label=finding.label,
                category=f"{category.scheme}^{category.value}^{category.meaning}",
                type=f"{kind.scheme}^{kind.value}^{kind.meaning}",
                tracking_uid=finding.tracking_uid,
                voxels=int(np.count_nonzero(segmentation.segments[finding.segment_number - 1].mask)),
                volume_mm3=round(volume, 3),
                volume_ml=round(volume / 1000.0, 6),
            )
        )
    return SegExport(
        sop_instance_uid=str(seg.SOPInstanceUID),
        series_instance_uid=str(seg.SeriesInstanceUID),
        study_instance_uid=str(seg.StudyInstanceUID),
        patient_id=str(seg.get("PatientID", "")),
        frame_of_reference_uid=str(seg.FrameOfReferenceUID),
        source_series_instance_uid=str(item.sources[0].SeriesInstanceUID),
        source_images=len(item.sources),
        frames=int(seg.NumberOfFrames),
        segments=rows,
        source_images_created=bool(created),
        file=str(item.file),
        bytes=item.file.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
    )


def _findings(seg: Exported, measurements: list[SegmentMeasurement]) -> list[SegmentFindings]:
    """The SEG's segments with their volumes, plus the caller's values (a given volume replaces ours)."""
    by_key = {}
    for f in seg.findings:
        by_key[f.label.lower()] = by_key[str(f.segment_number)] = f
    out = {
        f.segment_number: SegmentFindings(
            f.segment_number, f.label, f.terminology, f.tracking_uid, list(f.values)
        )
        for f in seg.findings
    }
    for m in measurements:
        f = by_key.get(m.segment.lower())
        if f is None:
            raise InvalidParameter(
                f"the SEG has no segment {m.segment!r}; its segments are {', '.join(x.label for x in seg.findings)}",
                details={"segment": m.segment},
            )
        values = out[f.segment_number].values
        if m.quantity == "volume":
            values[:] = [v for v in values if v.quantity != "volume"]
        values.append(Value(m.quantity, m.value, m.unit))
    return list(out.values())


async def export_dicom_sr(
    ctx: Context,
    seg_sop_instance_uid: SopUid,
    measurements: Annotated[
        list[SegmentMeasurement] | None,
        Field(
            description="extra values per segment (mean, max... from segment_statistics); volumes are included"
        ),
    ] = None,
    markups: Annotated[list[MarkupMeasurement] | None, Field(description="line lengths, diameters")] = None,
    observer: Annotated[str | None, Field(max_length=64, description="reporting person, DICOM PN")] = None,
    final: Annotated[bool, Field(description="mark the report final (verified by a person)")] = False,
    series_description: Annotated[
        str, Field(max_length=64, description="the SR series' description")
    ] = "Measurement report",
) -> SrExport:
    """Export a DICOM TID 1500 Measurement Report (Comprehensive 3D SR) for a SEG made by
    export_dicom_seg: one measurement group per segment (tracking id/UID, the segment referenced
    in the SEG, its finding type, its volume and any values you pass, SNOMED CT/DCM codes and UCUM
    units) plus one per markup measurement; the SEG and source images are its evidence. Store it
    with store_results_to_pacs."""
    services = services_of(ctx)
    registry = results_registry(services)
    seg = registry.get(seg_sop_instance_uid, "SEG")
    findings = _findings(seg, measurements or [])
    marks = [(m.name, Value(m.quantity, m.value, m.unit)) for m in markups or []]

    def build() -> Exported:
        sr = build_sr(
            seg.dataset,
            seg.sources,
            findings,
            marks,
            series_description=series_description,
            observer=observer,
            final=final,
        )
        uid = str(sr.SOPInstanceUID)
        return registry.add(Exported("SR", sr, registry.path_for("SR", uid), [], findings, marks))

    item = await run_blocking(ctx, lambda _: build())
    rows = [
        MeasurementResult(
            tracking_id=f.label,
            tracking_uid=f.tracking_uid,
            segment_number=f.segment_number,
            quantity=v.quantity,
            value=v.value,
            unit=v.unit,
        )
        for f in findings
        for v in f.values
    ]
    rows += [
        MeasurementResult(tracking_id=n, quantity=v.quantity, value=v.value, unit=v.unit) for n, v in marks
    ]
    sr = item.dataset
    return SrExport(
        sop_instance_uid=str(sr.SOPInstanceUID),
        series_instance_uid=str(sr.SeriesInstanceUID),
        study_instance_uid=str(sr.StudyInstanceUID),
        patient_id=str(sr.get("PatientID", "")),
        seg_sop_instance_uid=seg_sop_instance_uid,
        measurements=rows,
        file=str(item.file),
        bytes=item.file.stat().st_size,
    )


StorePerson = asks_person(
    "dicom_send",
    lambda services, sop_instance_uids, node, method: (
        f"Store {len(sop_instance_uids)} exported result object(s) ({method or 'default method'}):\n"
        + "\n".join(f"  {uid}" for uid in sop_instance_uids)
        + f"\nin {node_text(services, node)}"
    ),
)


class StoredResults(StoreResultsResult):
    ris_orders: list[RisOrderUpdate] = Field(
        default_factory=list,
        description="per accession number: the mini-RIS order that now lists the verified SEG/SR, or why not",
    )


async def store_results_to_pacs(
    ctx: Context,
    sop_instance_uids: Annotated[
        list[SopUid], Field(min_length=1, max_length=100, description="SEG/SR UIDs from export_dicom_seg/sr")
    ],
    node: Annotated[
        str | None, Field(description="configured node to store to (default: the current one)")
    ] = None,
    method: Annotated[
        StoreMethod | None,
        Field(description="c-store or stow-rs (default: stow-rs when the node has dicomweb_url)"),
    ] = None,
    person: StorePerson = None,
) -> StoredResults:
    """Store exported SEG/SR objects (and images made for a non-DICOM volume) in the PACS by C-STORE or
    STOW-RS, then query the PACS back (instance-level C-FIND) and count only what it lists: fails with
    DICOM_SEND_FAILED naming what is missing. The verified SEG/SR are then linked to the mini-RIS order
    of their accession number (when allow.ris_write is on), so the order lists them: see ris_orders.
    Off unless allow.dicom_send is true."""
    services = services_of(ctx)
    services.require_allowed("dicom_send", "Storing results in a PACS", person)
    dicom = services.domain(DicomService)
    name, target = dicom.node(node)
    objects = results_registry(services).datasets_for(sop_instance_uids)
    chosen: StoreMethod = method or ("stow-rs" if target.dicomweb_url else "c-store")
    stored = await _run(ctx, lambda _, __: store_and_verify(target, name, dicom.calling_aet, objects, chosen))
    verified = {i.sop_instance_uid for i in stored.instances if i.verified}
    dicom.note_stored(
        name,
        {
            str(ds.SOPInstanceUID): (str(ds.SeriesInstanceUID), str(ds.SOPClassUID))
            for _, ds, _ in objects
            if str(ds.SOPInstanceUID) in verified
        },
    )
    by_accession: dict[str, list[ResultLink]] = {}
    for kind, ds, _ in objects:
        if kind in ("SEG", "SR") and str(ds.SOPInstanceUID) in verified:
            accession = str(ds.get("AccessionNumber", "") or "").strip()
            by_accession.setdefault(accession, []).append(object_link(kind, ds, name))
    return StoredResults(**stored.model_dump(), ris_orders=await link_to_orders(ctx, by_accession))


def register(server: MCPServer) -> None:
    server.add_tool(export_dicom_seg, title="Export segments as DICOM SEG", annotations=ADDS)
    server.add_tool(export_dicom_sr, title="Export measurements as DICOM SR (TID 1500)", annotations=ADDS)
    server.add_tool(store_results_to_pacs, title="Store results in PACS", annotations=ADDS_FROM_REMOTE)
