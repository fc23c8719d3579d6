"""Built-in stages."""
