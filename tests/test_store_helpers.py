"""The store's pure helpers, each against the value it must give written out by hand: the catalog
URL without its password (what ``catalog.json`` records), the password taken back from
``QUANTA_DB_CATALOG`` only for the same catalog, the record of checked extension files, what a
failed ``init`` removes and the lake's changes told from its metadata."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pytest

from quanta_db.errors import StoreError
from quanta_db.store import catalog, copies, kernel_wall, lake, legacy, lineage, migrations, published
from quanta_db.store.store import _undo_init


@pytest.mark.parametrize(("url", "expected"), [
    ("postgresql://alice:s3cret@db.example:5433/quanta?sslmode=require",
     "postgresql://alice@db.example:5433/quanta?sslmode=require"),
    ("postgresql://alice:s3cret@db.example/quanta", "postgresql://alice@db.example/quanta"),
    ("postgres://:s3cret@db.example/quanta", "postgres://db.example/quanta"),  # a password, no user
    ("postgresql://alice:s3cret@/quanta?host=/run/postgresql", "postgresql://alice@/quanta?host=/run/postgresql"),
    ("postgresql://alice@db.example:5433/quanta", "postgresql://alice@db.example:5433/quanta"),
])
def test_a_catalog_url_is_kept_without_its_password(url, expected):
    assert lake.without_password(url) == expected


def test_the_password_comes_back_from_the_environment_only_for_the_same_catalog(tmp_path, monkeypatch):
    locator = lake.Locator(tmp_path, "postgresql://alice@db.example:5433/quanta", "quanta_0123")
    monkeypatch.delenv(lake.CATALOG_ENV, raising=False)
    assert locator.connection_url() == locator.url
    monkeypatch.setenv(lake.CATALOG_ENV, "postgresql://alice:s3cret@db.example:5433/quanta")
    assert locator.connection_url() == "postgresql://alice:s3cret@db.example:5433/quanta"
    for other in ("postgresql://alice:s3cret@elsewhere:5433/quanta", "postgresql://mallory:s3cret@db.example:5433/quanta"):
        monkeypatch.setenv(lake.CATALOG_ENV, other)  # another server's or user's password is never sent here
        assert locator.connection_url() == locator.url


def test_an_open_error_names_the_catalog_and_the_first_line_of_the_cause(tmp_path):
    locator = lake.Locator(tmp_path)
    error = duckdb.IOException("could not open\nsecond line of detail")
    assert lake.describe_error(locator, error) == f"cannot open the catalog {tmp_path / lake.LOCAL_FILE}: could not open"


def test_a_failed_init_removes_the_folder_it_made(tmp_path):
    made = tmp_path / "new-store"
    (made / "tables").mkdir(parents=True)
    _undo_init(made, created=True)
    assert not made.exists()
    _undo_init(made, created=True)  # already gone: nothing to say


def test_a_failed_init_in_an_existing_folder_removes_only_the_catalog(tmp_path):
    for name in (lake.LOCAL_FILE, lake.LOCAL_FILE + ".wal", lake.REMOTE_FILE, "notes.txt"):
        (tmp_path / name).write_text("x")
    _undo_init(tmp_path, created=False)  # failed before tables/ was made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "tables" / "tokens").mkdir(parents=True)
    _undo_init(tmp_path, created=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(("delay_s", "waited_s", "expected_s"), [
    (0.01, 0.0, 0.02),   # doubling
    (0.02, 0.5, 0.03),   # at most 30 ms in the first second: a commit holds the lock about 0.1 s
    (0.03, 1.0, 0.06),   # from one second on, doubling again
    (0.4, 1.5, 0.8),
    (0.8, 5.0, 1.0),     # and at most a second
])
def test_lock_retries_back_off_by_doubling_short_at_first_then_up_to_a_second(delay_s, waited_s, expected_s):
    assert catalog._next_delay_s(delay_s, waited_s) == pytest.approx(expected_s)


def test_a_held_lock_is_tried_again_after_each_backoff_until_the_timeout(tmp_path, monkeypatch):
    """``_with_backoff`` on a clock of its own: the delays from the first try on, the answer of
    the first try that does not find the lock held, and once the timeout has passed, the lock
    named in one line, tried no more."""
    now = [100.0]
    slept = []
    monkeypatch.setattr(catalog.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(catalog.time, "sleep", lambda s: (slept.append(s), now.__setitem__(0, now[0] + s)))
    monkeypatch.setenv(catalog.LOCK_TIMEOUT_ENV, "1.2")
    answers = iter([catalog._HELD] * 4 + ["opened"])
    assert catalog._with_backoff(lake.Locator(tmp_path), lambda: next(answers)) == "opened"
    assert slept == pytest.approx([0.01, 0.02, 0.03, 0.03])
    slept.clear()
    tries = []
    with pytest.raises(catalog.CatalogLocked, match=r"is locked by another process.*gave up after 1s"):
        catalog._with_backoff(lake.Locator(tmp_path), lambda: tries.append(now[0]) or catalog._HELD)
    assert slept[:4] == pytest.approx([0.01, 0.02, 0.03, 0.03]) and slept[-2:] == pytest.approx([0.06, 0.12])
    assert tries[-1] - tries[0] >= 1.2 > tries[-2] - tries[0] and len(tries) == len(slept) + 1


def test_the_lock_timeout_is_a_minute_unless_set(monkeypatch):
    monkeypatch.delenv(catalog.LOCK_TIMEOUT_ENV, raising=False)
    assert catalog.lock_timeout_s() == 60.0
    monkeypatch.setenv(catalog.LOCK_TIMEOUT_ENV, "2.5")
    assert catalog.lock_timeout_s() == 2.5


def test_a_store_of_release_0_1_is_one_with_the_old_catalog_and_no_lake(tmp_path):
    (tmp_path / lake.LEGACY_FILE).write_bytes(b"")
    assert legacy.is_legacy(tmp_path) and legacy.is_legacy(str(tmp_path))
    (tmp_path / lake.LOCAL_FILE).write_bytes(b"")  # converted: the old file stays beside the lake
    assert not legacy.is_legacy(tmp_path)
    assert not legacy.is_legacy(tmp_path / "elsewhere")


def test_forgetting_a_store_closes_its_copies_only(tmp_path, monkeypatch):
    closed = []

    class Copies:
        def __init__(self, root, background=False):
            self.root = root

        def close(self):
            closed.append(self.root)

    monkeypatch.setattr(copies, "Snapshots", Copies)
    monkeypatch.setattr(copies, "_shared", type(copies._shared)())
    first, second = tmp_path / "a", tmp_path / "b"
    copies.shared(first), copies.shared(first, background=True), copies.shared(second)
    copies.forget(str(first))
    assert closed == [first, first] and [key[0] for key in copies._shared] == [second]
    copies.forget()
    assert closed == [first, first, second] and not copies._shared


def test_a_database_without_migrations_is_at_version_zero():
    with duckdb.connect() as con:
        assert migrations.current_version(con) == 0  # no schema_migrations table at all


def test_a_catalog_is_described_by_its_file_or_its_server_and_schema(tmp_path):
    assert lake.Locator(tmp_path).describe() == str(tmp_path / lake.LOCAL_FILE)
    remote = lake.Locator(tmp_path, "postgresql://alice@db.example/quanta", "quanta_0123")
    assert remote.describe() == "postgresql://alice@db.example/quanta (schema quanta_0123)"


def test_a_new_postgresql_store_gets_a_schema_of_its_own_named_as_documented(tmp_path):
    import re

    names = {lake.new_locator(tmp_path, "postgresql://alice:secret@db.example/quanta").schema for _ in range(5)}
    assert len(names) == 5 and all(re.fullmatch("quanta_[0-9a-f]{12}", name) for name in names)  # docs/store.md


def test_a_transaction_that_raises_is_rolled_back_and_its_connection_goes_on():
    from quanta_db.store.sql import in_transaction

    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (x INTEGER)")

        def insert_then_fail():
            con.execute("INSERT INTO t VALUES (1)")
            raise ValueError("stopped")

        with pytest.raises(ValueError, match="stopped"):
            in_transaction(con, insert_then_fail)
        assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert in_transaction(con, lambda: con.execute("INSERT INTO t VALUES (2)").fetchall()) == [(1,)]
        assert con.execute("SELECT x FROM t").fetchall() == [(2,)]

        def close_then_fail():  # the rollback then fails too: the action's own error is the one raised
            con.close()
            raise ValueError("closed")

        with pytest.raises(ValueError, match="closed"):
            in_transaction(con, close_then_fail)


def test_a_writer_is_at_work_exactly_while_it_holds_the_lock(tmp_path):
    import fcntl

    metadata_file = tmp_path / lake.LOCAL_FILE
    assert not published.writer_at_work(metadata_file)  # no lock file yet
    lock = os.open(tmp_path / published.LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert not published.writer_at_work(metadata_file)  # a lock file no one holds
        fcntl.flock(lock, fcntl.LOCK_EX)  # another open file: as another process's writer
        assert published.writer_at_work(metadata_file)
        fcntl.flock(lock, fcntl.LOCK_UN)
        assert not published.writer_at_work(metadata_file)
    finally:
        os.close(lock)


@pytest.mark.parametrize(("child", "expected"), [
    ("token_losses", [{"model": "m1"}, {"model": "m2"}]),  # only its per-file keys, each filter once
    ("checkpoints", [{"model": "m1", "doc_id": 1}, {"model": "m1", "doc_id": 2}, {"model": "m2", "doc_id": 1}]),
])
def test_a_removed_parent_names_its_children_by_the_keys_they_can_be_dropped_by(child, expected):
    removed = [{"model": "m1", "doc": 1}, {"model": "m1", "doc": 2}, {"model": "m2", "doc": 1},
               {"model": "m1", "doc": 1}, {"other": "x"}]  # a repeated row, and one holding no mapped column
    assert lineage._child_filters(child, {"model": "model", "doc_id": "doc"}, removed) == expected


def test_no_landlock_elsewhere_than_linux_or_on_a_kernel_without_it(monkeypatch):
    import platform

    class KernelWithoutLandlock:
        def syscall(self, *args):
            return -1  # ENOSYS or EOPNOTSUPP

    monkeypatch.setattr(kernel_wall, "_libc", KernelWithoutLandlock)
    assert kernel_wall.landlock_abi() == 0
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert kernel_wall.landlock_abi() == 0


def test_the_c_library_keeps_errno_for_the_walls_error_messages():
    import ctypes

    ctypes.set_errno(0)
    assert kernel_wall._libc().syscall(kernel_wall.SYS_ADD_RULE, -1, kernel_wall.RULE_PATH_BENEATH, None, 0) == -1
    assert ctypes.get_errno() != 0  # EBADF (or ENOSYS without Landlock): what _check reports


def test_sql_quoting_round_trips_through_duckdb_and_conditions_select_what_they_say():
    """The few statements built in Python, checked against DuckDB itself: a quoted literal reads
    back as the text, a quoted name names the column, and an equality condition keeps exactly the
    rows whose values equal (None: are NULL)."""
    from quanta_db.store.sql import equal_condition, file_key_condition, quote_ident, quote_literal, statement, statement_body

    con = duckdb.connect()
    for text in ("plain", "it's", "''", 'say "hi"', "a\nb", "", "naïve ∑"):
        assert con.execute(f"SELECT {quote_literal(text)}").fetchone()[0] == text
        assert con.execute(f"SELECT 1 AS {quote_ident(text or 'x')}").description[0][0] == (text or "x")
    assert (quote_ident('a"b'), quote_literal("a'b")) == ('"a""b"', "'a''b'")
    con.execute("CREATE TABLE t (m VARCHAR, s INTEGER, keys VARCHAR)")
    con.execute("""INSERT INTO t VALUES ('a', 1, '{"m": "a", "s": 1}'), ('a', NULL, '{"m": "a"}'),
                   ('b', 1, '{"m": "b", "s": 1}')""")
    condition, args = equal_condition({"m": "a", "s": None})
    assert (condition, args) == ('"m" = ? AND "s" IS NULL', ["a"])
    assert con.execute(f"SELECT m, s FROM t WHERE {condition}", args).fetchall() == [("a", None)]
    assert equal_condition({}) == ("TRUE", [])
    condition, args = file_key_condition({"m": "b", "s": 1})
    assert (condition, args) == ("json_extract_string(keys, '$.m') = ? AND json_extract_string(keys, '$.s') = ?", ["b", "1"])
    assert con.execute(f"SELECT m FROM t WHERE {condition}", args).fetchall() == [("b",)]
    body = statement_body("local_inlined_rows")  # its comment lines come first: the rest is the body
    assert "--" not in body and body.strip() and body.rstrip("\n") in statement("local_inlined_rows")


def test_a_catalog_file_is_copied_whole_by_the_kernel_or_else_by_positioned_reads(tmp_path, monkeypatch):
    """``catalog._copy_descriptor``: the kernel's copy_file_range from offset 0 for the whole
    size where it works (in whatever pieces it gives), positioned reads where it fails or is
    missing; the source's own offset never moves (threads share it)."""
    from quanta_db.store import catalog

    data = os.urandom(100_003)
    (tmp_path / "source").write_bytes(data)
    kernel = getattr(os, "copy_file_range", None)
    calls = []
    reads = []  # (offset, size) of each positioned read; both lists bounded: a copy that stops advancing fails
    positioned_read = os.pread

    def piecewise(source, target, count, offset_src, offset_dst):
        calls.append((count, offset_src, offset_dst))
        assert len(calls) <= 3, "the kernel's copy does not advance"
        return kernel(source, target, min(count, 40_000), offset_src, offset_dst)

    def counted_read(source, size, offset):
        reads.append((offset, size))
        assert len(reads) <= 15, "the positioned reads do not advance"
        return positioned_read(source, size, offset)

    def failing(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(catalog, "COPY_CHUNK_BYTES", 30_000)
    monkeypatch.setattr(os, "pread", counted_read)
    for name, replacement in (("kernel", piecewise), ("failing", failing), ("missing", None)):
        if replacement is None:
            monkeypatch.delattr(os, "copy_file_range", raising=False)
        elif kernel is not None:
            monkeypatch.setattr(os, "copy_file_range", replacement)
        source = os.open(tmp_path / "source", os.O_RDONLY)
        target = os.open(tmp_path / name, os.O_RDWR | os.O_CREAT)
        try:
            os.lseek(source, 17, os.SEEK_SET)
            catalog._copy_descriptor(source, target)
            assert os.lseek(source, 0, os.SEEK_CUR) == 17
        finally:
            os.close(source)
            os.close(target)
        assert (tmp_path / name).read_bytes() == data, name
    if kernel is not None:
        assert calls == [(100_003, 0, 0), (60_003, 40_000, 40_000), (20_003, 80_000, 80_000)]
    by_reads = [(offset, 30_000) for offset in (0, 30_000, 60_000, 90_000, 100_003)]
    assert reads == ([(100_003, 30_000)] + by_reads * 2 if kernel is not None else by_reads * 3)


def test_a_batch_is_conformed_to_its_declared_schema_and_each_type_is_duckdbs_own():
    """``tables.conform``: the declared columns in the declared order and types, a missing one as
    NULLs, extra ones dropped, a missing key named; ``duckdb_type`` agrees with DuckDB's reading
    of the same Arrow type."""
    import pyarrow as pa

    from quanta_db.errors import QuantaError
    from quanta_db.store.registry import fact_table
    from quanta_db.store.tables import ARROW_TO_DUCKDB, conform, duckdb_type

    spec = fact_table("documents")
    batch = pa.table({"extra": [1, 2], "doc_id": pa.array([1, 2], pa.int32()), "corpus": ["c", "c"], "n_tokens": [3, 4]})
    conformed = conform(batch, spec)
    assert conformed.schema == spec.schema
    assert conformed.column("doc_id").to_pylist() == [1, 2] and conformed.column("n_tokens").to_pylist() == [3, 4]
    assert conformed.column("text").null_count == 2
    with pytest.raises(QuantaError) as error:
        conform(batch.drop(["corpus"]), spec)
    assert str(error.value) == "batch for documents lacks key column(s) corpus"
    with pytest.raises(QuantaError) as error:
        conform(pa.table({"step": [1]}), fact_table("token_losses"))
    assert str(error.value) == "batch for token_losses lacks key column(s) model, corpus"
    # a NULL key, first or later in the batch, would have no file to go to (it went nowhere, or
    # into the first row's file under that file's key)
    for corpus in (["c", None], [None, "c"]):
        with pytest.raises(QuantaError) as error:
            conform(batch.set_column(2, "corpus", pa.array(corpus, pa.string())), spec)
        assert str(error.value) == "batch for documents has NULL in key column(s) corpus"
    with pytest.raises(QuantaError) as error:
        conform(pa.table({"model": pa.array([None], pa.string()), "step": [1], "corpus": pa.array([None], pa.string())}),
                fact_table("token_losses"))
    assert str(error.value) == "batch for token_losses has NULL in key column(s) model, corpus"
    assert conform(batch.set_column(3, "n_tokens", pa.array([None, 4])), spec).column("n_tokens").null_count == 1
    con = duckdb.connect()
    for arrow_type, name in [*ARROW_TO_DUCKDB.items(), (pa.list_(pa.int32()), "INTEGER[]"),
                             (pa.list_(pa.list_(pa.string())), "VARCHAR[][]")]:
        assert duckdb_type(arrow_type) == name
        empty = pa.table({"v": pa.array([], arrow_type)})  # noqa: F841 - read by DuckDB by name
        assert con.execute("SELECT typeof(v) FROM (SELECT NULL::" + name + " AS v)").fetchone()[0] == name
        assert con.execute("DESCRIBE SELECT * FROM empty").fetchone()[1] == name


def test_the_lake_is_attached_located_and_recorded_as_documented(tmp_path, monkeypatch):
    """The ``ATTACH`` a DuckDB client runs (docs/store.md), where a store's catalog is found, and the
    doubles the catalog keeps."""
    import math

    from quanta_db.errors import InputError
    from quanta_db.store import lake

    monkeypatch.delenv(lake.CATALOG_ENV, raising=False)
    local, remote = lake.Locator(tmp_path / "o'k"), lake.Locator(tmp_path, "postgresql://u@h:5/db", "quanta_ab")
    root = (tmp_path / "o'k").as_posix().replace("'", "''")
    assert lake.attach_sql(local) == (f"ATTACH 'ducklake:{root}/catalog.ducklake' AS lake "
                                      f"(DATA_PATH '{root}/', OVERRIDE_DATA_PATH true, READ_ONLY)")
    assert lake.attach_sql(local, read_only=False, metadata_file=Path("/m/x.ducklake"), snapshot=7) == (
        f"ATTACH 'ducklake:/m/x.ducklake' AS lake (DATA_PATH '{root}/', OVERRIDE_DATA_PATH true, "
        f"META_ROW_GROUP_SIZE {lake.METADATA_ROW_GROUP_ROWS}, SNAPSHOT_VERSION 7)")
    assert lake.attach_sql(remote, read_only=False) == (
        f"ATTACH 'ducklake:postgres:postgresql://u@h:5/db' AS lake (DATA_PATH '{tmp_path.as_posix()}/', "
        "OVERRIDE_DATA_PATH true, METADATA_SCHEMA 'quanta_ab')")
    assert lake.attach_sql(remote).endswith("METADATA_SCHEMA 'quanta_ab', READ_ONLY)")
    assert (lake.metadata_schema(local), lake.metadata_schema(remote)) == (
        '"__ducklake_metadata_lake"."main"', '"__ducklake_metadata_lake"."quanta_ab"')

    assert lake.locate(tmp_path) is None  # neither file
    lake.save(local)  # a local catalog records nothing beside its file
    assert not (local.root / lake.REMOTE_FILE).exists()
    lake.save(remote)
    assert (tmp_path / lake.REMOTE_FILE).read_text() == (
        '{\n  "catalog": "postgresql://u@h:5/db",\n  "schema": "quanta_ab"\n}\n')  # for people to read, too
    assert lake.locate(tmp_path) == remote
    (tmp_path / lake.REMOTE_FILE).write_text('{"catalog": "postgresql://u@h/db"}')
    with pytest.raises(StoreError) as error:
        lake.locate(tmp_path)
    assert str(error.value) == f'{tmp_path / lake.REMOTE_FILE} is damaged: expected {{"catalog": URL, "schema": NAME}}'
    local.root.mkdir()
    (local.root / lake.LOCAL_FILE).write_bytes(b"")
    assert lake.locate(local.root) == local

    assert lake.new_locator(tmp_path, None) == lake.Locator(tmp_path)
    made = lake.new_locator(tmp_path, "postgresql://u:secret@h/db")
    assert made.root == tmp_path and made.url == "postgresql://u@h/db" and re.fullmatch(r"quanta_[0-9a-f]{12}", made.schema)
    with pytest.raises(InputError) as error:
        lake.new_locator(tmp_path, "mysql://u@h/db")
    assert str(error.value) == "--catalog must be a postgresql://USER@HOST[:PORT]/DATABASE URL, got 'mysql://u@h/db'"

    assert lake.storable(0.1 + 0.2) == 0.3 and lake.storable(1 / 3) == float(f"{1 / 3:.15g}") != 1 / 3
    assert [lake.storable(v) for v in (7, "x", None, 1.5e308, -1.5e308, math.inf)] == [7, "x", None, 1.5e308, -1.5e308, math.inf]
    assert math.isnan(lake.storable(math.nan)) and lake.storable(-2.0 / 3) == -float(f"{2 / 3:.15g}")


@pytest.mark.parametrize("entries, expected", [
    ("", (True, True)),
    ("inlined_insert:7", (True, True)),  # files added, inlined
    ("inserted_into_table:7", (True, False)),  # files added in a Parquet file of their own
    ("inserted_into_table:9,inlined_insert:7", (True, True)),  # rows of another table, files inlined
    ("inlined_insert:7,inserted_into_table:7", (True, False)),
    ("inserted_into_table:7,inlined_insert:7", (True, False)),  # one not inlined is enough, first or last
    ("inserted_into_table:7,inserted_into_table:9", (True, False)),
    ("inlined_insert:3", (False, False)),  # a saved analysis added: the macros change
    ("inlined_insert:7,deleted_from_table:9", (False, False)),
    ("inlined_delete:9", (False, False)),
    ("altered_table:7", (False, False)),
])
def test_a_commit_is_told_apart_as_new_rows_alone_and_its_new_files_as_inlined(entries, expected):
    """``lake.inserted_only`` reads DuckLake's ``ducklake_snapshot_changes`` entries: only inserts,
    none into the saved analyses' table (id 3 here), and whether the files table's (id 7) were
    inlined in the metadata, where a later state reads them alone."""
    assert lake.inserted_only(entries, [3], [7]) == expected
    assert lake.inserted_only(entries, None, None)[0] == (expected[0] or entries == "inlined_insert:3")


def test_a_catalog_keeping_a_write_ahead_log_or_absent_is_left_unpublished(tmp_path):
    """A copy of a catalog whose changes still sit in its ``.wal`` would miss them, so readers stay
    on the catalog itself (``catalog.writing`` kept); a closed catalog is copied whole, nothing left beside."""
    metadata = tmp_path / lake.LOCAL_FILE
    readers, writing = tmp_path / published.READERS_FILE, tmp_path / published.WRITING_FILE
    assert published.publish(metadata) is False and not readers.exists()
    metadata.write_bytes(b"closed catalog")
    writing.touch()
    log = metadata.with_name(metadata.name + ".wal")
    log.write_bytes(b"changes not yet in the file")
    assert published.publish(metadata) is False
    assert not readers.exists() and writing.exists()
    log.unlink()
    assert published.publish(metadata) is True
    assert readers.read_bytes() == b"closed catalog"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([lake.LOCAL_FILE, published.READERS_FILE])


@pytest.fixture
def thread_errors(monkeypatch) -> list:
    """What threads raise from now on (``threading.excepthook``'s arguments), instead of printing it."""
    import threading

    errors: list = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    return errors


def _join(thread_name: str) -> None:
    import threading

    for thread in [t for t in threading.enumerate() if t.name == thread_name]:
        thread.join()


def test_a_replaced_copys_second_name_already_gone_is_no_error(tmp_path, monkeypatch, thread_errors):
    """The replaced readers' copy is freed in a thread named for thread dumps; its second name
    may already be gone (this thread's next commit removes a name left from its last), which is
    no error printed to the user."""
    metadata = tmp_path / lake.LOCAL_FILE
    metadata.write_bytes(b"closed catalog")
    monkeypatch.setattr(published, "_keep_name", lambda readers: tmp_path / "removed meanwhile")
    assert published.publish(metadata) is True
    _join("quanta-db-replaced-copy")
    assert thread_errors == [] and (tmp_path / published.READERS_FILE).read_bytes() == b"closed catalog"


def test_second_names_left_by_dead_processes_go_and_a_live_ones_stay(tmp_path):
    """``_keep_name``: a replaced copy's second name is ``<readers>.<pid>.<thread>.replaced``;
    one whose process is gone is removed by the next commit, one of a live process (its thread
    about to free it) is left to it."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    readers = tmp_path / published.READERS_FILE
    readers.write_bytes(b"copy")
    left = {pid: tmp_path / f"{published.READERS_FILE}.{pid}.1{published.REPLACED_SUFFIX}"
            for pid in (gone.stdout.strip(), os.getpid())}
    for path in left.values():
        path.write_bytes(b"replaced")
    kept = published._keep_name(readers)
    assert kept is not None and kept.read_bytes() == b"copy"
    assert not left[gone.stdout.strip()].exists() and left[os.getpid()].exists()


def test_the_write_lock_is_refused_while_another_open_file_holds_it(tmp_path):
    """``published._try_lock``: flock excludes across open files (processes alike), so a second
    writer is told to wait rather than let in beside the first."""
    lock_file = tmp_path / "catalog.lock"
    first, second = (os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644) for _ in range(2))
    try:
        assert published._try_lock(first) is True
        assert published._try_lock(second) is False
        os.close(first)
        first = None
        assert published._try_lock(second) is True  # let go with its file
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)


def test_a_connection_made_ahead_for_the_next_commit_that_fails_is_no_error(store, catalog_backend, monkeypatch,
                                                                             thread_errors):
    """The next local commit's connection is made in a thread after each commit; when that
    fails, the next commit opens its own (and says why it cannot) -- nothing is printed meanwhile."""
    from tests.helpers import commit_vocab

    if catalog_backend != "duckdb":
        pytest.skip("made ahead for a local catalog only")

    def fails(locator):
        raise duckdb.IOException("no memory for a new database")

    monkeypatch.setattr(catalog, "blank_connection", fails)
    commit_vocab(store, ["t"], ["a"])
    _join("quanta-db-next-writer")
    assert thread_errors == []
    commit_vocab(store, ["u"], ["b"])  # opened its own
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM vocab").fetchone()[0] == 2


class _MetadataRows:
    """A connection whose every statement answers ``rows`` (what ``lake_changes.sql`` reads)."""

    def __init__(self, rows):
        self.rows, self.asked = rows, []

    def execute(self, sql, params=None):
        self.asked.append(params)
        return self

    def fetchall(self):
        return self.rows


@pytest.mark.parametrize(("changes", "same_lake", "expected"), [
    ("inlined_insert:7,inserted_into_table:9", "1", (True, True)),  # new files inlined, data elsewhere
    ("inserted_into_table:7", "1", (True, False)),  # files' rows in a data file: not readable off the metadata
    ("inlined_insert:3", "1", (False, False)),  # a saved analysis added
    ("inlined_delete:7", "1", (False, False)),
    ("", "1", (True, True)),
    ("inlined_insert:7", "0", (False, False)),  # another lake made at the same place
])
def test_a_lakes_changes_are_told_from_its_metadata_rows(tmp_path, changes, same_lake, expected):
    """``lake.changes``: only inserts, none into the saved analyses' table, in the same lake; the
    new files' relation (the files table's newest inlined table) only when each was inlined."""
    locator = lake.Locator(tmp_path)
    con = _MetadataRows([("changes", changes, None, None), ("same_lake", same_lake, None, None),
                         ("saved_queries", "3", "inlined_3_9", 9), ("files", "7", "inlined_7_1", 1),
                         ("files", "7", "inlined_7_4", 4)])
    found = lake.changes(con, locator, (5, "t5"), (8, "t8"))
    newest = f'{lake.metadata_schema(locator)}."inlined_7_4"'
    assert found == lake.Changes(expected[0], newest if all(expected) else None)
    assert con.asked == [[5, 8, 5, "t5"]]
    assert lake.changes(con, locator, (8, "t8"), (5, "t5")) == lake.Changes(False, None) and len(con.asked) == 1


def test_a_number_of_seconds_from_the_environment(monkeypatch):
    """``settings.env_seconds``: the default when unset or empty, a negative number as 0, and
    anything else that is not a number refused in one line naming the variable."""
    from quanta_db.store.settings import env_seconds

    name = "QUANTA_DB_TEST_SECONDS"
    monkeypatch.delenv(name, raising=False)
    assert env_seconds(name, 7.5) == 7.5
    for raw, seconds in (("", 7.5), ("0.25", 0.25), ("0", 0.0), ("-3", 0.0), ("1e1", 10.0)):
        monkeypatch.setenv(name, raw)
        assert env_seconds(name, 7.5) == seconds
    monkeypatch.setenv(name, "soon")
    with pytest.raises(StoreError) as refused:
        env_seconds(name, 7.5)
    assert str(refused.value) == "QUANTA_DB_TEST_SECONDS='soon' is not a number of seconds"
