"""Splits at the store level (both catalogs): shards staged apart commit in one transaction or not
at all; gc keeps what a shard's record lists and removes a crashed attempt's runs."""

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from quanta_db.errors import InputError, StoreError
from quanta_db.store import liveness, splits
from tests.helpers import staging_entries

SPLIT = "split-000000000abc"
COMMAND = ["quanta-db", "--store", "S", "ingest", "x", "--shard", splits.SHARD_PLACEHOLDER, "--stage-only"]


def _vocab(name: str, n: int = 3) -> pa.Table:
    return pa.table({"tokenizer": [name] * n, "token_id": list(range(n)), "token": [f"t{i}" for i in range(n)]})


def _stage_shard(store, index: int, shards: int = 3, split: str = SPLIT, job: str = "test", record: bool = True):
    run = store.begin_run(job, {"part": index, "of": shards})
    run.write("vocab", _vocab(f"tok{index}"))
    run.keep_for_split(split, (index, shards))
    if record:
        splits.record_shard(store.root, split, (index, shards), job, [run.run_id], COMMAND)
    return run.run_id


def _vocab_rows(store) -> int:
    return store.query_df("SELECT count(*) AS n FROM vocab")["n"][0]


def test_a_split_commits_all_its_shards_in_one_transaction(store, store_snapshot):
    before = store_snapshot(store)
    ids = [_stage_shard(store, i) for i in range(3)]
    assert store_snapshot(store) == before and _vocab_rows(store) == 0  # staged shards are invisible
    done = store.commit_split(SPLIT, expect=3)
    assert (done.runs, done.rows_written) == (ids, 9)
    assert _vocab_rows(store) == 9 and store.split_runs(SPLIT) == sorted(ids)
    assert staging_entries(store) == []
    params = json.loads(store.query_df("SELECT params FROM runs WHERE run_id = ?", [ids[1]])["params"][0])
    assert params["split"] == {"id": SPLIT, "shard": [1, 3]}


def test_missing_shards_are_listed_and_commit_nothing(store, store_snapshot):
    _stage_shard(store, 1, shards=4)
    before = store_snapshot(store)
    with pytest.raises(InputError, match=r"lacks shard\(s\) 0, 2, 3 of 4; nothing was committed. Run them with: for i in 0 2 3;"):
        store.commit_split(SPLIT)
    assert store_snapshot(store) == before


def test_a_missing_shard_commits_nothing_and_names_the_command(store, store_snapshot):
    _stage_shard(store, 0)
    _stage_shard(store, 2)
    before = store_snapshot(store)
    with pytest.raises(InputError, match=r"lacks shard\(s\) 1 of 3; nothing was committed") as error:
        store.commit_split(SPLIT)
    assert "--shard 1/3 --stage-only && quanta-db --store" in str(error.value)
    assert f"commit --split {SPLIT} --expect 3" in str(error.value)
    assert store_snapshot(store) == before
    [state] = store.status()["staged_splits"]
    assert (state.split, sorted(state.staged), state.missing) == (SPLIT, [0, 2], [1])
    _stage_shard(store, 1)
    assert store.commit_split(SPLIT).rows_written == 9


def test_one_bad_shard_rolls_back_the_others(store, store_snapshot):
    _stage_shard(store, 0, shards=2)
    bad = _stage_shard(store, 1, shards=2)
    state = store.root / "staging" / bad / "commit.pkl"
    run = pickle.loads(state.read_bytes())
    run["inputs"] = ["r-a-run-that-is-gone"]  # as if shard 1 had read a run replaced meanwhile
    state.write_bytes(pickle.dumps(run))
    before = store_snapshot(store)
    with pytest.raises(Exception, match="input run r-a-run-that-is-gone was replaced"):
        store.commit_split(SPLIT)
    assert store_snapshot(store) == before  # shard 0 was recorded in the transaction, then rolled back
    assert len(store.status()["staged_splits"]) == 1


@pytest.mark.parametrize("case", ["unknown", "twice", "expect", "other split"])
def test_bad_split_commits_are_one_line_and_change_nothing(store, store_snapshot, case):
    for i in range(2):
        _stage_shard(store, i, shards=2)
    if case == "twice":
        store.commit_split(SPLIT)
    if case == "other split":
        stray = _stage_shard(store, 0, shards=2, split="split-0000000000ff", record=False)
        splits.record_shard(store.root, SPLIT, (0, 2), "test", [stray], COMMAND)
    before = store_snapshot(store)
    message = {"unknown": "no split split-nope is staged", "twice": f"split {SPLIT} is already committed",
               "expect": "has 2 shards, not the 3 that --expect says",
               "other split": "belongs to another split or job"}[case]
    with pytest.raises(InputError, match=message) as error:
        store.commit_split("split-nope" if case == "unknown" else SPLIT, expect=3 if case == "expect" else None)
    assert "\n" not in str(error.value)
    assert store_snapshot(store) == before
    if case == "twice":
        assert str(error.value).endswith(f"(2 run(s), e.g. {store.split_runs(SPLIT)[0]})")


