"""DICOM faults against real peers: PACS down, wrong called AE, unknown move destination,
instances lost mid-retrieve, a corrupt instance, a result set larger than the limit.
Also C-MOVE to dcmtk's storescp, the dicom_hl7 environment switch, and a findscu cross-check."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from fixtures.core import free_port
from fixtures.orthanc import (
    DCMTK_AET,
    Orthanc,
    make_ct_series,
    orthanc_config,
    require_binary,
    unique_patient,
)
from fixtures.scene import error_of
from SlicerMCPLib.core.config import load_config
from SlicerMCPLib.core.errors import ErrorCode, SlicerMCPError
from SlicerMCPLib.core.services import Services
from SlicerMCPLib.dicom.move import Target
from SlicerMCPLib.dicom.retrieve import Arrivals, expected_instances, retrieve
from SlicerMCPLib.dicom.service import DicomService
from SlicerMCPLib.serving.server import build_server


def call(server: Any, name: str, args: dict[str, Any] | None = None) -> Any:
    async def main() -> Any:
        async with Client(server) as client:
            return await client.call_tool(name, args or {})

    return asyncio.run(main())


def server_with(orthanc: Orthanc, backend: Any, **config: Any) -> Any:
    return build_server(Services(config=orthanc_config(orthanc, **config), backend=backend))


def test_pacs_down_is_unreachable(orthanc: Orthanc, clean_backend: Any) -> None:
    dead = {"host": "127.0.0.1", "port": free_port(), "ae_title": "DEAD", "timeout_s": 3, "retries": 0}
    server = server_with(orthanc, clean_backend, nodes={"dead": dead}, current_node="dead")
    for tool, args in [("verify_connection", {}), ("query_patients", {"patient_id": "X"})]:
        err = error_of(call(server, tool, args))
        assert err["code"] == "DICOM_NODE_UNREACHABLE"
        assert "verify_connection" in err["message"] and err["details"]["port"] == dead["port"]


def test_read_operations_retry_until_the_node_is_up(orthanc: Orthanc, clean_backend: Any) -> None:
    """C-ECHO to a node that starts listening 1.5 s late succeeds on the second retry (after 1 + 2 s)."""
    import threading

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    port = free_port()
    late = {"host": "127.0.0.1", "port": port, "ae_title": "LATE", "retries": 2}
    server = server_with(orthanc, clean_backend, nodes={"late": late}, current_node="late")
    scp = AE(ae_title="LATE")
    scp.add_supported_context(Verification)
    timer = threading.Timer(1.5, lambda: scp.start_server(("127.0.0.1", port), block=False))
    timer.start()
    try:
        t0 = time.monotonic()
        result = call(server, "verify_connection")
        assert not result.is_error, result.content[0].text
        assert time.monotonic() - t0 >= 1.5
    finally:
        timer.join()
        scp.shutdown()


def test_dicomweb_down_is_unreachable(orthanc: Orthanc, clean_backend: Any) -> None:
    node = orthanc.node_config(dicomweb_url=f"http://127.0.0.1:{free_port()}/dicom-web")
    server = server_with(orthanc, clean_backend, nodes={"web": node}, current_node="web")
    spec, ds = make_ct_series(slices=2)
    orthanc.upload(ds)
    assert error_of(call(server, "load_series", {"series_instance_uid": spec.series_uid}))["code"] == (
        "DICOM_NODE_UNREACHABLE"
    )


def test_wrong_called_ae_is_rejected(orthanc: Orthanc, clean_backend: Any) -> None:
    wrong = orthanc.node_config(ae_title="NOTORTHANC")
    server = server_with(orthanc, clean_backend, nodes={"wrong": wrong}, current_node="wrong")
    err = error_of(call(server, "verify_connection"))
    assert err["code"] == "DICOM_ASSOCIATION_REJECTED"
    assert err["details"]["reason"] == "Called AE title not recognised"


def test_a_rejection_read_after_the_socket_closed_is_still_a_rejection(
    orthanc: Orthanc, clean_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom queues Orthanc's A-ASSOCIATE-RJ, then closes the socket; a requesting thread that
    runs only after the close used to report the node unreachable (1 in 200 under CI load). The
    sleep after sending the request stands for that late scheduling; the rejection is Orthanc's."""
    from pynetdicom.acse import ACSE

    send_request = ACSE.send_request

    def late(self: ACSE) -> None:
        send_request(self)
        time.sleep(0.5)  # the reactor connects, sends the request, reads the RJ and closes

    monkeypatch.setattr(ACSE, "send_request", late)
    wrong = orthanc.node_config(ae_title="NOTORTHANC", retries=0)
    server = server_with(orthanc, clean_backend, nodes={"wrong": wrong}, current_node="wrong")
    err = error_of(call(server, "verify_connection"))
    assert err["code"] == "DICOM_ASSOCIATION_REJECTED"
    assert err["details"]["reason"] == "Called AE title not recognised"


