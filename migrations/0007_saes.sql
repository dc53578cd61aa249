-- Sparse autoencoders: one row per SAE name, with the model checkpoint and hook it reads.

CREATE TABLE saes (
    sae              VARCHAR NOT NULL,
    model            VARCHAR NOT NULL,
    step             BIGINT NOT NULL,
    hook_name        VARCHAR NOT NULL,   -- TransformerLens / sae-lens name, e.g. blocks.3.hook_resid_post
    layer            INTEGER NOT NULL,
    d_in             INTEGER NOT NULL,
    d_sae            INTEGER NOT NULL,
    architecture     VARCHAR NOT NULL,   -- sae-lens architecture: standard, topk, jumprelu, gated, ...
    source           VARCHAR NOT NULL,   -- sae-lens release or local folder
    sae_id           VARCHAR,            -- the id within a release
    sae_lens_version VARCHAR NOT NULL,
    config           JSON NOT NULL,
    config_hash      VARCHAR NOT NULL,   -- sha256 of config and weights: one name, one SAE
    run_id           VARCHAR NOT NULL
);
