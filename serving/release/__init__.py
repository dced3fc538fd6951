"""Signed model releases: central's TUF release store and an edge node's verified channel to it."""
