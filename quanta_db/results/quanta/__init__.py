"""Quanta discovery (Michaud et al.): clusterings of low-loss tokens by the cosine similarity of
their loss gradients, the similarity matrix and tokens behind each, and the cluster viewer."""
