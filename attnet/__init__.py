"""attnet."""
