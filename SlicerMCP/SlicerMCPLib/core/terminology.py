"""Standard codes for common segment names, in the form Slicer keeps on a segment.

Slicer stores a segment's terminology as one tag (`vtkSegment.GetTerminologyEntryTagName()`):
`context~category~type~type modifier~anatomic context~region~region modifier`, each code as
`scheme^value^meaning`. The few entries here are SNOMED CT codes from DICOM's segmentation
context groups (CID 7150 categories, CID 7151/7166 types), enough for the names an assistant
usually gives; other names keep no terminology rather than a wrong one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


SCT = "SCT"  # DICOM's designator for SNOMED CT
#: coding scheme designator -> FHIR code system
FHIR_SYSTEMS = {
    SCT: "http://snomed.info/sct",
    "SRT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
}


@dataclass(frozen=True)
class Code:
    """A coded concept, in DICOM's order (value, scheme designator, meaning)."""

    value: str
    scheme: str
    meaning: str

    def tag(self) -> str:
        """As one field of Slicer's terminology tag."""
        return f"{self.scheme}^{self.value}^{self.meaning}"

    def fhir(self) -> dict[str, str]:
        """As a FHIR Coding."""
        return {
            "system": FHIR_SYSTEMS.get(self.scheme, self.scheme),
            "code": self.value,
            "display": self.meaning,
        }


TISSUE = Code("85756007", SCT, "Tissue")
ANATOMICAL_STRUCTURE = Code("123037004", SCT, "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("49755003", SCT, "Morphologically Altered Structure")

# name (lower case) -> (category, type)
KNOWN: dict[str, tuple[Code, Code]] = {
    "lesion": (MORPHOLOGICALLY_ALTERED, Code("52988006", SCT, "Lesion")),
    "tumor": (MORPHOLOGICALLY_ALTERED, Code("108369006", SCT, "Neoplasm")),
    "tumour": (MORPHOLOGICALLY_ALTERED, Code("108369006", SCT, "Neoplasm")),
    "mass": (MORPHOLOGICALLY_ALTERED, Code("4147007", SCT, "Mass")),
    "nodule": (MORPHOLOGICALLY_ALTERED, Code("27925004", SCT, "Nodule")),
    "cyst": (MORPHOLOGICALLY_ALTERED, Code("441457006", SCT, "Cyst")),
    "brain": (ANATOMICAL_STRUCTURE, Code("12738006", SCT, "Brain")),
    "ventricle": (ANATOMICAL_STRUCTURE, Code("35764002", SCT, "Cerebral ventricle")),
    "ventricles": (ANATOMICAL_STRUCTURE, Code("35764002", SCT, "Cerebral ventricle")),
    "liver": (ANATOMICAL_STRUCTURE, Code("10200004", SCT, "Liver")),
    "kidney": (ANATOMICAL_STRUCTURE, Code("64033007", SCT, "Kidney")),
    "lung": (ANATOMICAL_STRUCTURE, Code("39607008", SCT, "Lung")),
    "heart": (ANATOMICAL_STRUCTURE, Code("80891009", SCT, "Heart")),
    "spleen": (ANATOMICAL_STRUCTURE, Code("78961009", SCT, "Spleen")),
    "bone": (TISSUE, Code("272673000", SCT, "Bone")),
    "fat": (TISSUE, Code("248300009", SCT, "Fat")),
    "muscle": (TISSUE, Code("91727004", SCT, "Muscle")),
    "vessel": (ANATOMICAL_STRUCTURE, Code("59820001", SCT, "Blood vessel")),
}


def lookup(name: str) -> tuple[Code, Code] | None:
    """Category and type for a segment name, or None: "liver 2" and "Liver_seg" are liver; in
    "liver lesion" the finding is the type (the organ only says where it is)."""
    known = [KNOWN[word] for word in re.findall(r"[a-z]+", name.lower()) if word in KNOWN]
    if not known:
        return None
    return next((codes for codes in known if codes[0] == MORPHOLOGICALLY_ALTERED), known[0])


def entry_tag(category: Code, type_: Code) -> str:
    """Slicer's terminology tag string for a category and type without modifiers or region."""
    return f"{CONTEXT}~{category.tag()}~{type_.tag()}~^^~{ANATOMIC_CONTEXT}~^^~^^"


def codes_of(tag: str) -> tuple[Code, Code] | None:
    """Category and type read back from a terminology tag (None when it holds none)."""
    parts = tag.split("~")
    if len(parts) < 3:
        return None
    found = []
    for part in parts[1:3]:
        fields = part.split("^")
        if len(fields) != 3 or not fields[0] or not fields[1]:
            return None
        found.append(Code(fields[1], fields[0], fields[2] or fields[1]))
    return found[0], found[1]
