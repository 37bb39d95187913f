"""SEG and SR out of the scene into a real Orthanc, queried back, and a SEG loaded back voxel for voxel.

The source series is uploaded to Orthanc and loaded with load_series, segments are added over
it in the headless scene, and everything after that goes through the MCP tools.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
import requests

from fixtures.core import loose_modes
from fixtures.orthanc import Orthanc, make_ct_series, orthanc_config
from fixtures.scene import call_tool, call_tools, error_of
from SlicerMCPLib.core.scene_backend import SegmentationArray, SegmentMask
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.service import DicomService
from SlicerMCPLib.scene import segment_io
from SlicerMCPLib.serving.server import build_server

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"


@pytest.fixture
def results_server(orthanc: Orthanc, clean_backend: Any) -> Any:
    services = Services(config=orthanc_config(orthanc, allow={"dicom_send": True}), backend=clean_backend)
    yield build_server(services)
    if services.existing(DicomService) is not None:
        services.existing(DicomService).close()


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


def _masks(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    k, j, i = np.indices(shape)
    lesion = ((k - 5) / 3.0) ** 2 + ((j - 12) / 6.0) ** 2 + ((i - 9) / 5.0) ** 2 < 1
    organ = (j > 4) & (j < 20) & (i > 2) & (i < 17) & (k > 1)  # overlaps the lesion
    return lesion, organ


def _scene_with_segments(server: Any, backend: Any, run_on_scene: Any, orthanc: Orthanc) -> tuple[Any, dict]:
    spec, datasets = make_ct_series()
    orthanc.upload(datasets)
    loaded = ok(call_tool(server, "load_series", {"series_instance_uid": spec.series_uid}))
    volume_id = loaded["loaded"][0]["node"]["id"]
    lesion, organ = _masks(tuple(reversed(loaded["loaded"][0]["node"]["volume"]["dimensions"])))

    def add() -> str:
        seg = SegmentationArray(
            "Findings",
            [
                SegmentMask("1", "Lesion", lesion, (1.0, 0.1, 0.1)),
                SegmentMask("2", "Liver", organ, (0.8, 0.5, 0.3)),
            ],
            volume_id,
        )
        return segment_io.add_segmentation(backend.app, seg, "test").GetID()

    return spec, {"volume_id": volume_id, "seg_id": run_on_scene(add), "lesion": lesion, "organ": organ}


def test_seg_export_references_the_source_and_round_trips_through_orthanc(
    results_server: Any, clean_backend: Any, run_on_scene: Any, orthanc: Orthanc
) -> None:
    spec, scene = _scene_with_segments(results_server, clean_backend, run_on_scene, orthanc)
    seg = ok(call_tool(results_server, "export_dicom_seg", {"segmentation_node_id": scene["seg_id"]}))
    assert seg["study_instance_uid"] == spec.study_uid and seg["patient_id"] == spec.patient_id
    assert seg["source_series_instance_uid"] == spec.series_uid and seg["source_images"] == spec.slices
    assert not seg["source_images_created"]
    by_label = {s["label"]: s for s in seg["segments"]}
    assert by_label["Lesion"]["type"] == "SCT^52988006^Lesion"
    assert by_label["Liver"]["type"] == "SCT^10200004^Liver"
    voxel_mm3 = 0.8 * 0.7 * 2.5
    assert by_label["Lesion"]["voxels"] == int(scene["lesion"].sum())
    assert by_label["Lesion"]["volume_mm3"] == pytest.approx(scene["lesion"].sum() * voxel_mm3, rel=1e-6)

    written = pydicom.dcmread(seg["file"])
    assert written.SOPClassUID == SEG_CLASS
    source_frame_of_reference = written.FrameOfReferenceUID
    refs = written.ReferencedSeriesSequence[0]
    assert refs.SeriesInstanceUID == spec.series_uid and len(refs.ReferencedInstanceSequence) == spec.slices
    assert written.SegmentsOverlap == "YES"  # the lesion lies inside the organ, both kept whole

    stored = ok(
        call_tool(results_server, "store_results_to_pacs", {"sop_instance_uids": [seg["sop_instance_uid"]]})
    )
    assert stored["success"] and stored["method"] == "stow-rs" and stored["verified"] == 1
    (on_order,) = stored["ris_orders"]  # allow.ris_write is off here: the RIS is left alone and says why
    assert on_order["accession_number"] == spec.patient_id[-8:] and not on_order["linked"]
    assert "allow.ris_write is off" in on_order["note"] and on_order["stored_results"] == []
    assert orthanc.count_instances(seg["series_instance_uid"]) == 1
    # what Orthanc itself says it holds, asked over its REST API (not through our code)
    tags = requests.get(
        f"{orthanc.url}/instances/{orthanc.orthanc_id(seg['sop_instance_uid'])}/simplified-tags", timeout=10
    ).json()
    assert tags["Modality"] == "SEG" and tags["FrameOfReferenceUID"] == source_frame_of_reference

    # load the SEG into an empty scene: its source series comes with it, the masks are the exported ones
    run_on_scene(lambda: clean_backend.scene.Clear(0))
    loaded = ok(call_tool(results_server, "load_series", {"series_instance_uid": seg["series_instance_uid"]}))
    classes = [item["node"]["class_name"] for item in loaded["loaded"]]
    assert classes == ["vtkMRMLScalarVolumeNode", "vtkMRMLSegmentationNode"]
    seg_node = loaded["loaded"][1]["node"]
    assert [s["name"] for s in seg_node["segments"]] == ["Lesion", "Liver"]
    back = run_on_scene(
        lambda: segment_io.export_segments(
            clean_backend.app, seg_node["id"], None, loaded["loaded"][0]["node"]["id"], "t"
        )
    )
    assert np.array_equal(back.segments[0].mask, scene["lesion"])
    assert np.array_equal(back.segments[1].mask, scene["organ"])  # overlap kept


def test_sr_reports_segments_and_markups_and_is_stored_by_c_store(
    results_server: Any, clean_backend: Any, run_on_scene: Any, orthanc: Orthanc
) -> None:
    spec, scene = _scene_with_segments(results_server, clean_backend, run_on_scene, orthanc)
    seg = ok(
        call_tool(
            results_server,
            "export_dicom_seg",
            {"segmentation_node_id": scene["seg_id"], "segments": ["Lesion"]},
        )
    )
    assert [s["label"] for s in seg["segments"]] == ["Lesion"]
    sr = ok(
        call_tool(
            results_server,
            "export_dicom_sr",
            {
                "seg_sop_instance_uid": seg["sop_instance_uid"],
                "measurements": [
                    {"segment": "Lesion", "quantity": "mean", "value": 41.5, "unit": "[hnsf'U]"}
                ],
                "markups": [{"name": "L-1", "value": 12.25}],
                "observer": "Doe^Jane",
            },
        )
    )
    assert sr["study_instance_uid"] == spec.study_uid
    quantities = {(m["tracking_id"], m["quantity"]): m for m in sr["measurements"]}
    assert quantities[("Lesion", "volume")]["value"] == pytest.approx(
        seg["segments"][0]["volume_mm3"], rel=1e-6
    )
    assert quantities[("L-1", "length")]["unit"] == "mm"

    stored = ok(
        call_tool(
            results_server,
            "store_results_to_pacs",
            {"sop_instance_uids": [seg["sop_instance_uid"], sr["sop_instance_uid"]], "method": "c-store"},
        )
    )
    assert (
        stored["success"]
        and stored["verified"] == 2
        and {i["kind"] for i in stored["instances"]} == {"SEG", "SR"}
    )

    # read the SR back from Orthanc and check what it says with highdicom's reader
    data = requests.get(
        f"{orthanc.url}/instances/{orthanc.orthanc_id(sr['sop_instance_uid'])}/file", timeout=10
    ).content
    report = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(data)))
    assert report.SOPClassUID == SR_CLASS and report.PatientID == spec.patient_id
    group = report.content.get_volumetric_roi_measurement_groups()[0]
    assert group.referenced_segment.referenced_sop_instance_uid == seg["sop_instance_uid"]
    values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    assert values["Volume"][1] == "mm3" and values["Attenuation Coefficient"] == (41.5, "[hnsf'U]")
    referenced = {
        ref.ReferencedSOPInstanceUID
        for study in report.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert seg["sop_instance_uid"] in referenced and len(referenced) == spec.slices + 1


def test_store_is_gated_and_unknown_results_are_refused(orthanc: Orthanc, clean_backend: Any) -> None:
    server = build_server(Services(config=orthanc_config(orthanc), backend=clean_backend))
    err = error_of(call_tool(server, "store_results_to_pacs", {"sop_instance_uids": ["1.2.3"]}))
    assert err["code"] == "OPERATION_DISABLED" and "dicom_send" in err["message"]
    err = error_of(call_tool(server, "export_dicom_sr", {"seg_sop_instance_uid": "1.2.3"}))
    assert err["code"] == "INVALID_PARAMETER" and "export_dicom_seg" in err["message"]


def test_a_volume_without_dicom_gets_its_images_made_and_stored_with_the_seg(
    results_server: Any, clean_backend: Any, orthanc: Orthanc
) -> None:
    from SlicerMCPLib.scene.demo import load_demo_scene

    run = clean_backend.gateway.call
    run(lambda: load_demo_scene(clean_backend))
    seg_id = run(lambda: clean_backend.scene.GetFirstNodeByClass("vtkMRMLSegmentationNode").GetID())
    results = call_tools(
        results_server,
        [
            (
                "export_dicom_seg",
                {"segmentation_node_id": seg_id, "segments": ["Lesion"], "patient_id": "DEMO1"},
            )
        ],
    )
    seg = ok(results[0])
    assert seg["source_images_created"] and seg["patient_id"] == "DEMO1" and seg["source_images"] == 64
    stored = ok(
        call_tool(results_server, "store_results_to_pacs", {"sop_instance_uids": [seg["sop_instance_uid"]]})
    )
    assert stored["verified"] == 65 and orthanc.count_instances(seg["source_series_instance_uid"]) == 64


def test_overlapping_masks_stacked_with_the_same_values_each_segment_contiguous() -> None:
    """The segment-last view highdicom is given holds the plain stack's values (so the SEG's frames
    are the same) while each segment stays contiguous (what makes its overlap sum and frames fast)."""
    from SlicerMCPLib.dicom.seg_export import _pixel_array

    lesion, organ = _masks((6, 24, 24))
    organ = organ | lesion  # make sure they overlap
    stacked = _pixel_array([lesion, organ])
    assert stacked.shape == (*lesion.shape, 2)
    assert np.array_equal(stacked, np.stack([lesion, organ], axis=-1))
    assert stacked[..., 0].flags["C_CONTIGUOUS"] and stacked[..., 1].flags["C_CONTIGUOUS"]
    apart = _pixel_array([lesion, organ & ~lesion])
    assert apart.ndim == 3 and apart.max() == 2  # no overlap: a label map


def test_source_headers_from_wado_rs_metadata_are_the_instances_without_their_pixels(
    orthanc: Orthanc, recwarn: pytest.WarningsRecorder
) -> None:
    """The SEG's source headers come from Orthanc's WADO-RS metadata with every bulk data element
    (the pixel data's BulkDataURI) left out before pydicom reads them: no handler, no warning."""
    from SlicerMCPLib.dicom.metadata import _without_bulk_data, series_headers
    from SlicerMCPLib.dicom.move import Target

    spec, datasets = make_ct_series()
    orthanc.upload(datasets)
    config = orthanc_config(orthanc)
    headers = series_headers(
        config.nodes["orthanc"], "orthanc", Target(spec.study_uid, spec.series_uid), dict
    )
    assert not [w for w in recwarn if "bulk data" in str(w.message).lower()]
    by_uid = {str(h.SOPInstanceUID): h for h in headers}
    assert len(by_uid) == spec.slices
    for ds in datasets:
        header = by_uid[str(ds.SOPInstanceUID)]
        assert "PixelData" not in header
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "PatientName"):
            assert header.data_element(keyword).value == ds.data_element(keyword).value
    nested = {
        "00081140": {
            "vr": "SQ",
            "Value": [
                {"00081155": {"vr": "UI", "Value": ["1.2"]}, "00091001": {"vr": "OB", "BulkDataURI": "x"}}
            ],
        },
        "7FE00010": {"vr": "OW", "InlineBinary": "AAAA"},
    }
    assert _without_bulk_data(nested) == {
        "00081140": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2"]}}]}
    }


