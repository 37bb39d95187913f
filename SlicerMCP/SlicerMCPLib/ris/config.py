"""Mini-RIS part of the config (`mini_ris`), as dicom-mcp has it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_SERVER_KEYS = {"host", "port", "user", "password", "database"}
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def default_sqlite_path() -> Path:
    """The embedded database when `mini_ris.sqlite_path` is not set: in the user's data folder."""
    from ..config import user_data_dir

    return user_data_dir() / "mini_ris.sqlite"


class VirtualModalitySettings(BaseModel):
    """The virtual CR: which AE it queries the worklist as, and where its images go."""

    model_config = ConfigDict(extra="forbid")

    ae_title: str = Field(
        default="VIRTUALCR", min_length=1, max_length=16, description="scheduled station AE"
    )
    station_name: str = Field(default="VCR01", max_length=16, description="scheduled station name")
    mwl_host: str = Field(default="127.0.0.1", description="where the MWL/MPPS SCP listens")
    pacs_node: str | None = Field(
        default=None, description="name in `nodes` to C-STORE to (default: current_node)"
    )
    image_mode: Literal["simple", "sample", "auto", "ai"] = Field(
        default="auto", description="how the virtual CR makes images (ai falls back to simple)"
    )
    ai_endpoint: str | None = Field(default=None, description="image generator URL for image_mode ai")
    ai_api_key: str | None = Field(default=None, description="key for the generator (use ${ENV})")


class MiniRisSettings(BaseModel):
    """Where the RIS keeps its data: SQLite by default, MySQL/MariaDB when configured."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "mysql"] = Field(
        default="sqlite",
        description="default: mysql when the block names a server (dicom-mcp shape), else sqlite",
    )
    sqlite_path: str | None = Field(default=None, description="default: <user data dir>/mini_ris.sqlite")
    host: str = Field(default="127.0.0.1", description="MySQL/MariaDB server")
    port: int = Field(default=3306, ge=1, le=65535, description="MySQL/MariaDB port")
    user: str = Field(default="ris", description="MySQL/MariaDB user")
    password: str | None = Field(default=None, description="use ${ENV_NAME} to keep it out of the file")
    database: str = Field(default="mini_ris", description="MySQL/MariaDB database")
    pool_size: int = Field(default=4, ge=1, le=64, description="MySQL/MariaDB connections kept open")
    mwl_ae_title: str = Field(
        default="MINIRIS", min_length=1, max_length=16, description="AE title of our MWL/MPPS SCP"
    )
    mwl_host: str = Field(default="127.0.0.1", description="the MWL/MPPS SCP listen address (loopback)")
    allow_remote: bool = Field(
        default=False, description="must be true to serve DICOM on a non-loopback mwl_host"
    )
    mwl_port: int = Field(default=11112, ge=0, le=65535, description="DICOM port of the MWL/MPPS SCP")
    api_port: int = Field(default=8088, ge=0, le=65535, description="REST API port (127.0.0.1, bearer token)")
    seed_on_create: bool = Field(
        default=True, description="fill a new database with the demo patients and orders"
    )
    modality: VirtualModalitySettings = Field(default_factory=VirtualModalitySettings)

    @model_validator(mode="after")
    def _loopback_unless_asked(self) -> MiniRisSettings:
        if self.mwl_host not in _LOOPBACK and not self.allow_remote:
            raise ValueError(
                f"refusing to serve the worklist on {self.mwl_host!r}: only loopback is allowed unless "
                "mini_ris.allow_remote is true"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _dicom_mcp_blocks_mean_mysql(cls, data: Any) -> Any:
        """A dicom-mcp `mini_ris` block (host, user, password, database; no backend) is MySQL."""
        if isinstance(data, dict) and "backend" not in data and _SERVER_KEYS & data.keys():
            return {**data, "backend": "mysql"}
        return data
