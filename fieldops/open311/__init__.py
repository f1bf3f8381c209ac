"""Open311 GeoReport v2: the face citizen apps and CRM connectors already speak."""
