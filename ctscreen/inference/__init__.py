"""Running trained models on whole studies."""
