"""Maps: pure folium renderers (GeoDataFrames in, map out), the live dispatcher page at /map,
its change feed, hot spots and heat, and ``fieldops map render`` for static maps."""
