"""Standard codes for common segment names, in the form Slicer keeps on a segment.

Slicer stores a segment's terminology as one tag (`vtkSegment.GetTerminologyEntryTagName()`):
`context~category~type~type modifier~anatomic context~region~region modifier`, each code as
`scheme^value^meaning`. The few entries here are SNOMED CT codes from DICOM's segmentation
context groups (CID 7150 categories, CID 7151/7166 types), enough for the names an assistant
usually gives; other names keep no terminology rather than a wrong one.
"""

from __future__ import annotations

from dataclasses import dataclass

CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Code:
    scheme: str
    value: str
    meaning: str

    def tag(self) -> str:
        return f"{self.scheme}^{self.value}^{self.meaning}"


TISSUE = Code("SCT", "85756007", "Tissue")
ANATOMICAL_STRUCTURE = Code("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = Code("SCT", "49755003", "Morphologically Altered Structure")

# name (lower case) -> (category, type)
KNOWN: dict[str, tuple[Code, Code]] = {
    "lesion": (MORPHOLOGICALLY_ALTERED, Code("SCT", "52988006", "Lesion")),
    "tumor": (MORPHOLOGICALLY_ALTERED, Code("SCT", "108369006", "Neoplasm")),
    "tumour": (MORPHOLOGICALLY_ALTERED, Code("SCT", "108369006", "Neoplasm")),
    "mass": (MORPHOLOGICALLY_ALTERED, Code("SCT", "4147007", "Mass")),
    "nodule": (MORPHOLOGICALLY_ALTERED, Code("SCT", "27925004", "Nodule")),
    "cyst": (MORPHOLOGICALLY_ALTERED, Code("SCT", "441457006", "Cyst")),
    "brain": (ANATOMICAL_STRUCTURE, Code("SCT", "12738006", "Brain")),
    "ventricle": (ANATOMICAL_STRUCTURE, Code("SCT", "35764002", "Cerebral ventricle")),
    "ventricles": (ANATOMICAL_STRUCTURE, Code("SCT", "35764002", "Cerebral ventricle")),
    "liver": (ANATOMICAL_STRUCTURE, Code("SCT", "10200004", "Liver")),
    "kidney": (ANATOMICAL_STRUCTURE, Code("SCT", "64033007", "Kidney")),
    "lung": (ANATOMICAL_STRUCTURE, Code("SCT", "39607008", "Lung")),
    "heart": (ANATOMICAL_STRUCTURE, Code("SCT", "80891009", "Heart")),
    "spleen": (ANATOMICAL_STRUCTURE, Code("SCT", "78961009", "Spleen")),
    "bone": (TISSUE, Code("SCT", "272673000", "Bone")),
    "fat": (TISSUE, Code("SCT", "248300009", "Fat")),
    "muscle": (TISSUE, Code("SCT", "91727004", "Muscle")),
    "vessel": (ANATOMICAL_STRUCTURE, Code("SCT", "59820001", "Blood vessel")),
}


def lookup(name: str) -> tuple[Code, Code] | None:
    """Category and type for a segment name ("Lesion", "liver 2" -> liver), or None."""
    words = name.strip().lower().split()
    for candidate in (" ".join(words), words[0] if words else ""):
        if candidate in KNOWN:
            return KNOWN[candidate]
    return None


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
        if len(fields) != 3 or not fields[1]:
            return None
        found.append(Code(*fields))
    return found[0], found[1]
