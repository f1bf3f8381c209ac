"""Pure, vectorised geometry for FieldOps: CRS handling, districting and duplicate matching."""
