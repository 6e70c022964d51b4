"""Semantic structure for latents: alignment regulators and losses, teachers, feature caches."""
