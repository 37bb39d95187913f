"""R4 search values: dates get a prefix, never fhirclient's `$gt` form; ids and UIDs can't
change the request path; ImagingStudy parameters use the DICOM systems."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from SlicerMCPLib.core.errors import InvalidParameter
from SlicerMCPLib.fhir.search import (
    DATE_PREFIXES,
    date_param,
    imaging_study_params,
    patient_params,
    resource_id,
)

dates = st.dates(min_value=dt.date(1000, 1, 1), max_value=dt.date(9999, 12, 31))
precision = st.sampled_from([4, 7, 10])  # YYYY, YYYY-MM, YYYY-MM-DD


@given(dates, precision, st.sampled_from(["", *DATE_PREFIXES]))
def test_prefixed_dates_pass_through_and_dollar_forms_are_rewritten(day, digits, prefix) -> None:
    value = day.isoformat()[:digits]
    assert date_param(prefix + value) == prefix + value
    if prefix:
        assert date_param("$" + prefix + value) == prefix + value


@given(
    dates, st.sampled_from([(">=", "ge"), ("<=", "le"), (">", "gt"), ("<", "lt"), ("!=", "ne"), ("=", "eq")])
)
def test_operators_become_r4_prefixes(day, op) -> None:
    assert date_param(f"{op[0]} {day.isoformat()}") == op[1] + day.isoformat()


@pytest.mark.parametrize("bad", ["1962/01/01", "gt62", "$gx1962", "after 1960", "1962-1-1", ""])
def test_bad_dates_say_the_format(bad: str) -> None:
    with pytest.raises(InvalidParameter, match="YYYY-MM-DD"):
        date_param(bad, "birthdate")


@pytest.mark.parametrize("bad", ["../metadata", "a/b", "a b", "x" * 65, "", "id?x=1"])
def test_ids_that_would_change_the_path_are_refused(bad: str) -> None:
    with pytest.raises(InvalidParameter):
        resource_id(bad)


def test_patient_and_imaging_study_parameters() -> None:
    assert patient_params(family="Doe", birthdate=["ge1960", "$lt1970-06"], gender="female") == [
        ("family", "Doe"),
        ("birthdate", "ge1960"),
        ("birthdate", "lt1970-06"),
        ("gender", "female"),
    ]
    assert imaging_study_params(
        patient="123",
        study_instance_uid="urn:oid:1.2.840.1",
        modality="ct",
        started_from="2024-01-01",
        started_to="2024-12-31",
    ) == [
        ("patient", "Patient/123"),
        ("identifier", "urn:dicom:uid|urn:oid:1.2.840.1"),
        ("modality", "http://dicom.nema.org/resources/ontology/DCM|CT"),
        ("started", "ge2024-01-01"),
        ("started", "le2024-12-31"),
    ]
    with pytest.raises(InvalidParameter):
        imaging_study_params(patient="Practitioner/1")
    with pytest.raises(InvalidParameter):
        imaging_study_params(started_from="gt2024-01-01")
