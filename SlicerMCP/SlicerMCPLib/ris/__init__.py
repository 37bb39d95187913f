"""The mini-RIS: patients and orders, modality worklist, MPPS and the virtual CR modality.

`store` keeps the data (SQLite or MySQL/MariaDB through `db`, schema in `schema`), `worklist`
matches MWL queries, `scp` serves MWL and MPPS over DICOM, `api` is the REST API, `modality`
the virtual CR (images from `images`), and `service` the facade the tools call. Its settings
are `core.domain_config.MiniRisSettings`. It may import `core` and `dicom`.
"""
