"""Coded concepts the results share: segment terminology, measurement names and UCUM units.

One table serves the DICOM SEG (segmented property category and type), the TID 1500 SR
(measurement concept names and units) and the FHIR Observations (code and valueQuantity), so
the three say the same thing with the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

SCT = "SCT"  # DICOM's designator for SNOMED CT
SNOMED_URI = "http://snomed.info/sct"
LOINC_URI = "http://loinc.org"
UCUM_URI = "http://unitsofmeasure.org"
DCM_URI = "http://dicom.nema.org/resources/ontology/DCM"
FHIR_SYSTEMS = {SCT: SNOMED_URI, "SRT": SNOMED_URI, "LN": LOINC_URI, "DCM": DCM_URI, "UCUM": UCUM_URI}


@dataclass(frozen=True)
class Code:
    value: str
    scheme: str
    meaning: str

    def fhir(self) -> dict[str, str]:
        """A FHIR Coding for this concept."""
        return {
            "system": FHIR_SYSTEMS.get(self.scheme, self.scheme),
            "code": self.value,
            "display": self.meaning,
        }


TISSUE = Code("85756007", SCT, "Tissue")
ANATOMICAL_STRUCTURE = Code("91723000", SCT, "Anatomical Structure")
ABNORMAL_STRUCTURE = Code("49755003", SCT, "Morphologically Altered Structure")
#: segment names Slicer left at its default terminology (Tissue), by what a radiologist would code
NAMED_TYPES: dict[str, tuple[Code, Code]] = {
    "lesion": (ABNORMAL_STRUCTURE, Code("52988006", SCT, "Lesion")),
    "tumor": (ABNORMAL_STRUCTURE, Code("108369006", SCT, "Neoplasm")),
    "tumour": (ABNORMAL_STRUCTURE, Code("108369006", SCT, "Neoplasm")),
    "nodule": (ABNORMAL_STRUCTURE, Code("27925004", SCT, "Nodule")),
    "mass": (ABNORMAL_STRUCTURE, Code("4147007", SCT, "Mass")),
    "brain": (ANATOMICAL_STRUCTURE, Code("12738006", SCT, "Brain")),
    "ventricle": (ANATOMICAL_STRUCTURE, Code("35764002", SCT, "Cerebral ventricle")),
    "liver": (ANATOMICAL_STRUCTURE, Code("10200004", SCT, "Liver")),
    "lung": (ANATOMICAL_STRUCTURE, Code("39607008", SCT, "Lung")),
    "kidney": (ANATOMICAL_STRUCTURE, Code("64033007", SCT, "Kidney")),
}


def _parse(text: str) -> Code | None:
    parts = text.split("^")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    return Code(parts[1], parts[0], parts[2] or parts[1])


def segment_codes(name: str, terminology: str | None) -> tuple[Code, Code]:
    """(category, type) of a segment: Slicer's terminology entry when it says more than the
    default Tissue, else a known word in the segment's name, else Tissue/Tissue."""
    if terminology:
        fields = terminology.split("~")
        if len(fields) >= 3:
            category, kind = _parse(fields[1]), _parse(fields[2])
            if category and kind and not (kind == TISSUE and category == TISSUE):
                return category, kind
    lowered = name.lower()
    for word, codes in NAMED_TYPES.items():
        if word in lowered:
            return codes
    return TISSUE, TISSUE


def terminology_entry(category: Code, kind: Code) -> str:
    """Slicer's TerminologyEntry tag for (category, type), so a loaded SEG keeps its codes."""
    c, t = category, kind
    return (
        f"Segmentation category and type - DICOM master list~{c.scheme}^{c.value}^{c.meaning}"
        f"~{t.scheme}^{t.value}^{t.meaning}~^^~Anatomic codes - DICOM master list~^^~^^"
    )


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
