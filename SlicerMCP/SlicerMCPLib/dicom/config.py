"""DICOM part of the config, in the dicom-mcp shape (`nodes`, `current_node`, `calling_aet`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DicomNode(BaseModel):
    """A remote DICOM application entity (a PACS or a workstation)."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(ge=1, le=65535)
    ae_title: str = Field(min_length=1, max_length=16)
    description: str = ""
    dicomweb_url: str | None = Field(default=None, description="DICOMweb root, e.g. http://host:8042/dicom-web")
    retrieve_method: str | None = Field(default=None, description="force dicomweb, c-get or c-move")


class StorageScpSettings(BaseModel):
    """Our own Storage SCP, started on demand as the C-MOVE destination."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(default="SLICERMCP", min_length=1, max_length=16)
    port: int = Field(default=11113, ge=0, le=65535)
    bind_address: str = "127.0.0.1"
