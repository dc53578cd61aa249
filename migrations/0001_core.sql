-- Runs and the committed-file list: the backbone every ingest writes through.
-- Catalog tables carry no indexes or keys: DuckDB cannot ALTER indexed tables (FACTS.md).

CREATE TABLE runs (
    run_id        VARCHAR NOT NULL,   -- r<YYYYmmddHHMMSS>-<8 hex>
    kind          VARCHAR NOT NULL,   -- corpus, losses, filters, clusters, ...
    params        JSON,               -- the job's parameters as given
    params_hash   VARCHAR NOT NULL,   -- sha256 of kind + canonical params JSON
    code_version  VARCHAR,
    host          VARCHAR,
    device        VARCHAR,
    started_at    TIMESTAMP,
    ended_at      TIMESTAMP,
    rows_written  BIGINT,
    status        VARCHAR NOT NULL    -- committed | superseded
);

CREATE TABLE files (
    run_id        VARCHAR NOT NULL,
    table_name    VARCHAR NOT NULL,
    path          VARCHAR NOT NULL,   -- relative to the store root
    partition     VARCHAR,            -- e.g. corpus=pile_test
    rows          BIGINT NOT NULL,
    bytes         BIGINT NOT NULL,
    committed_at  TIMESTAMP NOT NULL
);
