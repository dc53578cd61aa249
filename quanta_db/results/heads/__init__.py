"""Attention-head metrics: per-token DLA and mover scores, per-head induction and OV-copying scores."""
