"""Triton Inference Server: a release as a Triton model repository, the server itself, a client."""
