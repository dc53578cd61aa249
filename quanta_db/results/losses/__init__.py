"""Per-token next-token losses of models at training checkpoints."""
