"""DICOM services (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE, DICOMweb) and series loading."""
