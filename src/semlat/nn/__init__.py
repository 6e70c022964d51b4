"""Reusable neural-network blocks (weight norm, Snake activations, anti-aliasing, attention)."""
