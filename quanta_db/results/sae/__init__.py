"""SAE feature statistics: per-feature stats, examples, logit effects and SAE metrics (sae-lens)."""
