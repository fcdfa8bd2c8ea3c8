"""Paper-specific methods built on the measures."""
