"""How a run stages rows: a partition's writer buffers rows into row groups and rolls files at a
size (small sizes set here), and a run names each file by its run, its group of per-file keys and
its writer, each written out by hand."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quanta_db.store import runs


@pytest.fixture
def tokyo(monkeypatch):
    """The machine's zone far from UTC: a time recorded in local time instead shows."""
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _rows(start: int, count: int) -> pa.Table:
    return pa.table({"x": pa.array(range(start, start + count), pa.int64())})


def test_a_partition_writer_buffers_row_groups_and_rolls_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "ROW_GROUP_ROWS", 4)
    monkeypatch.setattr(runs, "FILE_ROWS", 8)
    folder = tmp_path / "vocab" / "tokenizer=t"  # made, parents too, when the first row group is written
    writer = runs._PartitionWriter("vocab", "tokenizer=t", {"tokenizer": "t"}, folder, "part-r1")
    writer.append(_rows(0, 3))
    assert (writer.buffered_rows, writer.writer, writer.finished) == (3, None, []) and not folder.parent.exists()
    writer.append(_rows(3, 1))  # a whole row group: written to a new file, kept open
    assert (writer.buffered, writer.buffered_rows, writer.file_rows) == ([], 0, 4) and writer.writer is not None
    writer.append(_rows(4, 10))  # past the file's size: closed
    first = (folder / "part-r1-00000.parquet", 14)
    assert (writer.writer, writer.file_rows, writer.finished) == (None, 0, [first])
    writer.append(_rows(14, 8))  # exactly the file's size: closed too
    second = (folder / "part-r1-00001.parquet", 8)
    assert (writer.writer, writer.finished) == (None, [first, second])
    writer.append(_rows(22, 2))
    assert writer.finish() == [first, second, (folder / "part-r1-00002.parquet", 2)]
    assert writer.finish() == [first, second, (folder / "part-r1-00002.parquet", 2)]  # nothing more to write
    written = pq.ParquetFile(first[0])
    assert [written.metadata.row_group(i).num_rows for i in range(written.metadata.num_row_groups)] == [4, 4, 4, 2]
    assert written.metadata.row_group(0).column(0).compression == "ZSTD"
    assert written.read()["x"].to_pylist() == list(range(14))
    assert pq.read_table(folder / "part-r1-00002.parquet")["x"].to_pylist() == [22, 23]


def test_a_run_names_its_files_by_run_key_group_and_writer(store):
    vocab = {"tokenizer": pa.string(), "token_id": pa.int64(), "token": pa.string()}
    with store.begin_run("test", {}) as run:
        assert run.write("vocab", pa.table({k: pa.array([], t) for k, t in vocab.items()})) == 0
        assert run.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["a"]}).to_batches()[0]) == 1
        assert run.write("vocab", pa.table({"tokenizer": ["u", "u"], "token_id": [0, 1], "token": ["a", "b"]})) == 2
        assert run.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [1], "token": ["b"]})) == 1  # same writer
        labels = pa.table({"clustering": ["c"] * 3, "corpus": ["x", "y", "x"], "doc_id": [0, 0, 1], "pos": [1, 1, 1],
                           "cluster": [0, 1, 2]})
        assert run.write("cluster_labels", labels) == 3  # split by corpus: one writer each, numbered
        run.commit()
    root, part = store.root / "tables", f"part-{run.run_id}"
    assert store.manifest("vocab").to_pylist() == [
        {"path": str(root / f"vocab/tokenizer=t/{part}-00000.parquet"), "tokenizer": "t", "rows": 2},
        {"path": str(root / f"vocab/tokenizer=u/{part}-00000.parquet"), "tokenizer": "u", "rows": 2}]
    assert sorted(store.manifest("cluster_labels").to_pylist(), key=lambda f: f["path"]) == [
        {"path": str(root / f"cluster_labels/clustering=c/{part}-002-00000.parquet"), "clustering": "c", "corpus": "x",
         "rows": 2},
        {"path": str(root / f"cluster_labels/clustering=c/{part}-003-00000.parquet"), "clustering": "c", "corpus": "y",
         "rows": 1}]


def _split(data: pa.Table, keys: tuple[str, ...]) -> list[tuple[dict, list[int]]]:
    return sorted(((found, part["v"].to_pylist()) for found, part in runs._split_by_keys(data, keys)),
                  key=lambda pair: sorted(pair[0].items()))


