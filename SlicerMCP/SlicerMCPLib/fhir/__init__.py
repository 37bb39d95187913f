"""FHIR R4 services: search, read, create and update, and the link between ImagingStudy and DICOM.

`client` speaks HTTP to one server, `search` and `resources` are the acts, `linking` ties
ImagingStudy resources to DICOM studies, `seed` fills a test server, and `service` is the
facade the tools call. Its settings are `core.domain_config.FhirServer`. It may import
`core` and `dicom`.
"""
