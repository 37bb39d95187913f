"""Log messages to the client while a series loads from a real Orthanc: levels, and no PHI.

Handshake-era clients choose the level with logging/setLevel; 2026 clients opt in per request
(the SDK client's `log_level`). Info entries carry counts only; identifiers ride debug
entries; no entry carries the patient's name.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import mcp_types as types
from mcp import Client

from fixtures.orthanc import Orthanc, make_ct_series


def load_with_logs(server: Any, series_uid: str, level: str | None, mode: str = "legacy") -> list[Any]:
    got: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        got.append(params)

    async def main() -> None:
        kwargs: dict[str, Any] = {"logging_callback": on_log, "mode": mode}
        if mode != "legacy":
            kwargs["log_level"] = level
        async with Client(server, **kwargs) as client:
            if mode == "legacy" and level is not None:
                await client.set_logging_level(level)
            result = await client.call_tool(
                "load_series", {"series_instance_uid": series_uid, "method": "c-get"}
            )
            assert not result.is_error, result.content[0].text

    asyncio.run(main())
    return got


def test_info_logs_say_how_far_the_load_got_without_identifiers(dicom_server: Any, orthanc: Orthanc) -> None:
    spec, ds = make_ct_series(slices=6)
    orthanc.upload(ds)
    logs = load_with_logs(dicom_server, spec.series_uid, "info")
    messages = [entry.data["message"] for entry in logs]
    assert {entry.level for entry in logs} == {"info"}
    assert any("instances" in m for m in messages) and "adding series 1 of 1 to the scene" in messages
    text = json.dumps([entry.data for entry in logs])
    assert spec.series_uid not in text and str(ds[0].PatientName) not in text and spec.patient_id not in text


def test_debug_adds_identifiers_but_never_the_patient_name(dicom_server: Any, orthanc: Orthanc) -> None:
    spec, ds = make_ct_series(slices=4)
    orthanc.upload(ds)
    logs = load_with_logs(dicom_server, spec.series_uid, "debug")
    debug = [entry.data for entry in logs if entry.level == "debug"]
    assert any(d.get("series_instance_uid") == spec.series_uid for d in debug)
    assert str(ds[0].PatientName) not in json.dumps([entry.data for entry in logs])


def test_set_level_error_silences_progress(dicom_server: Any, orthanc: Orthanc) -> None:
    spec, ds = make_ct_series(slices=3)
    orthanc.upload(ds)
    assert load_with_logs(dicom_server, spec.series_uid, "error") == []


def test_2026_client_gets_logs_only_when_it_opts_in(dicom_server: Any, orthanc: Orthanc) -> None:
    spec, ds = make_ct_series(slices=3)
    orthanc.upload(ds)
    assert load_with_logs(dicom_server, spec.series_uid, None, mode="auto") == []
    logs = load_with_logs(dicom_server, spec.series_uid, "info", mode="auto")
    assert logs and {entry.level for entry in logs} == {"info"}