def test_segments_read_from_their_layer_are_what_slicer_exports(
    clean_backend: Any, run_on_scene: Any
) -> None:
    """export_segments reads a segment on the reference's grid straight from its labelmap layer; on
    another grid, or under a transform, Slicer's ExportSegmentsToLabelmapNode resamples it. Either
    way the mask is Slicer's own export of that segment, overlapping segments kept whole."""
    import asyncio

    import vtk

    from SlicerMCPLib.core.scene_backend import VolumeArray
    from SlicerMCPLib.scene import labelmaps as lm

    shape = (10, 24, 20)
    grid = np.diag([0.7, 0.8, 2.5, 1.0])
    grid[:3, 3] = (-10.0, -20.0, 30.0)
    other = np.diag([0.5, 0.6, 2.0, 1.0])
    other[:3, 3] = (-9.3, -19.1, 31.0)
    source = asyncio.run(clean_backend.add_volume(VolumeArray(np.zeros(shape, np.int16), grid, "source")))
    resampled = asyncio.run(
        clean_backend.add_volume(VolumeArray(np.zeros((12, 30, 28), np.int16), other, "o"))
    )
    lesion, organ = _masks(shape)
    app = clean_backend.app

    def check() -> None:
        seg = SegmentationArray(
            "S", [SegmentMask("1", "Lesion", lesion), SegmentMask("2", "Liver", organ)], source.id
        )
        node = segment_io.add_segmentation(app, seg, "test")
        scene = app.scene
        ids = [node.GetSegmentation().GetNthSegmentID(n) for n in range(2)]
        on_grid = segment_io.export_segments(app, node.GetID(), None, None, "t")
        assert [m.name for m in on_grid.segments] == ["Lesion", "Liver"]
        assert np.array_equal(on_grid.segments[0].mask, lesion) and np.array_equal(
            on_grid.segments[1].mask, organ
        )
        for volume_id, direct in ((source.id, True), (resampled.id, False)):
            reference = scene.GetNodeByID(volume_id)
            assert (lm.same_grid_mask(node, ids[0], lm.volume_image(reference)) is not None) == direct
            got = segment_io.export_segments(app, node.GetID(), None, volume_id, "t")
            for sid, item in zip(ids, got.segments, strict=True):
                assert item.mask.dtype == np.bool_ and item.mask.any()
                assert np.array_equal(item.mask, segment_io._exported_mask(app, node, sid, reference))
        shift = vtk.vtkMatrix4x4()
        shift.SetElement(0, 3, 1.4)  # two columns
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        transform.SetMatrixTransformToParent(shift)
        node.SetAndObserveTransformNodeID(transform.GetID())
        moved = segment_io.export_segments(app, node.GetID(), None, None, "t")
        reference = scene.GetNodeByID(source.id)
        for sid, item in zip(ids, moved.segments, strict=True):
            assert np.array_equal(item.mask, segment_io._exported_mask(app, node, sid, reference))

    run_on_scene(check)


