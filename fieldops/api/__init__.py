"""The HTTP edge: dependencies, error rendering, middleware and the router."""
