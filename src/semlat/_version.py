"""semlat's version (one place; the package root, model folders and reports read it)."""

__version__ = "0.2.0"