def test_overlap_told_to_highdicom_is_what_its_own_check_finds() -> None:
    """Our Segmentation subclass answers highdicom's pixel check for a boolean stack without its
    per-voxel sum; on every kind of input it must return what highdicom's own check returns (a
    changed private signature fails here too)."""
    from SlicerMCPLib.dicom.seg_export import _pixel_array, _segmentation_class

    ours, theirs = _segmentation_class(), hd.seg.Segmentation
    assert issubclass(ours, theirs)
    lesion, organ = _masks((6, 24, 24))
    empty = np.zeros_like(lesion)
    binary = hd.seg.SegmentationTypeValues.BINARY
    cases = [
        _pixel_array([lesion, organ | lesion]),  # overlapping: a segment-first stack viewed segment-last
        np.stack([lesion, organ & ~lesion], axis=-1),  # a plain stack that does not overlap
        np.stack([empty, empty, empty], axis=-1),
        np.stack([lesion], axis=-1),
        _pixel_array([lesion, organ & ~lesion]),  # a label map
        np.stack([lesion, organ], axis=-1).astype(np.uint8),
    ]
    for pixels in cases:
        numbers = np.arange(1, (pixels.shape[-1] if pixels.ndim == 4 else int(pixels.max())) + 1)
        got = ours._check_and_cast_pixel_array(pixels, numbers, binary, np.uint8)
        want = theirs._check_and_cast_pixel_array(pixels, numbers, binary, np.uint8)
        assert got[1] == want[1] and np.array_equal(got[0], want[0]) and got[0].dtype == want[0].dtype
    assert ours._check_and_cast_pixel_array(cases[0], np.arange(1, 3), binary, np.uint8)[1].value == "YES"
    with pytest.raises(ValueError, match="number of segments"):
        ours._check_and_cast_pixel_array(cases[0], np.arange(1, 4), binary, np.uint8)