def test_rows_are_split_into_one_part_per_group_of_key_values():
    data = pa.table({"a": ["x", "y", "x", "y", "x"], "b": [1, 1, 1, 2, 1], "v": [0, 1, 2, 3, 4]})
    assert _split(data, ()) == [({}, [0, 1, 2, 3, 4])]
    assert _split(data, ("a", "b")) == [({"a": "x", "b": 1}, [0, 2, 4]), ({"a": "y", "b": 1}, [1]), ({"a": "y", "b": 2}, [3])]
    assert _split(data, ("b",)) == [({"b": 1}, [0, 1, 2, 4]), ({"b": 2}, [3])]
    assert _split(data.slice(2, 1), ("a", "b")) == [({"a": "x", "b": 1}, [2])]  # one row, one group
    assert _split(data.filter(pa.array([True, False, True, False, True])), ("a",)) == [({"a": "x"}, [0, 2, 4])]


def test_a_registration_is_named_by_its_key_columns_in_order():
    assert runs.where_text({"model": "m", "step": 2, "other": 0}, ["step", "model"]) == "step=2, model='m'"


def test_a_new_run_stages_in_its_own_folder_marked_with_who_it_is(store, tokyo):
    import datetime as dt

    from quanta_db.store import expectations, liveness

    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with runs.Run(store.root, "probe", {"n": 1}, device="cpu", inputs=["run-b", "run-a", "run-b"]) as run:
        wanted = runs.params_hash("probe", {"n": 1})
        assert run.observation == expectations.Observation("probe", wanted, [])
        assert (run.root, run.job, run.params_hash, run.device, run.inputs) == (store.root, "probe", wanted, "cpu",
                                                                                 ["run-a", "run-b"])
        assert run.params["n"] == 1 and run.duplicate_of is None and run.dropped == {}
        assert before <= run.started_at <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        assert run.staging == store.root / runs.STAGING_DIR / run.run_id and run.staging.is_dir()
        marker = liveness.read_marker(run.staging)
        assert {k: marker[k] for k in ("run_id", "kind", "params_hash")} == {
            "run_id": run.run_id, "kind": "probe", "params_hash": wanted}
        assert re.fullmatch(r"r[0-9]{14}-[0-9a-f]{8}", run.run_id)  # its start in UTC, then 32 random bits
        started = dt.datetime.strptime(run.run_id[1:15], "%Y%m%d%H%M%S")
        assert before.replace(microsecond=0) <= started <= run.started_at


def test_a_staged_file_removed_under_a_run_is_named_and_nothing_is_committed(store):
    vocab = pa.table({"tokenizer": ["t", "u"], "token_id": [0, 0], "token": ["a", "b"]})
    with store.begin_run("test", {}) as run:
        run.write("vocab", vocab)
        for writer in run._writers.values():
            writer.finish()  # the files closed now, as the commit would
        gone = run.staging / "vocab" / "tokenizer=u" / f"part-{run.run_id}-00000.parquet"
        gone.unlink()
        with pytest.raises(FileNotFoundError) as missing:
            run.commit()
        assert str(missing.value) == str(gone)
    assert store.manifest("vocab").num_rows == 0


def test_a_committed_run_says_so_when_used_again(store):
    from quanta_db.errors import QuantaError

    with store.begin_run("test", {}) as run:
        run.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["a"]}))
        assert run.commit() == 1
        with pytest.raises(QuantaError) as used:
            run.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [1], "token": ["b"]}))
        assert str(used.value) == f"run {run.run_id} is already committed"
    assert store.manifest("vocab").num_rows == 1


def test_a_begun_run_carries_what_the_job_saw_and_said(store):
    with store.begin_run("probe", {"n": 2}) as first:
        first.commit()
    with store.begin_run("probe", {"n": 2}, device="cuda:0", inputs=["run-x"]) as run:
        assert (run.root, run.job, run.params["n"], run.device, run.inputs) == (store.root, "probe", 2, "cuda:0", ["run-x"])
        assert (run.observation.job, run.observation.params_hash) == ("probe", runs.params_hash("probe", {"n": 2}))
        assert run.observation.identical == [first.run_id]  # observed when it began


