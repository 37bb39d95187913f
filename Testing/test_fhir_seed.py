"""`slicer-mcp fhir seed` / `fhir check` against the real FHIR server, configured through YAML with
`${ENV}` secrets, and the deterministic UIDs shared with the DICOM test data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures.fhir import call_one, fhir_services
from slicer_mcp.cli import main
from SlicerMCPLib.fhir.seed import SEED_PATIENTS, SEED_STUDIES, seed_uid


@pytest.fixture
def config_file(tmp_path: Path, fhir_peer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_FHIR_TOKEN", fhir_peer.token)
    path = tmp_path / "slicer-mcp.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "fhir_servers": {"test": {"url": fhir_peer.base_url, "bearer_token": "${TEST_FHIR_TOKEN}"}},
                "current_fhir": "test",
                "nodes": {
                    "pacs": {
                        "host": "127.0.0.1",
                        "port": 4242,
                        "ae_title": "PACS",
                        "dicomweb_url": "http://127.0.0.1:8042/dicom-web",
                    }
                },
            }
        )
    )
    assert fhir_peer.token not in path.read_text()
    return path


def test_seed_uids_are_deterministic_and_valid() -> None:
    assert seed_uid("study", "SMCP-0001", 1) == seed_uid("study", "SMCP-0001", 1)
    assert seed_uid("study", "SMCP-0001", 1) != seed_uid("study", "SMCP-0001", 2)
    uids = [s.uid for s in SEED_STUDIES]
    for study in SEED_STUDIES:
        for series in study.series:
            uids.append(series.uid(study.uid))
            uids.extend(
                seed_uid(series.uid(study.uid), "instance", i) for i in range(1, series.instances + 1)
            )
    assert len(set(uids)) == len(uids)
    assert all(len(u) <= 64 and u.startswith("2.25.") and u.replace(".", "").isdigit() for u in uids)
    assert len(SEED_PATIENTS) == 5 and {s.mrn for s in SEED_STUDIES} == {p.mrn for p in SEED_PATIENTS}


def test_seed_command_writes_the_data_set_once(config_file: Path, fhir_peer, capsys) -> None:
    assert main(["--config", str(config_file), "fhir", "seed", "--dicom-node", "pacs"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert sorted(first["patients"]) == [p.mrn for p in SEED_PATIENTS]
    assert sorted(first["imaging_studies"]) == sorted(s.uid for s in SEED_STUDIES)
    assert first["service_requests"] == first["diagnostic_reports"] == len(SEED_STUDIES)

    assert main(["--config", str(config_file), "fhir", "seed", "--dicom-node", "pacs"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["patients"] == first["patients"] and second["imaging_studies"] == first["imaging_studies"]
    assert fhir_peer.count("DiagnosticReport", {"identifier": "urn:slicer-mcp:report|ACC-0001"}) == 1
    assert fhir_peer.count("ServiceRequest", {"identifier": "urn:slicer-mcp:placer-order|ACC-0006"}) == 1

    # what the server holds matches the shared generator, series and endpoint included
    services = fhir_services({"test": fhir_peer.server_config()}, current="test")
    study = SEED_STUDIES[0]
    found = call_one(services, "fhir_search_imaging_study", {"study_instance_uid": study.uid})
    assert found["returned"] == 1
    summary = found["imaging_studies"][0]
    assert summary["accession_number"] == study.accession and summary["modalities"] == ["CT"]
    assert [s["uid"] for s in summary["series"]] == [s.uid(study.uid) for s in study.series]
    assert summary["number_of_instances"] == sum(s.instances for s in study.series)
    assert summary["patient"] == first["patients"][study.mrn] and summary["started"] == "2024-01-15T09:30:00Z"
    link = call_one(services, "fhir_dicom_study_for_imaging_study", {"imaging_study_id": summary["id"]})
    assert link["endpoint_addresses"] == ["http://127.0.0.1:8042/dicom-web"]


def test_seed_dry_run_lists_the_uids_without_a_server(capsys) -> None:
    assert main(["fhir", "seed", "--dry-run"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [s["study_instance_uid"] for s in listing] == [s.uid for s in SEED_STUDIES]
    assert listing[0]["series"][0]["number_of_instances"] == SEED_STUDIES[0].series[0].instances


def test_check_command_runs_as_the_installed_script(config_file: Path, fhir_peer) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "slicer_mcp", "--config", str(config_file), "fhir", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"TEST_FHIR_TOKEN": fhir_peer.token, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    cap = json.loads(proc.stdout)
    assert cap["fhir_version"] == "4.0.1" and cap["server"] == "test"


def test_check_command_fails_clearly_without_the_secret(config_file: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("TEST_FHIR_TOKEN")
    assert main(["--config", str(config_file), "fhir", "check"]) == 2
    assert "TEST_FHIR_TOKEN is not set" in capsys.readouterr().err
