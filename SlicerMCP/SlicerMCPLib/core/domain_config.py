"""The DICOM, FHIR and mini-RIS sections of the config, in the dicom-mcp shape.

Secrets (FHIR bearer tokens and API keys, the RIS database password, the image generator's key)
are `SecretStr`: a config that is printed, logged or dumped shows `**********`; only the code
that sends one asks for its value (`get_secret_value()`).

They live here, under the root `Config`, so that the config loads without importing the
domain services; each domain package reads its own section from here. A dicom-mcp file
(`nodes`, `current_node`, `calling_aet`, `fhir_servers`, `current_fhir`, `mini_ris`) loads
unchanged; the other fields are optional extensions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .localhost import LOOPBACK_HOSTS, user_data_dir


def is_ae_title(value: str) -> bool:
    """1 to 16 printable ASCII characters (DICOM's default repertoire), no backslash (it separates
    values), no surrounding spaces."""
    return (
        0 < len(value) <= 16
        and value == value.strip()
        and "\\" not in value
        and value.isascii()
        and value.isprintable()
    )


# -- DICOM (`nodes`, `calling_aet`, `storage_scp`) -------------------------------------------------

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
    timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="network, ACSE and DIMSE timeout in seconds; also the total deadline of a small "
        "DICOMweb request (metadata)",
    )
    transfer_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="seconds one DICOMweb retrieve or STOW-RS request may take in all, however slowly "
        "the bytes come",
    )
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
        if self.bind_address not in LOOPBACK_HOSTS and not self.allow_remote:
            raise ValueError(
                f"refusing to run the Storage SCP on {self.bind_address!r}: only loopback is allowed unless "
                f"storage_scp.allow_remote is true (a PACS on another machine needs it for C-MOVE)"
            )
        return self


# -- FHIR (`fhir_servers`, `current_fhir`) ---------------------------------------------------------


class FhirServer(BaseModel):
    """One FHIR R4 endpoint; secrets come from `${ENV}` substitution, never from code."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        validation_alias=AliasChoices("url", "base_url"),
        description="FHIR base URL, e.g. https://fhir.example.org/r4 (dicom-mcp files call it base_url)",
    )
    description: str = Field(default="", description="shown by list_fhir_servers")
    bearer_token: SecretStr | None = Field(default=None, description="sent as 'Authorization: Bearer ...'")
    api_key: SecretStr | None = Field(default=None, description="sent in the header named by api_key_header")
    api_key_header: str = Field(default="X-API-Key", description="header that carries api_key")
    ca_bundle: str | None = Field(default=None, description="custom CA bundle; TLS verification is always on")
    timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="seconds one HTTP request may take in all (connect, headers and body, however slowly "
        "they come)",
    )
    redirect_origins: list[str] = Field(
        default_factory=list,
        description="other origins (scheme://host:port) this server may redirect to; others are refused",
    )
    retries: int = Field(
        default=3, ge=0, le=10, description="extra tries of idempotent reads on connection errors"
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, description="first wait between tries; doubles each time"
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="_count asked for per search page")

    @model_validator(mode="before")
    @classmethod
    def _one_url(cls, data: Any) -> Any:
        """`base_url` is dicom-mcp's name for `url`; both at once is a mistake, not a choice."""
        if isinstance(data, dict) and "url" in data and "base_url" in data:
            raise ValueError("give url or base_url (its dicom-mcp name), not both")
        return data

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"FHIR url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def auth_kind(self) -> str:
        """How requests authenticate, for listings that must not show the secret itself."""
        if self.bearer_token:
            return "bearer"
        if self.api_key:
            return "api-key"
        return "none"


# -- mini-RIS (`mini_ris`) -------------------------------------------------------------------------

_SERVER_KEYS = {"host", "port", "user", "password", "database"}


def default_sqlite_path() -> Path:
    """The embedded database when `mini_ris.sqlite_path` is not set: in the user's data folder."""
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
    ai_api_key: SecretStr | None = Field(default=None, description="key for the generator (use ${ENV})")


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
    password: SecretStr | None = Field(default=None, description="use ${ENV_NAME} to keep it out of the file")
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
    mwl_max_associations: int = Field(
        default=64,
        ge=1,
        le=1024,
        description="associations the MWL/MPPS SCP serves at once; more are refused",
    )
    mwl_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="seconds a silent or half-sent association is kept (ACSE/DIMSE/network)",
    )
    mwl_check_called_aet: bool = Field(
        default=False,
        description="refuse associations not addressed to mwl_ae_title (off: findscu's default ANY-SCP works)",
    )
    mwl_calling_aets: list[str] = Field(
        default_factory=list,
        description="calling AE titles the SCP accepts; empty: any (each new caller is logged once)",
    )
    api_port: int = Field(default=8088, ge=0, le=65535, description="REST API port (127.0.0.1, bearer token)")
    seed_on_create: bool = Field(
        default=True, description="fill a new database with the demo patients and orders"
    )
    modality: VirtualModalitySettings = Field(default_factory=VirtualModalitySettings)

    @model_validator(mode="after")
    def _loopback_unless_asked(self) -> MiniRisSettings:
        if self.mwl_host not in LOOPBACK_HOSTS and not self.allow_remote:
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
