"""DICOM services: C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE, DICOMweb, and loading series as volumes.

One module per act (`query`, `retrieve`, `move`, `send`, `pdf`, `loader`, `export`), one place
for associations (`associations`), our Storage SCP (`storage_scp`), and the facade the tools
call (`service`). Its settings are `core.domain_config.DicomNode` and `StorageScpSettings`.
It may import `core` only.
"""
