"""diffusion-harness: seeded, golden-checked reproductions of CS180/280A Project 5."""

__version__ = "0.1.0"