def test_a_listed_run_gone_from_staging_names_the_command_for_its_shard(store, store_snapshot):
    _stage_shard(store, 0, shards=2)
    gone = _stage_shard(store, 1, shards=2)
    shutil.rmtree(store.root / "staging" / gone)
    before = store_snapshot(store)
    with pytest.raises(InputError) as error:
        store.commit_split(SPLIT)
    retry = splits.state(store.root, SPLIT).retry_command(store.root, [1])
    assert str(error.value) == (f"run {gone} of shard 1 of split {SPLIT} is gone from staging; nothing was committed. "
                                f"Run the shard again with: {retry}")
    assert store_snapshot(store) == before


def test_a_listed_run_that_belongs_to_no_split_commits_nothing(store, store_snapshot):
    _stage_shard(store, 0, shards=2)
    run = store.begin_run("test", {"part": 1})
    run.write("vocab", _vocab("tok1"))
    run._keep_ready()  # kept as a commit that timed out on the lock keeps it: no split in its parameters
    splits.record_shard(store.root, SPLIT, (1, 2), "test", [run.run_id], COMMAND)
    before = store_snapshot(store)
    with pytest.raises(InputError, match=f"run {run.run_id} listed by split {SPLIT} belongs to another split or job"):
        store.commit_split(SPLIT)
    assert store_snapshot(store) == before


def keep_the_first_run(store, runs):
    """A split's merge (``module:function``): commit the first shard's run, discard the others."""
    return runs[:1], runs[1:]


def _commit_merged(store, shards: int, merge: str):
    """Stage ``shards`` shards whose records name ``merge``, and commit the split: (run ids, its commit)."""
    ids = [_stage_shard(store, i, shards=shards, record=False) for i in range(shards)]
    for index, run_id in enumerate(ids):
        splits.record_shard(store.root, SPLIT, (index, shards), "test", [run_id], COMMAND, merge=f"tests.test_splits:{merge}")
    return ids, store.commit_split(SPLIT)


def test_a_merge_decides_which_runs_commit_and_the_rest_are_discarded(store):
    ids, done = _commit_merged(store, 3, "keep_the_first_run")
    assert (done.runs, done.rows_written) == (ids[:1], 3) and _vocab_rows(store) == 3
    assert staging_entries(store) == []  # the discarded runs' staging is gone with the split's folder


def stage_more_in_the_first_run(store, runs):
    """A merge that adds rows to the first shard's run (as the jobs' merges do) beside what it staged."""
    first = runs[0]
    first.reopen()
    first.write("vocab", pa.table({"tokenizer": ["tok0"] * 2, "token_id": [3, 4], "token": ["t3", "t4"]}))
    return [first], runs[1:]


def test_a_merge_stages_more_rows_beside_the_files_its_run_kept(store):
    ids, done = _commit_merged(store, 2, "stage_more_in_the_first_run")
    assert (done.runs, done.rows_written) == (ids[:1], 5)
    tokens = store.query_df("SELECT token_id FROM vocab WHERE tokenizer = 'tok0' ORDER BY token_id")["token_id"]
    assert tokens.tolist() == [0, 1, 2, 3, 4]
    names = sorted(Path(path).name for path in store.manifest("vocab").column("path").to_pylist())
    assert len(set(names)) == 2 and sum(name.startswith(f"part-{ids[0]}-more1") for name in names) == 1, names
    assert all(name.startswith(f"part-{ids[0]}") for name in names), names


def test_gc_keeps_listed_shards_and_removes_a_crashed_attempt(store):
    listed = _stage_shard(store, 0, shards=2)
    script = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); from quanta_db import open_store; "
              f"from tests.test_splits import _stage_shard; "
              f"print(_stage_shard(open_store({str(store.root)!r}), 1, shards=2, record=False))")
    crashed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert {p.name for p in staging_entries(store)} == {listed, crashed, SPLIT}
    report = store.gc()
    assert report.staging_removed == [crashed]
    assert {p.name for p in staging_entries(store)} == {listed, SPLIT}
    with pytest.raises(InputError, match=r"lacks shard\(s\) 1"):
        store.commit_split(SPLIT)