def test_exported_seg_and_sr_files_are_private(
    results_server: Any, clean_backend: Any, run_on_scene: Any, orthanc: Orthanc, usual_umask: None
) -> None:
    """A SEG and an SR carry the patient's name and IDs: 0600 files in 0700 folders (issue 15 item 9)."""
    _, scene = _scene_with_segments(results_server, clean_backend, run_on_scene, orthanc)
    seg = ok(call_tool(results_server, "export_dicom_seg", {"segmentation_node_id": scene["seg_id"]}))
    measurements = [{"segment": "Lesion", "quantity": "mean", "value": 41.5, "unit": "[hnsf'U]"}]
    sr = ok(
        call_tool(
            results_server,
            "export_dicom_sr",
            {"seg_sop_instance_uid": seg["sop_instance_uid"], "measurements": measurements},
        )
    )
    folder = Path(seg["file"]).parent
    assert Path(sr["file"]).parent == folder and {p.suffix for p in folder.iterdir()} == {".dcm"}
    assert loose_modes(folder.parent) == {}  # the storage folder, results/ and both files


def test_results_stored_and_read_back_over_one_association_each_and_a_lost_one_is_missed(
    results_server: Any,
    clean_backend: Any,
    run_on_scene: Any,
    orthanc: Orthanc,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """C-STORE and its verifying C-FIND share one association (as storescu uses one); retrieving or
    loading that series again is one C-GET association: the instances it holds are the ones we stored
    and verified, so no C-FIND lists them first. Each must still arrive: one the PACS lost is named."""
    spec, scene = _scene_with_segments(results_server, clean_backend, run_on_scene, orthanc)
    seg = ok(call_tool(results_server, "export_dicom_seg", {"segmentation_node_id": scene["seg_id"]}))
    uid, series = seg["sop_instance_uid"], seg["series_instance_uid"]
    caplog.set_level("DEBUG", logger="SlicerMCPLib.dicom")

    def associations() -> int:
        opened = [r for r in caplog.records if r.getMessage().startswith("association with")]
        caplog.clear()
        return len(opened)

    caplog.clear()
    stored = ok(
        call_tool(results_server, "store_results_to_pacs", {"sop_instance_uids": [uid], "method": "c-store"})
    )
    assert stored["verified"] == 1 and stored["instances"][0]["verified"] and associations() == 1
    assert orthanc.count_instances(series) == 1

    by_get = {"series_instance_uid": series, "study_instance_uid": spec.study_uid, "method": "c-get"}
    got = ok(call_tool(results_server, "retrieve_series", by_get))
    assert got["instances"] == 1 and associations() == 1
    assert pydicom.dcmread(Path(got["directory"]) / f"{uid}.dcm").SOPInstanceUID == uid

    # the source volume is in the scene already; the SEG itself comes by the node's method (DICOMweb
    # here) with neither its modality nor its instances asked for by C-FIND: no association at all
    loaded = ok(call_tool(results_server, "load_series", by_get))
    assert [item["node"]["class_name"] for item in loaded["loaded"]] == ["vtkMRMLSegmentationNode"]
    assert associations() == 0

    orthanc.delete_instance(uid)  # the PACS loses it behind our back
    err = error_of(call_tool(results_server, "retrieve_series", by_get))
    assert err["code"] == "RETRIEVE_INCOMPLETE" and err["details"]["missing"] == [uid]
    assert err["details"]["expected"] == 1
