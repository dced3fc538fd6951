"""The hospital edge: the agent that takes releases from central's channel and serves them from the
node's own Triton, safely and without anyone on site."""
