"""Replacing an entity drops everything derived from it, as the table declarations say."""

import json

import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.results.corpus.job import ingest_corpus
from quanta_db.results.filters.job import ingest_filters
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.quanta.job import ingest_clusters, ingest_recluster
from quanta_db.store import registry

DERIVED_FROM_TOY = ("token_losses", "token_filters", "similarity_tokens", "cluster_labels")


@pytest.fixture
def derived_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[4, 8], progress=False)
    ingest_filters(corpus_store, "toy", "trigram", progress=False)
    first = ingest_clusters(corpus_store, "tiny", 8, "toy", loss_below=6.0, n_tokens=30, skip=2, n_clusters=3,
                            n_init=2, seed=0, progress=False)
    ingest_recluster(corpus_store, first.run_id, n_clusters=2, n_init=2, seed=0)
    return corpus_store


def _count(store, sql):
    return int(store.query_df(sql).iloc[0, 0])


def test_every_declared_parent_exists_and_links_real_columns():
    facts, catalog = registry.fact_tables(), registry.catalog_tables()
    for spec in [*facts.values(), *catalog.values()]:
        for link in spec.parents:
            assert link.parent in facts or link.parent in catalog, (spec.name, link.parent)
            if spec.name in facts:
                assert set(link.mapping) <= set(facts[spec.name].schema.names)
            if link.parent in facts:
                assert set(link.mapping.values()) <= set(facts[link.parent].schema.names)


def test_forced_corpus_replacement_drops_everything_derived(derived_store, toy_inputs):
    store = derived_store
    for table in DERIVED_FROM_TOY:
        assert _count(store, f"SELECT count(*) FROM {table} WHERE corpus = 'toy'") > 0
    assert _count(store, "SELECT count(*) FROM clusterings") == 2
    artifacts_before = _count(store, "SELECT count(*) FROM files WHERE table_name = 'artifact'")
    assert artifacts_before == 1

    result = ingest_corpus(store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=48,
                           force=True, progress=False)

    for table in DERIVED_FROM_TOY:
        assert _count(store, f"SELECT count(*) FROM {table}") == 0, table
    assert _count(store, "SELECT count(*) FROM clusterings") == 0
    assert _count(store, "SELECT count(*) FROM files WHERE table_name = 'artifact'") == 0
    assert _count(store, "SELECT max(pos) FROM tokens WHERE corpus = 'toy'") == 47  # only the new corpus
    assert _count(store, "SELECT count(*) FROM documents WHERE corpus = 'toy' AND n_tokens > 48") == 0
    assert _count(store, "SELECT count(*) FROM cluster_sizes") == 0
    # the models and checkpoints stay: they do not derive from a corpus
    assert _count(store, "SELECT count(*) FROM checkpoints WHERE model = 'tiny'") == 2
    # runs whose output is gone are superseded; the replacing run says what it dropped
    live = store.query_df("SELECT kind, count(*) AS n FROM runs WHERE status = 'committed' GROUP BY kind")
    # (the first corpus run stays: the tokenizer vocabulary it registered is still in use)
    assert dict(zip(live.kind, live.n)) == {"corpus": 2}
    assert set(result.dropped) >= {"corpora", "documents", "tokens", *DERIVED_FROM_TOY, "clusterings"}
    dropped = json.loads(store.query_df(f"SELECT dropped FROM runs WHERE run_id = '{result.run_id}'").dropped[0])
    assert dropped == result.dropped
    # nothing the old runs wrote is left on disk
    listed = set(store.query_df("SELECT path FROM files").path)
    on_disk = {p.relative_to(store.root).as_posix() for p in store.root.rglob("*.parquet")}
    assert on_disk == listed


def test_status_and_ingest_say_what_was_replaced(derived_store, toy_inputs):
    runner = CliRunner()
    root = str(derived_store.root)
    out = runner.invoke(cli, ["--store", root, "ingest", "corpus", str(toy_inputs["corpus"]), "--name", "toy",
                              "--tokenizer", str(toy_inputs["tokenizer"]), "--max-tokens", "48", "--force",
                              "--no-progress"])
    assert out.exit_code == 0, out.output
    assert "replaced" in out.output and "cluster_labels" in out.output and "token_losses" in out.output
    status = runner.invoke(cli, ["--store", root, "status"])
    first_run_line = next(line for line in status.output.splitlines() if " corpus " in line and "committed" in line)
    assert "replaced" in first_run_line and "clusterings (2)" in first_run_line


def test_forced_losses_replace_only_their_model_step_corpus(derived_store, toy_model):
    store = derived_store
    before_step4 = _count(store, "SELECT count(*) FROM token_losses WHERE step = 4")
    result = ingest_losses(store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], force=True, progress=False)[0]
    assert _count(store, "SELECT count(*) FROM token_losses WHERE step = 4") == before_step4
    assert _count(store, "SELECT count(DISTINCT run_id) FROM token_losses WHERE step = 8") == 1
    # the clusterings were made from step-8 losses: they go with them
    assert _count(store, "SELECT count(*) FROM clusterings") == 0
    assert result.dropped["token_losses"] == result.rows_written
