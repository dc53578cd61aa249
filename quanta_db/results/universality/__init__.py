"""Feature universality: cross-SAE correlations, matching, and similarity metrics with p-values."""
