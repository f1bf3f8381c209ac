"""Districts: the areas the city serves, and which one a point falls in."""
