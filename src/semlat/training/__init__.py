"""The trainer (one engine for every recipe), its settings, and the recipes."""
