"""Text of an Encapsulated PDF Storage instance, page by page (pypdf, pure Python)."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom

from ..core.errors import ErrorCode, SlicerMCPError
from .models import PdfPage, PdfText

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def pdf_text(source: Path | bytes) -> PdfText:
    """Extract the text of each page of the PDF inside a DICOM file (or encoded instance)."""
    ds = pydicom.dcmread(source if isinstance(source, Path) else io.BytesIO(source))
    if str(ds.get("SOPClassUID", "")) != ENCAPSULATED_PDF_STORAGE or "EncapsulatedDocument" not in ds:
        raise SlicerMCPError(
            "this instance is not an Encapsulated PDF document (SOP class "
            f"{ds.get('SOPClassUID', '?')}); find PDF instances with query_instances (SOPClassUID "
            f"{ENCAPSULATED_PDF_STORAGE})",
            code=ErrorCode.INVALID_PARAMETER,
            details={"sop_class_uid": str(ds.get("SOPClassUID", ""))},
        )
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    data = bytes(ds.EncapsulatedDocument)
    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [
            PdfPage(page=i + 1, text=(p.extract_text() or "").strip()) for i, p in enumerate(reader.pages)
        ]
    except PdfReadError as exc:
        raise SlicerMCPError(
            f"the encapsulated document is not a readable PDF ({exc})", code=ErrorCode.DICOM_LOAD_FAILED
        ) from exc
    return PdfText(
        sop_instance_uid=str(ds.SOPInstanceUID),
        document_title=str(ds.get("DocumentTitle", "")) or None,
        page_count=len(pages),
        pages=pages,
        text="\f".join(p.text for p in pages),
    )
