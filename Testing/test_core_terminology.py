"""One table of segment codes: what segment_edit writes on a segment is what SEG, SR and FHIR read."""

from __future__ import annotations

from SlicerMCPLib.core.terminology import (
    ANATOMICAL_STRUCTURE,
    MORPHOLOGICALLY_ALTERED,
    TISSUE,
    Code,
    codes_of,
    entry_tag,
    lookup,
)
from SlicerMCPLib.dicom.codes import segment_codes


def test_names_find_their_codes_and_a_finding_wins_over_its_organ() -> None:
    assert lookup("Liver 2") == lookup("liver_seg") == lookup("LIVER")
    assert lookup("Liver 2")[1].meaning == "Liver"
    category, kind = lookup("liver lesion")
    assert category == MORPHOLOGICALLY_ALTERED and kind.meaning == "Lesion"
    assert lookup("Segment_1") is None and lookup("") is None
    # DICOM CID 7150's Anatomical Structure (what Slicer's terminology uses), not SNOMED's 91723000
    assert ANATOMICAL_STRUCTURE == Code("123037004", "SCT", "Anatomical Structure")


def test_the_tag_slicer_keeps_reads_back_to_the_same_codes() -> None:
    codes = lookup("kidney")
    tag = entry_tag(*codes)
    assert tag.startswith("Segmentation category and type - DICOM master list~SCT^123037004^")
    assert codes_of(tag) == codes
    assert codes_of("garbage") is None and codes_of("ctx~^^~^^") is None


def test_results_code_a_segment_by_its_tag_then_its_name() -> None:
    heart = lookup("heart")
    assert segment_codes("Segment_1", entry_tag(*heart)) == heart  # the tag says more than the name
    tissue_tag = entry_tag(TISSUE, TISSUE)  # Slicer's default entry says nothing: the name decides
    assert segment_codes("Tumor", tissue_tag)[1].meaning == "Neoplasm"
    assert segment_codes("Segment_1", None) == (TISSUE, TISSUE)
    assert heart[1].fhir() == {"system": "http://snomed.info/sct", "code": "80891009", "display": "Heart"}
