"""Coded concepts the results share: segment terminology, measurement names and UCUM units.

Segment categories and types come from `scene.terminology` (the codes Slicer keeps on a segment).

One table serves the DICOM SEG (segmented property category and type), the TID 1500 SR
(measurement concept names and units) and the FHIR Observations (code and valueQuantity), so
the three say the same thing with the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from ..core.terminology import FHIR_SYSTEMS, SCT, TISSUE, Code, codes_of, lookup

UCUM_URI = FHIR_SYSTEMS["UCUM"]


def segment_codes(name: str, terminology_tag: str | None) -> tuple[Code, Code]:
    """(category, type) of a segment: Slicer's terminology entry when it says more than the
    default Tissue, else the standard codes for its name, else Tissue/Tissue."""
    found = codes_of(terminology_tag) if terminology_tag else None
    if found and found != (TISSUE, TISSUE):
        return found
    return lookup(name) or (TISSUE, TISSUE)


# -- measurements ----------------------------------------------------------------------------------

Quantity = Literal["volume", "mean", "minimum", "maximum", "standard_deviation", "diameter", "length"]


@dataclass(frozen=True)
class Concept:
    """A measurement's concept name (SR and FHIR), its derivation (SR) and its LOINC code if any."""

    name: Code
    derivation: Code | None = None
    loinc: Code | None = None


VOLUME = Code("118565006", SCT, "Volume")
INTENSITY = Code("112031", "DCM", "Attenuation Coefficient")
CONCEPTS: dict[str, Concept] = {
    "volume": Concept(VOLUME),
    "mean": Concept(INTENSITY, Code("373098007", SCT, "Mean")),
    "minimum": Concept(INTENSITY, Code("255605001", SCT, "Minimum")),
    "maximum": Concept(INTENSITY, Code("56851009", SCT, "Maximum")),
    "standard_deviation": Concept(INTENSITY, Code("386136009", SCT, "Standard Deviation")),
    "diameter": Concept(Code("81827009", SCT, "Diameter")),
    "length": Concept(Code("410668003", SCT, "Length"), loinc=Code("21889-1", "LN", "Size Tumor")),
}
#: UCUM units the tools accept, with their display text
UNITS: dict[str, str] = {
    "mm3": "cubic millimeter",
    "mL": "milliliter",
    "cm3": "cubic centimeter",
    "mm": "millimeter",
    "cm": "centimeter",
    "mm2": "square millimeter",
    "[hnsf'U]": "Hounsfield unit",
    "1": "no units",
}
DIAGNOSTIC_IMAGING_REPORT = Code("18748-4", "LN", "Diagnostic imaging study")
IMAGING_MEASUREMENT_REPORT = Code("126000", "DCM", "Imaging Measurement Report")


QUANTITIES: tuple[str, ...] = get_args(Quantity)


def unit_code(unit: str) -> Code:
    return Code(unit, "UCUM", UNITS[unit])
