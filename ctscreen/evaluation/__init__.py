"""Measuring models and preprocessing against ground truth."""
