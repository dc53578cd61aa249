"""Loss trajectories: joint PCA / sparse PCA / hybrid over models x checkpoints, essential dynamics."""