def test_a_retried_shard_replaces_its_record(store):
    first = _stage_shard(store, 0, shards=1)
    second = _stage_shard(store, 0, shards=1)
    assert splits.state(store.root, SPLIT).staged == {0: [second]}
    done = store.commit_split(SPLIT)
    assert done.runs == [second] and _vocab_rows(store) == 3
    assert first not in store.split_runs(SPLIT)


def test_a_planned_split_has_every_shard_missing_and_a_ready_marker(tmp_path):
    top = splits.plan_split(tmp_path, SPLIT, "losses", 3, COMMAND)  # no staging folder yet
    assert top == tmp_path / "staging" / SPLIT
    assert splits.state(tmp_path, SPLIT) == splits.SplitState(SPLIT, "losses", 3, {}, COMMAND)
    assert json.loads((top / liveness.MARKER).read_text()) == {"split": SPLIT, "kind": "losses", "ready": True}
    assert splits.state(tmp_path, "split-unknown") is None and splits.records(tmp_path, "split-unknown") == []


def test_a_shard_record_says_what_it_staged_where_and_when(tmp_path):
    import socket
    import time

    splits.record_shard(tmp_path, SPLIT, (1, 3), "losses", ["run-a", "run-b"], COMMAND, merge="m:f")
    top = tmp_path / "staging" / SPLIT
    assert json.loads((top / liveness.MARKER).read_text()) == {"split": SPLIT, "kind": "losses", "ready": True}
    (record,) = splits.records(tmp_path, SPLIT)
    assert time.time() - 60 < record.pop("finished_at") <= time.time()
    assert record == {"split": SPLIT, "job": "losses", "shard": [1, 3], "runs": ["run-a", "run-b"],
                      "command": COMMAND, "merge": "m:f", "host": socket.gethostname()}
    (top / "shard-00000.json").write_text('{"split": ')  # a record being replaced: left out, the rest still read
    assert [r["shard"] for r in splits.records(tmp_path, SPLIT)] == [[1, 3]]


def test_the_retry_command_runs_the_missing_shards_then_commits(tmp_path):
    state = splits.SplitState(SPLIT, "x", 3, {1: ["run-a"]}, COMMAND)
    run = "quanta-db --store S ingest x --shard {i}/3 --stage-only"
    commit = f"quanta-db --store {tmp_path} commit --split {SPLIT} --expect 3"
    assert state.retry_command(tmp_path) == f"for i in 0 2; do {run.format(i='$i')} || exit 1; done && {commit}"
    assert state.retry_command(tmp_path, [2]) == f"{run.format(i=2)} && {commit}"
    assert state.retry_command(tmp_path, [1, 2]) == f"for i in 1 2; do {run.format(i='$i')} || exit 1; done && {commit}"


@pytest.mark.parametrize("disagreeing", [{"shard": (1, 3)}, {"job": "other"}])
def test_shard_records_that_disagree_are_refused_naming_them(tmp_path, disagreeing):
    splits.plan_split(tmp_path, SPLIT, "test", 2, COMMAND)
    assert json.loads((tmp_path / "staging" / SPLIT / splits.PLANNED).read_text())["split"] == SPLIT
    splits.record_shard(tmp_path, SPLIT, (0, 2), "test", ["run-a"], COMMAND)
    second = {"shard": (1, 2), "job": "test", **disagreeing}
    splits.record_shard(tmp_path, SPLIT, second["shard"], second["job"], ["run-b"], COMMAND)
    with pytest.raises(StoreError) as error:
        splits.state(tmp_path, SPLIT)
    assert str(error.value) == (f"the shards staged under {SPLIT} disagree on their job or shard count "
                                "(shard-00000.json, shard-00001.json)")


def test_a_committed_split_says_its_name_and_runs(store):
    ids = [_stage_shard(store, i, shards=2) for i in range(2)]
    done = store.commit_split(SPLIT)
    assert (done.split, done.runs, done.duplicates) == (SPLIT, ids, 0)


def test_a_split_submitted_to_slurm_is_resubmitted_with_sbatch(tmp_path):
    top = tmp_path / "staging" / SPLIT
    top.mkdir(parents=True)
    for script in ("shards.sbatch", "commit.sbatch"):  # what `ingest --slurm` leaves in the split's folder
        (top / script).write_text("#!/bin/bash\n")
    state = splits.SplitState(SPLIT, "x", 4, {1: ["run-a"]}, COMMAND)
    resubmit = ("job=$(sbatch --parsable --array={} " + str(top / "shards.sbatch") + ") && sbatch --parsable "
                "--dependency=afterok:${{job%%;*}} --kill-on-invalid-dep=yes " + str(top / "commit.sbatch"))
    assert state.retry_command(tmp_path) == resubmit.format("0,2,3")
    assert state.retry_command(tmp_path, [2]) == resubmit.format("2")


