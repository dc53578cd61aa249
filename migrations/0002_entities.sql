-- The entities that fact tables link to: tokenizers, corpora, models, checkpoints,
-- and the registry of installed saved analyses.

CREATE TABLE tokenizers (
    tokenizer     VARCHAR NOT NULL,   -- key used in vocab and corpora
    source        VARCHAR NOT NULL,   -- hub name or local folder as given
    vocab_hash    VARCHAR NOT NULL,   -- sha256 of the (token, id) vocabulary
    vocab_size    INTEGER NOT NULL,
    run_id        VARCHAR NOT NULL
);

CREATE TABLE corpora (
    corpus        VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    tokenizer     VARCHAR NOT NULL,
    vocab_hash    VARCHAR NOT NULL,
    max_tokens    INTEGER,
    n_docs        BIGINT NOT NULL,
    n_tokens      BIGINT NOT NULL,
    n_predictable BIGINT NOT NULL,    -- tokens with a canonical_idx (pos >= 1)
    run_id        VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE models (
    model         VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    architecture  VARCHAR,
    n_params      BIGINT,
    n_layers      INTEGER,
    d_model       INTEGER,
    n_ctx         INTEGER,
    vocab_hash    VARCHAR,
    run_id        VARCHAR NOT NULL
);

CREATE TABLE checkpoints (
    model         VARCHAR NOT NULL,
    step          BIGINT NOT NULL,
    revision      VARCHAR,
    source        VARCHAR NOT NULL,
    run_id        VARCHAR NOT NULL
);

CREATE TABLE saved_queries (
    name          VARCHAR NOT NULL,
    description   VARCHAR,
    parameters    VARCHAR,
    sql           VARCHAR NOT NULL,
    sha256        VARCHAR NOT NULL
);
