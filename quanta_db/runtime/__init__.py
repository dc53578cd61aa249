"""What every model-running job shares: device and dtype, memory budgets, model and tokenizer
loading, length-sorted batching with out-of-memory halving, and activation capture."""