def test_unknown_calling_ae_cannot_query(orthanc: Orthanc, clean_backend: Any) -> None:
    """Orthanc aborts a C-FIND from an AE missing in its DicomModalities: reported as a refusal."""
    server = server_with(orthanc, clean_backend, calling_aet="STRANGER")
    err = error_of(call(server, "query_patients", {"patient_id": "X"}))
    assert err["code"] == "DICOM_ASSOCIATION_REJECTED"
    assert "STRANGER" in err["message"] and err["details"]["operation"] == "C-FIND"


@pytest.fixture
def storescp(orthanc: Orthanc, tmp_path: Path) -> Iterator[Path]:
    """dcmtk's storescp as the move destination registered in Orthanc as DCMTKSCP."""
    binary = require_binary("storescp")
    out = tmp_path / "storescp"
    out.mkdir()
    proc = subprocess.Popen(
        [binary, "--aetitle", DCMTK_AET, "--output-directory", str(out), str(orthanc.dcmtk_port)],
        env={**os.environ, "TCP_NODELAY": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", orthanc.dcmtk_port)) == 0:
                break
        time.sleep(0.05)
    yield out
    proc.terminate()
    proc.wait(timeout=10)


def test_move_series_and_study_to_storescp(orthanc: Orthanc, clean_backend: Any, storescp: Path) -> None:
    config = orthanc_config(orthanc)
    config.allow.dicom_move = True
    server = build_server(Services(config=config, backend=clean_backend))
    spec, ds = make_ct_series(slices=4)
    orthanc.upload(ds)
    result = call(
        server, "move_series", {"destination_node": "dcmtk", "series_instance_uid": spec.series_uid}
    )
    assert not result.is_error, result.content[0].text
    assert result.structured_content["completed"] == 4 and result.structured_content["failed"] == 0
    assert len(list(storescp.iterdir())) == 4
    result = call(server, "move_study", {"destination_node": "dcmtk", "study_instance_uid": spec.study_uid})
    assert result.structured_content["completed"] == 4


def test_pacs_retrieve_as_dicom_hl7_mcp_calls_it(
    orthanc: Orthanc, clean_backend: Any, storescp: Path
) -> None:
    """dicom-hl7-mcp's `pacs_retrieve`: off until DICOM_HL7_PACS_ALLOW_RETRIEVE=true, then a C-MOVE
    to an AE title the PACS knows (storescp, registered in Orthanc, not a node of this config)."""
    spec, ds = make_ct_series(slices=3)
    orthanc.upload(ds)
    args = {"study_instance_uid": spec.study_uid, "destination_ae_title": DCMTK_AET}
    locked = build_server(Services(config=orthanc_config(orthanc), backend=clean_backend))
    err = error_of(call(locked, "pacs_retrieve", args))
    assert err["code"] == "OPERATION_DISABLED" and "DICOM_HL7_PACS_ALLOW_RETRIEVE" in err["message"]
    config = load_config(
        env={"DICOM_HL7_PACS_ALLOW_RETRIEVE": "true"},
        overrides={"nodes": {"orthanc": orthanc.node_config()}, "current_node": "orthanc"},
    )
    server = build_server(Services(config=config, backend=clean_backend))
    done = call(server, "pacs_retrieve", {**args, "series_instance_uid": spec.series_uid})
    assert not done.is_error, done.content[0].text
    assert done.structured_content["completed"] == 3 and done.structured_content["failed"] == 0
    assert len(list(storescp.iterdir())) == 3
    unknown = error_of(call(server, "pacs_retrieve", {**args, "destination_ae_title": "NOBODY"}))
    assert unknown["code"] == "DICOM_MOVE_FAILED" and "NOBODY" in unknown["message"]
    bad = error_of(call(server, "pacs_retrieve", {**args, "destination_ae_title": "A\\B"}))
    assert bad["code"] == "INVALID_PARAMETER"


def test_move_destination_unknown_to_the_pacs(orthanc: Orthanc, clean_backend: Any) -> None:
    nodes = {
        "orthanc": orthanc.node_config(),
        "ghost": {"host": "127.0.0.1", "port": free_port(), "ae_title": "GHOST"},
    }
    env = {"DICOM_HL7_PACS_ALLOW_RETRIEVE": "true"}  # the dicom_hl7 switch enables moves
    config = load_config(
        env=env,
        overrides={"nodes": nodes, "current_node": "orthanc", "calling_aet": "SLICERMCP"},
    )
    assert config.allow.dicom_move is True
    server = build_server(Services(config=config, backend=clean_backend))
    spec, ds = make_ct_series(slices=1)
    orthanc.upload(ds)
    err = error_of(
        call(server, "move_study", {"destination_node": "ghost", "study_instance_uid": spec.study_uid})
    )
    assert err["code"] == "DICOM_MOVE_FAILED" and "GHOST" in err["message"]
    err = error_of(
        call(server, "move_study", {"destination_node": "nowhere", "study_instance_uid": spec.study_uid})
    )
    assert err["code"] == "INVALID_PARAMETER"


@pytest.mark.parametrize("method", ["dicomweb", "c-get", "c-move"])
def test_damaged_pacs_loads_nothing_and_leaves_no_temp_files(
    orthanc: Orthanc, dicom_server: Any, method: str, tmp_path: Path
) -> None:
    """A file vanished from the PACS's storage while its index keeps it. Orthanc then fails the
    instance-level C-FIND (it reads the file for SOPClassUID): a clear error, no volume, no temp files."""
    spec, ds = make_ct_series(slices=5)
    orthanc.upload(ds)
    lost = str(ds[2].SOPInstanceUID)
    orthanc.lose_file(lost)
    result = call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": method})
    err = error_of(result)
    assert err["code"] in ("DICOM_QUERY_FAILED", "RETRIEVE_INCOMPLETE")
    if err["code"] == "RETRIEVE_INCOMPLETE":
        assert lost in err["details"]["missing"]
    nodes = call(dicom_server, "list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"})
    assert nodes.structured_content["total"] == 0
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("slicer-mcp-load-*"))


