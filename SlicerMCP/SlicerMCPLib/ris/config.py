"""Mini-RIS part of the config (`mini_ris`), as dicom-mcp has it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MiniRisSettings(BaseModel):
    """Where the RIS keeps its data: SQLite by default, MySQL/MariaDB when configured."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "mysql"] = "sqlite"
    sqlite_path: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=3306, ge=1, le=65535)
    user: str = "ris"
    password: str | None = None
    database: str = "mini_ris"
    pool_size: int = Field(default=4, ge=1, le=64)
    mwl_ae_title: str = Field(default="MINIRIS", min_length=1, max_length=16)
    mwl_port: int = Field(default=11112, ge=0, le=65535)
    api_port: int = Field(default=8088, ge=0, le=65535)
