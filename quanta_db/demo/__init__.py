"""The embedded default: a corpus, a tokenizer and tiny Pythia-architecture models built offline."""
