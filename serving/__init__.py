"""Serving: Triton model repositories, signed releases, the edge."""
