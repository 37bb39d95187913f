"""Mini-RIS: orders, modality worklist, MPPS and the virtual CR modality."""
