"""A TID 1500 Measurement Report (Comprehensive 3D SR) of segment and markup measurements, with highdicom.

Each segment is one "Volumetric ROI measurements" group: tracking identifier and UID, the
segment referenced in its SEG (SOP instance and segment number, source series), its finding
type, and its measurements (volume, intensity statistics...) with SNOMED CT / DCM concept names
and UCUM units (dicom/codes.py). Markup measurements (line lengths, diameters) form their own
groups. The SEG and the source images are listed as evidence; patient and study come from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from ..core.errors import InvalidParameter
from .codes import CONCEPTS, IMAGING_MEASUREMENT_REPORT, UNITS, Code, segment_codes, unit_code
from .seg_export import MANUFACTURER, SEG_SOP_CLASS, require_highdicom

IMAGING_PROCEDURE = Code("363679005", "SCT", "Imaging procedure")


@dataclass
class Value:
    """One measured value: what (a codes.Quantity), how much, in which UCUM unit."""

    quantity: str
    value: float
    unit: str


@dataclass
class SegmentFindings:
    segment_number: int
    label: str
    terminology: str | None
    tracking_uid: str
    values: list[Value]


def _concept(hd: Any, code: Code) -> Any:
    return hd.sr.CodedConcept(code.value, code.scheme, code.meaning)


def _measurement(hd: Any, value: Value) -> Any:
    concept = CONCEPTS.get(value.quantity)
    if concept is None:
        raise InvalidParameter(f"unknown quantity {value.quantity!r}; use one of {', '.join(CONCEPTS)}")
    if value.unit not in UNITS:
        raise InvalidParameter(f"unit {value.unit!r} is not one of the UCUM units {', '.join(UNITS)}")
    return hd.sr.Measurement(
        name=_concept(hd, concept.name),
        value=float(value.value),
        unit=_concept(hd, unit_code(value.unit)),
        derivation=_concept(hd, concept.derivation) if concept.derivation else None,
    )


def build_sr(
    seg: Dataset,
    sources: Sequence[Dataset],
    findings: Sequence[SegmentFindings],
    markups: Sequence[tuple[str, Value]] = (),
    *,
    series_description: str = "Measurement report",
    series_number: int = 9200,
    observer: str | None = None,
    final: bool = False,
) -> Any:
    """The Comprehensive 3D SR (a pydicom Dataset) of the findings, referencing the SEG and images."""
    hd = require_highdicom()
    from pydicom.sr.codedict import codes

    observers = {
        "observer_device_context": hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(), name=MANUFACTURER
            ),
        )
    }
    if observer:
        observers["observer_person_context"] = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=observer),
        )
    groups: list[Any] = []
    source_series = hd.sr.SourceSeriesForSegmentation(str(sources[0].SeriesInstanceUID))
    for item in findings:
        _, kind = segment_codes(item.label, item.terminology)
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=item.tracking_uid, identifier=item.label[:64]
                ),
                referenced_segment=hd.sr.ReferencedSegment(
                    sop_class_uid=SEG_SOP_CLASS,
                    sop_instance_uid=str(seg.SOPInstanceUID),
                    segment_number=item.segment_number,
                    source_series=source_series,
                ),
                finding_type=_concept(hd, kind),
                measurements=[_measurement(hd, v) for v in item.values],
            )
        )
    for name, value in markups:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=name[:64]),
                measurements=[_measurement(hd, value)],
            )
        )
    if not groups:
        raise InvalidParameter("the report holds no measurements; give segments or markup measurements")
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(**observers),
        procedure_reported=_concept(hd, IMAGING_PROCEDURE),
        imaging_measurements=groups,
        title=_concept(hd, IMAGING_MEASUREMENT_REPORT),
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *sources],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=final,
    )
    sr.SeriesDescription = series_description[:64]
    return sr
