"""DICOM part of the config, in the dicom-mcp shape (`nodes`, `current_node`, `calling_aet`).

A dicom-mcp node (`host`, `port`, `ae_title`, `description`) loads unchanged; the other
fields are optional extensions (DICOMweb root, forced retrieve method, timeouts).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .validation import is_ae_title

RetrieveMethod = Literal["dicomweb", "c-get", "c-move"]


class DicomNode(BaseModel):
    """A remote DICOM application entity (a PACS or a workstation)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, description="host name or address of the node")
    port: int = Field(ge=1, le=65535, description="its DICOM port")
    ae_title: str = Field(min_length=1, max_length=16, description="its called AE title")
    description: str = Field(default="", description="shown by list_dicom_nodes")
    dicomweb_url: str | None = Field(
        default=None, description="DICOMweb root, e.g. http://host:8042/dicom-web"
    )
    retrieve_method: RetrieveMethod | None = Field(
        default=None, description="force dicomweb, c-get or c-move (default: the best the node offers)"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="network, ACSE and DIMSE timeout in seconds")
    retries: int = Field(
        default=3,
        ge=0,
        le=10,
        description="extra tries (after 1, 2, 4 s) of C-ECHO and C-FIND when unreachable",
    )

    @field_validator("ae_title")
    @classmethod
    def _ae_title_chars(cls, value: str) -> str:
        if not is_ae_title(value):
            raise ValueError("an AE title is printable text without backslash or surrounding spaces")
        return value

    @field_validator("dicomweb_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("dicomweb_url must start with http:// or https://")
        return value.rstrip("/") if value else value


class StorageScpSettings(BaseModel):
    """Our own Storage SCP, started on demand as the C-MOVE destination."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(
        default="SLICERMCP", min_length=1, max_length=16, description="C-MOVE destination AE"
    )
    port: int = Field(default=11113, ge=0, le=65535, description="its port (register it at the PACS)")
    bind_address: str = Field(
        default="127.0.0.1", description="listen address (loopback unless allow_remote)"
    )
    allow_remote: bool = Field(default=False, description="must be true to listen on a non-loopback address")

    @model_validator(mode="after")
    def _loopback_unless_asked(self) -> StorageScpSettings:
        if self.bind_address not in ("127.0.0.1", "localhost", "::1") and not self.allow_remote:
            raise ValueError(
                f"refusing to run the Storage SCP on {self.bind_address!r}: only loopback is allowed unless "
                f"storage_scp.allow_remote is true (a PACS on another machine needs it for C-MOVE)"
            )
        return self
