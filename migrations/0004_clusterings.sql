-- Quanta discovery: one row per clustering of tokens by gradient similarity. The clustering id
-- is the id of the run that made it; similarity_run names the run whose similarity matrix
-- (an artifact listed in files) it clustered.

CREATE TABLE clusterings (
    clustering          VARCHAR NOT NULL,
    model               VARCHAR NOT NULL,
    step                BIGINT NOT NULL,
    corpus              VARCHAR NOT NULL,
    similarity_run      VARCHAR NOT NULL,
    similarity_method   VARCHAR NOT NULL,   -- exact | sketch:<dim>
    n_tokens            INTEGER NOT NULL,
    n_clusters          INTEGER NOT NULL,
    params              JSON,
    similarity_seconds  DOUBLE,
    clustering_seconds  DOUBLE,
    run_id              VARCHAR NOT NULL
);
