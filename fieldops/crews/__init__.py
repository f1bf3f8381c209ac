"""Field crews: who they are, what they can do, when they work and where they are."""