def keep_runs_of_new_tokenizers(store, runs):
    """A split's merge that asks the store: commit the runs whose tokenizer it lacks."""
    known = set(store.query_df("SELECT DISTINCT tokenizer FROM vocab")["tokenizer"])
    new = [r for r in runs if f"tok{r.params['part']}" not in known]
    return new, [r for r in runs if r not in new]


def test_a_merge_is_given_the_store(store):
    with store.begin_run("test", {"part": 1, "of": 1}) as run:
        run.write("vocab", _vocab("tok1"))
        run.commit()
    ids, done = _commit_merged(store, 3, "keep_runs_of_new_tokenizers")
    assert (done.runs, done.rows_written) == ([ids[0], ids[2]], 6) and _vocab_rows(store) == 9


def test_a_run_staged_twice_in_a_split_commits_once_and_counts_as_a_duplicate(store):
    twice = [_stage_shard(store, 0, shards=2, record=False) for _ in range(2)]  # same job and parameters
    splits.record_shard(store.root, SPLIT, (0, 2), "test", twice, COMMAND)
    other = _stage_shard(store, 1, shards=2)
    done = store.commit_split(SPLIT)
    assert (done.runs, done.rows_written, done.duplicates) == ([*twice, other], 6, 1)
    assert _vocab_rows(store) == 6 and store.split_runs(SPLIT) == sorted([twice[0], other])


def test_a_split_whose_commit_times_out_stays_staged_and_says_how_to_commit(store, monkeypatch):
    """Another process holds the write lock past the timeout: nothing commits, the hint names the
    split's own command, and that command commits it once the lock is free."""
    from quanta_db.store import catalog

    ids = [_stage_shard(store, i, shards=2) for i in range(2)]
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from quanta_db.store import catalog\n"
         "with catalog.connect(Path(sys.argv[1]), read_only=False):\n    print('held', flush=True); sys.stdin.read()",
         str(store.root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv(catalog.LOCK_TIMEOUT_ENV, "0.3")
        with pytest.raises(catalog.CatalogLocked, match=rf"`quanta-db commit --split {SPLIT}` again commits it$"):
            store.commit_split(SPLIT)
    finally:
        holder.communicate("", timeout=60)
    assert _vocab_rows(store) == 0 and splits.state(store.root, SPLIT).staged == {0: ids[:1], 1: ids[1:]}
    done = store.commit_split(SPLIT)
    assert done.runs == ids and _vocab_rows(store) == 6


def test_a_split_id_is_the_same_in_every_release():
    """Shards of one split may run under different releases (a retry after an upgrade): the id is
    sha256 of this exact text, keys sorted, whatever order the parameters came in."""
    import hashlib

    canonical = ('{"identity": {"model": "pythia-70m", "steps": [0, 1000]}, "job": "losses", "shards": 4, '
                 '"units": ["pile", "dm_math"]}')
    expected = "split-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert expected == "split-387742f669a2"
    assert splits.split_id("losses", {"steps": [0, 1000], "model": "pythia-70m"}, ["pile", "dm_math"], 4) == expected


def test_staged_splits_are_the_split_folders_with_a_plan_or_a_shard(tmp_path):
    """Other staging folders (a run's, a job's resume state) and a split folder left empty are no
    split; each split is read from its records, in its name's order."""
    from pathlib import Path

    assert splits.staged_splits(tmp_path) == []  # no staging folder at all
    splits.record_shard(tmp_path, "split-b", (0, 2), "losses", ["r1"], COMMAND)
    splits.plan_split(tmp_path, "split-a", "sae", 3, COMMAND)
    (tmp_path / "staging" / "split-empty").mkdir()
    (tmp_path / "staging" / "r2026-run").mkdir()
    (tmp_path / "staging" / "split-file").write_text("not a folder")
    assert splits.staged_splits(str(tmp_path)) == [
        splits.SplitState("split-a", "sae", 3, {}, COMMAND), splits.SplitState("split-b", "losses", 2, {0: ["r1"]}, COMMAND)]
    assert splits.listed_runs(Path(tmp_path)) == {"r1"}
    assert splits.assign(["u"] * 7, 3) == [0, 1, 2, 0, 1, 2, 0] and splits.assign([], 2) == []
    dated = splits.split_id("losses", {"day": Path("/d")}, [], 1)  # parameters JSON cannot hold, as text
    assert dated == splits.split_id("losses", {"day": "/d"}, [], 1)
