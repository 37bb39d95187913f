"""FHIR R4 client services (search, read, create, update) built on fhirclient."""
