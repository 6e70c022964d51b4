"""Small helpers shared across semlat: atomic files, progress bars, parallel maps."""