def test_a_commit_records_its_files_and_itself_in_the_catalog(store, tokyo):
    """The ``files`` and ``runs`` rows of two commits, the second replacing all the first wrote."""
    import datetime as dt
    import json

    import numpy as np

    from quanta_db import __version__

    def rows_of(run_id):
        with store.read() as con:
            files = con.execute("SELECT table_name, path, partition, rows, bytes, keys FROM files WHERE run_id = ? "
                                "ORDER BY path", [run_id]).fetchall()
            run = con.execute("SELECT kind, params, params_hash, code_version, device, started_at, ended_at, "
                              "rows_written, status, dropped, inputs FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return files, run

    from pathlib import Path

    with store.begin_run("probe", {"n": 3, "folder": Path("/data")}) as first:
        first.write("vocab", pa.table({"tokenizer": ["t"] * 2, "token_id": [0, 1], "token": ["a", "b"]}))
        first.write_artifact("weights", np.zeros((3, 2)))
        first.commit()
    files, run = rows_of(first.run_id)
    vocab_path = f"tables/vocab/tokenizer=t/part-{first.run_id}-00000.parquet"
    artifact_path = f"artifacts/{first.run_id}/weights.npy"
    sizes = {path: (store.root / path).stat().st_size for path in (vocab_path, artifact_path)}
    assert files == [("artifact", artifact_path, first.run_id, 3, sizes[artifact_path], None),
                     ("vocab", vocab_path, "tokenizer=t", 2, sizes[vocab_path], '{"tokenizer": "t"}')]
    kind, params, params_hash, version, device, started, ended, written, status, dropped, inputs = run
    assert (kind, params_hash, version, device, written, status, dropped, inputs) == (
        "probe", runs.params_hash("probe", {"n": 3, "folder": Path("/data")}), __version__, None, 2, "committed", None, None)
    assert params == json.dumps(first.params, sort_keys=True, default=str)
    assert params.index('"folder": "/data"') < params.index('"n": 3')  # sorted: not the order given
    assert started == first.started_at <= ended
    assert ended <= dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert store.query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 2  # registered as the lake's

    with store.begin_run("probe", {"n": 4}, device="cpu", inputs=[first.run_id]) as second:
        second.replace("vocab", tokenizer="t")
        second.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["z"]}))
        second.commit()
    files, run = rows_of(second.run_id)
    assert [row[:4] for row in files] == [("vocab", f"tables/vocab/tokenizer=t/part-{second.run_id}-00000.parquet",
                                           "tokenizer=t", 1)]
    assert (run[4], run[7], run[8], json.loads(run[9]), json.loads(run[10])) == (
        "cpu", 1, "committed", {"vocab": 2}, [first.run_id])
    assert rows_of(first.run_id)[1][8] == "superseded"  # left without a table file; its artifact went too
    assert rows_of(first.run_id)[0] == [] and not (store.root / artifact_path).exists()
    assert store.query_df("SELECT token FROM vocab")["token"].tolist() == ["z"]


def test_a_replacement_commits_when_a_file_it_drops_is_already_gone(store):
    """A replacement removes the files it drops once its commit landed; one already missing (an
    artifact of the replaced run removed by hand) is nothing left to remove, not a failure of a
    job that committed."""
    import numpy as np

    with store.begin_run("probe", {"n": 1}) as first:
        first.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["a"]}))
        first.write_artifact("weights", np.zeros(3))
        first.commit()
    (store.root / "artifacts" / first.run_id / "weights.npy").unlink()
    with store.begin_run("probe", {"n": 2}, inputs=[first.run_id]) as second:
        second.replace("vocab", tokenizer="t")
        second.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["b"]}))
        second.commit()
    assert second.dropped == {"vocab": 1}
    assert store.query_df("SELECT token FROM vocab")["token"].tolist() == ["b"]
    assert [path.name for path in store.committed_paths("vocab")] == [f"part-{second.run_id}-00000.parquet"]
    assert not (store.root / "tables" / "vocab" / "tokenizer=t" / f"part-{first.run_id}-00000.parquet").exists()


def test_a_staging_marker_names_its_owner_and_is_kept_alive_until_let_go(tmp_path):
    import json
    import os
    import socket

    from quanta_db.store import liveness

    folder = tmp_path / "staging" / "r1"  # its parent made too
    for _ in range(2):  # marking a marked folder again rewrites its marker
        liveness.write_marker(folder, run_id="r1", kind="probe")
    assert json.loads((folder / liveness.MARKER).read_text()) == {
        "run_id": "r1", "kind": "probe", "pid": os.getpid(), "host": socket.gethostname()}
    assert liveness.read_marker(folder)["pid"] == os.getpid()
    assert folder in liveness._registered  # its heartbeat goes on
    liveness.let_go(str(folder))
    assert folder not in liveness._registered
