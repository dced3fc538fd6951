"""ctscreen: AI-assisted COVID-19 screening on chest CT, built, retrained and deployed as a platform."""

__version__ = "0.1.0"
