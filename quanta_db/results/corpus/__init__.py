"""Corpora: tokenizers and their vocabularies, documents, tokens with the pile-canonical index,
sampled contexts, and DeepMind-mathematics zero-/few-shot sets aligned token for token."""