@pytest.mark.parametrize("method", ["c-get", "c-move"])
def test_instance_deleted_mid_retrieve(orthanc: Orthanc, method: str, tmp_path: Path) -> None:
    """Delete an instance from Orthanc after the first one has arrived and before it is sent."""
    config = orthanc_config(orthanc)
    service = DicomService(config)
    try:
        name, node = service.node("orthanc-dimse")
        spec, ds = make_ct_series(slices=8)
        orthanc.upload(ds)
        target = Target(spec.study_uid, spec.series_uid)
        expected = expected_instances(node, config.calling_aet, target, name)
        folder = tmp_path / "in"
        deleted: list[str] = []

        def progress(done: int, total: int) -> None:
            if done == 1:
                pending = [s for s in expected.instances if not (folder / f"{s}.dcm").exists()]
                orthanc.delete_instance(pending[-1])
                deleted.append(pending[-1])

        with pytest.raises(SlicerMCPError) as err:
            arrivals = Arrivals(expected, folder, progress)
            retrieve(
                node, config.calling_aet, target, arrivals, method=method, scp=service.scp, node_name=name
            )
        assert err.value.code == ErrorCode.RETRIEVE_INCOMPLETE
        # Orthanc stops the whole transfer at the failed sub-operation: the deleted one and those after it
        missing = err.value.details["missing"]
        assert deleted[0] in missing and len(missing) < len(expected.instances)
    finally:
        service.close()


def test_corrupt_instance_fails_the_load(orthanc: Orthanc, dicom_server: Any) -> None:
    """An instance whose pixel data is truncated is stored by Orthanc but cannot be loaded."""
    spec, ds = make_ct_series(slices=3)
    ds[1].PixelData = ds[1].PixelData[:100]
    orthanc.upload(ds)
    err = error_of(call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid}))
    assert err["code"] == "DICOM_LOAD_FAILED" and "truncated" in err["message"]


def test_huge_result_set_hits_the_limit(orthanc: Orthanc, dicom_server: Any) -> None:
    spec, ds = make_ct_series(slices=400, rows=2, columns=2, shuffle=False)
    orthanc.upload(ds)
    result = call(dicom_server, "query_instances", {"series_instance_uid": spec.series_uid, "limit": 50})
    data = result.structured_content
    assert data["count"] == 50 and data["has_more"] is True and data["pending_responses"] > 50
    everything = call(
        dicom_server, "query_instances", {"series_instance_uid": spec.series_uid, "limit": 1000}
    )
    assert (
        everything.structured_content["count"] == 400 and everything.structured_content["has_more"] is False
    )


