-- Loss-trajectory fits: one row per fit (the run that made it), with what was fitted and how.

CREATE TABLE trajectory_fits (
    fit               VARCHAR NOT NULL,   -- the run id of ingest trajectories
    corpus            VARCHAR NOT NULL,
    models            VARCHAR[] NOT NULL, -- in row order
    method            VARCHAR NOT NULL,   -- pca, sparse, hybrid
    n_rows            INTEGER NOT NULL,   -- (model, step) rows
    n_tokens          BIGINT NOT NULL,    -- token columns
    n_dropped         BIGINT NOT NULL,    -- tokens missing from at least one row
    n_components      INTEGER NOT NULL,
    alpha             DOUBLE,             -- sparse PCA L1 weight (sparse, hybrid)
    ridge_alpha       DOUBLE,
    scaled            BOOLEAN NOT NULL,   -- columns standardised before fitting
    smooth_early      DOUBLE NOT NULL,    -- Gaussian sigma (in checkpoints) at the first point
    smooth_late       DOUBLE NOT NULL,    -- ... at the last point, linear in between
    n_iter            INTEGER,            -- sparse PCA iterations
    cost              DOUBLE,             -- final sparse PCA objective
    run_id            VARCHAR NOT NULL
);
