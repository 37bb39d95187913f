"""FHIR part of the config (`fhir_servers`, `current_fhir`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FhirServer(BaseModel):
    """One FHIR R4 endpoint; secrets come from `${ENV}` substitution, never from code."""

    model_config = ConfigDict(extra="forbid")

    url: str
    description: str = ""
    bearer_token: str | None = None
    api_key: str | None = None
    api_key_header: str = "X-API-Key"
    ca_bundle: str | None = Field(default=None, description="custom CA bundle; TLS verification is always on")
    timeout_s: float = Field(default=30.0, gt=0)
