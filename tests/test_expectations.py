"""Each check a commit makes again, alone: the input-run check, added rows, removed rows, the
shard exception, the committed-only identical-run lookup; and the cascades of a replacement
(every child group, artifacts on disk, drop counts summed). Runs are staged and committed in one
process here, in the order a race would take, so each check is the only one that can stop it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from quanta_db.store.expectations import ConflictError


def _vocab(name="tok", n=5):
    return pa.table({"tokenizer": [name] * n, "token_id": list(range(n)), "token": [f"t{i}" for i in range(n)]})


def _commit(store, kind, params, name="tok", n=5, replace=False, **run_options):
    with store.begin_run(kind, params, **run_options) as run:
        if replace:
            run.replace("vocab", tokenizer=name)
        run.write("vocab", _vocab(name, n))
        run.commit()
    return run.run_id


def _status(store, run_id):
    return store.query_df("SELECT status FROM runs WHERE run_id = ?", [run_id])["status"][0]


def test_an_input_run_replaced_meanwhile_is_refused_by_the_input_check_alone(store, store_snapshot):
    source = _commit(store, "source", {"v": 1})
    # The job names its input run but observes no entity: only the input-run check can stop it.
    job = store.begin_run("derived", {"from": source}, inputs=[source])
    job.write("vocab", _vocab("derived"))
    _commit(store, "source", {"v": 2}, replace=True)  # the source's rows are replaced: it is superseded
    assert _status(store, source) == "superseded"
    before = store_snapshot(store)
    with pytest.raises(ConflictError) as refused:
        job.commit()
    assert str(refused.value) == (f"input run {source} was replaced while this job ran; nothing was committed, "
                                  "re-run the command to compute from the current data")
    job.abort()
    assert store_snapshot(store) == before


def test_a_job_of_several_input_runs_commits_while_all_stand_and_names_the_one_replaced(store):
    first, second = _commit(store, "source", {"v": "a"}, name="a"), _commit(store, "source", {"v": "b"}, name="b")
    assert first != second
    with store.begin_run("derived", {"from": [first, second]}, inputs=[first, second]) as job:
        job.write("vocab", _vocab("derived"))
        job.commit()
    assert _status(store, job.run_id) == "committed"
    job = store.begin_run("derived", {"from": [first, second], "again": 1}, inputs=[first, second])
    job.write("vocab", _vocab("derived-again"))
    _commit(store, "source", {"v": "b2"}, name="b", replace=True)
    assert _status(store, first) == "committed" and _status(store, second) == "superseded"
    with pytest.raises(ConflictError, match=f"input run {second} was replaced"):
        job.commit()
    job.abort()


def test_rows_added_meanwhile_are_refused_by_the_added_check_alone(store):
    seen = store.observe("maker", {"tok": "new"})
    assert store.see(seen, "vocab", tokenizer="new") == frozenset()  # absent when the job decided
    job = store.begin_run("maker", {"tok": "new"}, observation=seen)
    job.write("vocab", _vocab("new"))
    other = _commit(store, "other_maker", {"tok": "new"}, name="new")  # someone created it meanwhile
    with pytest.raises(ConflictError) as refused:
        job.commit()
    job.abort()
    assert str(refused.value) == (f"vocab tokenizer='new' was written by run {other} while this job ran; "
                                  "nothing was committed (re-run the command; --force replaces)")


def test_a_run_records_the_device_its_job_ran_on(store):
    run_id = _commit(store, "maker", {"n": 5}, device="cuda:1")
    assert store.query_df("SELECT device FROM runs WHERE run_id = ?", [run_id])["device"][0] == "cuda:1"


def test_rows_added_to_an_input_meanwhile_name_it_as_the_input(store):
    """The job read ``tokenizer='tok'``; a run adding rows there (its input run still committed)
    stops the commit, and the message says it was the job's input, with the advice for inputs."""
    first = _commit(store, "maker", {"n": 5})
    seen = store.observe("user", {"tok": "tok"})
    assert store.see(seen, "vocab", is_input=True, tokenizer="tok") == {first}
    job = store.begin_run("user", {"tok": "tok"}, observation=seen)
    job.write("vocab", _vocab("derived"))
    added = _commit(store, "more", {"n": 3}, n=3)
    with pytest.raises(ConflictError) as refused:
        job.commit()
    job.abort()
    assert str(refused.value) == (f"input vocab tokenizer='tok' was written by run {added} while this job ran; "
                                  "nothing was committed (re-run the command to compute from the current data)")


