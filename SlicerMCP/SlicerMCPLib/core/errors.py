"""One error hierarchy for every tool: a code, a message that says what to do next, details.

The server turns a raised `SlicerMCPError` into an MCP tool error whose text is
`{"error": {"code": ..., "message": ..., "details": {...}}}`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    SLICER_CONNECTION_ERROR = "SLICER_CONNECTION_ERROR"
    SLICER_TIMEOUT = "SLICER_TIMEOUT"
    SLICER_WEBSERVER_ERROR = "SLICER_WEBSERVER_ERROR"
    INVALID_NODE_ID = "INVALID_NODE_ID"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    UNKNOWN_TOOL = "UNKNOWN_TOOL"
    PYTHON_EXECUTION_ERROR = "PYTHON_EXECUTION_ERROR"
    SCREENSHOT_FAILED = "SCREENSHOT_FAILED"
    VOLUME_CALCULATION_ERROR = "VOLUME_CALCULATION_ERROR"
    OPERATION_DISABLED = "OPERATION_DISABLED"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    LOAD_FAILED = "LOAD_FAILED"
    DOWNLOAD_FAILED = "DOWNLOAD_FAILED"
    CONFIG_ERROR = "CONFIG_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    BUSY = "BUSY"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    # DICOM
    DICOM_ASSOCIATION_REJECTED = "DICOM_ASSOCIATION_REJECTED"
    DICOM_NODE_UNREACHABLE = "DICOM_NODE_UNREACHABLE"
    DICOM_QUERY_FAILED = "DICOM_QUERY_FAILED"
    DICOM_MOVE_FAILED = "DICOM_MOVE_FAILED"
    DICOM_SEND_FAILED = "DICOM_SEND_FAILED"
    DICOM_LOAD_FAILED = "DICOM_LOAD_FAILED"
    RETRIEVE_INCOMPLETE = "RETRIEVE_INCOMPLETE"
    # FHIR
    FHIR_HTTP_ERROR = "FHIR_HTTP_ERROR"
    FHIR_CONNECTION_ERROR = "FHIR_CONNECTION_ERROR"
    FHIR_VALIDATION_ERROR = "FHIR_VALIDATION_ERROR"
    FHIR_CONFLICT = "FHIR_CONFLICT"
    # RIS
    RIS_NOT_FOUND = "RIS_NOT_FOUND"
    RIS_CONFLICT = "RIS_CONFLICT"
    RIS_DATABASE_ERROR = "RIS_DATABASE_ERROR"


class SlicerMCPError(Exception):
    """A failure a tool anticipated; `code` is stable, `message` tells the user what to do."""

    default_code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, *, code: ErrorCode | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": str(self.code), "message": self.message, "details": self.details}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=str)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidParameter(SlicerMCPError):
    default_code = ErrorCode.INVALID_PARAMETER


class InvalidNodeId(SlicerMCPError):
    default_code = ErrorCode.INVALID_NODE_ID


class SlicerTimeout(SlicerMCPError):
    default_code = ErrorCode.SLICER_TIMEOUT


class SlicerConnectionError(SlicerMCPError):
    """The backend (Slicer, WebServer, proxy target) could not be reached: the only retryable error."""

    default_code = ErrorCode.SLICER_CONNECTION_ERROR


class OperationDisabled(SlicerMCPError):
    default_code = ErrorCode.OPERATION_DISABLED

    #: switches other projects' users already know, honoured by the config loader too
    LEGACY_ENV = {"dicom_move": "DICOM_HL7_PACS_ALLOW_RETRIEVE"}

    def __init__(self, operation: str, what: str):
        env = f"SLICER_MCP_ALLOW_{operation.upper()}"
        legacy = self.LEGACY_ENV.get(operation)
        also = f" (or {legacy}=true)" if legacy else ""
        super().__init__(
            f"{what} is disabled. Enable it with 'allow: {{{operation}: true}}' in the config YAML "
            f"or the environment variable {env}=true{also}, then restart the server.",
            details={"config_key": f"allow.{operation}", "env": env},
        )


class Busy(SlicerMCPError):
    """Refused at once because this client already has enough work queued (retry after it ends)."""

    default_code = ErrorCode.BUSY


class CircuitOpen(SlicerMCPError):
    """A peer failed repeatedly: calls to it fail fast until the time in details.retry_at."""

    default_code = ErrorCode.CIRCUIT_OPEN


class ScreenshotFailed(SlicerMCPError):
    default_code = ErrorCode.SCREENSHOT_FAILED


class VolumeCalculationError(SlicerMCPError):
    default_code = ErrorCode.VOLUME_CALCULATION_ERROR


class PythonExecutionError(SlicerMCPError):
    default_code = ErrorCode.PYTHON_EXECUTION_ERROR


class NotSupported(SlicerMCPError):
    default_code = ErrorCode.NOT_SUPPORTED


class ConfigError(SlicerMCPError):
    default_code = ErrorCode.CONFIG_ERROR
