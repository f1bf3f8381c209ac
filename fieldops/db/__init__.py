"""Storage: engines for SpatiaLite and PostGIS, the ORM base, migrations."""