def test_rows_removed_meanwhile_are_refused_by_the_removed_check_alone(store):
    first = _commit(store, "maker", {"n": 5})
    seen = store.observe("user", {"tok": "tok"})
    assert store.see(seen, "vocab", tokenizer="tok") == {first}
    job = store.begin_run("user", {"tok": "tok"}, observation=seen)  # no input runs: only `seen`
    job.write("vocab", _vocab("derived"))
    with store.begin_run("dropper", {}) as dropper:  # removes the rows, adds none back
        dropper.replace("vocab", tokenizer="tok")
        dropper.write("vocab", _vocab("unrelated"))
        dropper.commit()
    with pytest.raises(ConflictError, match=f"replaced \\(run {first} is gone\\)"):
        job.commit()
    job.abort()


def _shard_job(store, shard, variant="a"):
    params = {"split": "s", "shard": list(shard), "variant": variant}
    seen = store.observe("sharded", params)
    store.see(seen, "vocab", shard=shard, tokenizer="sharded")
    job = store.begin_run("sharded", params, observation=seen)
    job.write("vocab", _vocab("sharded", 3 + shard[0]))
    return job


def test_other_shards_of_one_split_commit_side_by_side_and_the_same_shard_conflicts(store):
    zero, one = _shard_job(store, (0, 2)), _shard_job(store, (1, 2))
    identical, same_shard, other_split = _shard_job(store, (0, 2)), _shard_job(store, (0, 2), "b"), \
        _shard_job(store, (0, 3))
    assert zero.commit() > 0
    assert one.commit() > 0  # another shard of the same split: not a conflict
    assert identical.commit() == 0 and identical.duplicate_of == zero.run_id  # the same job: a no-op
    for job in (same_shard, other_split):  # the same shard of another job, a shard of another split
        with pytest.raises(ConflictError, match="vocab tokenizer='sharded' was written by run"):
            job.commit()
        job.abort()


def test_a_job_whose_run_was_dropped_computes_again(store):
    """The identical-run lookup counts committed runs only: after a forced replacement dropped
    a run, the same command must compute, not answer "already ingested"."""
    first = _commit(store, "maker", {"n": 5})
    _commit(store, "replacer", {"n": 3}, n=3, replace=True)
    assert _status(store, first) == "superseded"
    again = store.observe("maker", {"n": 5})
    assert again.previous is None and again.identical == []


def test_replacement_cascades_into_every_child_group_with_summed_counts(losses_store):  # noqa: F811
    """Dropping a model reaches its three checkpoints (three child groups) and each one's
    token_losses; the counts add up across groups and the files leave the disk."""
    store = losses_store
    per_step = store.query_df("SELECT step, count(*) AS n FROM token_losses WHERE model = 'small' GROUP BY step")
    assert sorted(per_step.step) == [0, 4, 8]
    paths = store.committed_paths("token_losses")
    small = [p for p in paths if "model=small" in p.as_posix()]
    with store.begin_run("drop_model", {}) as run:
        run.replace("models", model="small")
        run.write("vocab", _vocab("unrelated"))
        run.commit()
    assert run.dropped["checkpoints"] == 3
    assert run.dropped["token_losses"] == int(per_step.n.sum())  # summed over the three groups
    assert store.query_df("SELECT count(*) AS n FROM token_losses WHERE model = 'small'")["n"][0] == 0
    assert store.query_df("SELECT count(*) AS n FROM token_losses WHERE model = 'large'")["n"][0] > 0
    assert small and not any(p.exists() for p in small)


def test_artifacts_of_a_superseded_run_leave_the_disk(store):
    with store.begin_run("with_artifact", {}) as run:
        run.write("vocab", _vocab("art"))
        run.write_artifact("matrix", np.eye(3, dtype=np.float32))
        run.commit()
    artifact_files = list((store.root / "artifacts").rglob("*.npy"))
    assert len(artifact_files) == 1
    _commit(store, "replacer", {}, name="art", n=2, replace=True)
    assert not [p for p in (store.root / "artifacts").rglob("*") if p.is_file()]  # the .npy and anything beside it
    assert store.query_df("SELECT count(*) AS n FROM files WHERE table_name = 'artifact'")["n"][0] == 0


def test_the_runs_behind_rows_are_those_of_a_fact_or_catalog_table_and_an_unknown_table_is_named(store):
    """``expectations.current_runs``: the runs holding a fact table's matching files, or a catalog
    table's matching rows; a table the store does not have is a KeyError naming it."""
    from quanta_db.store import expectations

    run_id = _commit(store, "vocab", {"v": 1}, name="tok")
    with store.read() as con:
        assert expectations.current_runs(con, "vocab", {"tokenizer": "tok"}) == {run_id}
        assert expectations.current_runs(con, "vocab", {"tokenizer": "other"}) == frozenset()
        assert expectations.current_runs(con, "runs", {"run_id": run_id}) == {run_id}
        with pytest.raises(KeyError, match="unknown table 'no_such_table'"):
            expectations.current_runs(con, "no_such_table", {})
