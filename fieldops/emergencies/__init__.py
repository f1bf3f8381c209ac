"""Declared emergencies: an area, a hazard, the services they cover, and tighter rules."""
