"""The central dataset: intake checks for arriving cases, and the DVC-versioned dataset they join."""