def test_findscu_agrees_with_query_studies(orthanc: Orthanc, dicom_server: Any, tmp_path: Path) -> None:
    patient = unique_patient("F")
    for _ in range(3):
        _, ds = make_ct_series(patient_id=patient, slices=1)
        orthanc.upload(ds)
    ours = call(dicom_server, "query_studies", {"patient_id": patient}).structured_content
    out = subprocess.run(
        [
            require_binary("findscu"),
            "-S",
            "-aet",
            "SLICERMCP",
            "-aec",
            orthanc.aet,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"PatientID={patient}",
            "-k",
            "StudyInstanceUID",
            "127.0.0.1",
            str(orthanc.dicom_port),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
        timeout=30,
    )
    theirs = {
        line.split("[")[1].split("]")[0].rstrip("\0 ")
        for line in out.stderr.splitlines()
        if "(0020,000d)" in line
    }
    assert theirs == {r["StudyInstanceUID"] for r in ours["records"]} and len(theirs) == 3


def test_send_refuses_corrupt_files_and_does_not_retry(
    orthanc: Orthanc, clean_backend: Any, tmp_path: Path
) -> None:
    from fixtures.orthanc import corrupt_file

    dead = {"host": "127.0.0.1", "port": free_port(), "ae_title": "DEAD", "retries": 3}
    config = orthanc_config(orthanc, nodes={"orthanc": orthanc.node_config(), "dead": dead})
    config.allow.dicom_send = True
    server = build_server(Services(config=config, backend=clean_backend))
    bad = corrupt_file(tmp_path / "bad.dcm")
    err = error_of(call(server, "send_to_pacs", {"file_paths": [str(bad)]}))
    assert err["code"] == "INVALID_PARAMETER" and "bad.dcm" in err["message"]

    _, ds = make_ct_series(slices=1)
    good = tmp_path / "good.dcm"
    ds[0].save_as(good, enforce_file_format=True)
    t0 = time.monotonic()
    err = error_of(call(server, "send_to_pacs", {"file_paths": [str(good)], "destination_node": "dead"}))
    assert err["code"] == "DICOM_NODE_UNREACHABLE"
    assert time.monotonic() - t0 < 1.0  # a send is never retried


def test_send_counts_an_object_the_peer_takes_in_no_transfer_syntax(
    orthanc: Orthanc, clean_backend: Any, storescp: Path, tmp_path: Path
) -> None:
    """dcmtk's storescp accepts uncompressed syntaxes only: an RLE file is a per-instance failure
    (the others are still sent), not an INTERNAL_ERROR that aborts the association."""
    from pydicom.uid import RLELossless

    node = {"host": "127.0.0.1", "port": orthanc.dcmtk_port, "ae_title": DCMTK_AET}
    config = orthanc_config(orthanc, nodes={"orthanc": orthanc.node_config(), "storescp": node})
    config.allow.dicom_send = True
    server = build_server(Services(config=config, backend=clean_backend))
    _, ds = make_ct_series(slices=2)
    ds[0].compress(RLELossless)
    files = [tmp_path / "rle.dcm", tmp_path / "plain.dcm"]
    for d, f in zip(ds, files, strict=True):
        d.save_as(f, enforce_file_format=True)
    result = call(
        server, "send_to_pacs", {"file_paths": [str(f) for f in files], "destination_node": "storescp"}
    )
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["success"] is False and out["sent"] == 1 and out["failed"] == 1
    assert out["failures"][0]["sop_instance_uid"] == str(ds[0].SOPInstanceUID)
    assert "RLE Lossless" in out["failures"][0]["status"]
    assert len(list(storescp.iterdir())) == 1


@pytest.mark.parametrize("method", ["dicomweb", "c-get"])
def test_instance_truncated_on_the_pacs_disk_fails_the_load(
    orthanc: Orthanc, dicom_server: Any, method: str
) -> None:
    """A stored file cut short on the PACS's disk after it was indexed (found by the soak benchmark):
    Orthanc still lists the instance and serves the short file; the load must fail and load nothing."""
    spec, ds = make_ct_series(slices=6)
    orthanc.upload(ds)
    orthanc.truncate_file(str(ds[0].SOPInstanceUID))
    result = call(dicom_server, "load_series", {"series_instance_uid": spec.series_uid, "method": method})
    assert result.is_error, result.structured_content
    err = error_of(result)
    assert err["code"] in ("DICOM_LOAD_FAILED", "RETRIEVE_INCOMPLETE", "DICOM_QUERY_FAILED"), err
    nodes = call(dicom_server, "list_scene_nodes", {"class_name": "vtkMRMLScalarVolumeNode"})
    assert nodes.structured_content["total"] == 0
