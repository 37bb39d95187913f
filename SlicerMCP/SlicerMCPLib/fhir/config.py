"""FHIR part of the config (`fhir_servers`, `current_fhir`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class FhirServer(BaseModel):
    """One FHIR R4 endpoint; secrets come from `${ENV}` substitution, never from code."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="FHIR base URL, e.g. https://fhir.example.org/r4")
    description: str = Field(default="", description="shown by list_fhir_servers")
    bearer_token: str | None = Field(default=None, description="sent as 'Authorization: Bearer ...'")
    api_key: str | None = Field(default=None, description="sent in the header named by api_key_header")
    api_key_header: str = Field(default="X-API-Key", description="header that carries api_key")
    ca_bundle: str | None = Field(default=None, description="custom CA bundle; TLS verification is always on")
    timeout_s: float = Field(default=30.0, gt=0, description="seconds per HTTP request")
    retries: int = Field(
        default=3, ge=0, le=10, description="extra tries of idempotent reads on connection errors"
    )
    retry_backoff_s: float = Field(
        default=1.0, ge=0, description="first wait between tries; doubles each time"
    )
    page_size: int = Field(default=50, ge=1, le=1000, description="_count asked for per search page")

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
