"""See the package docstring of talking_heads."""
