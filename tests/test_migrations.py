import re
import shutil

import pytest

from quanta_db.errors import StoreError
from quanta_db.resources import migrations_dir
from quanta_db.store import migrations
from quanta_db.store.catalog import connect
from quanta_db.store.store import Store


def test_init_applies_every_migration_with_checksums(store):
    code = migrations.discover()
    with connect(store.root, read_only=True) as con:
        rows = con.execute("SELECT version, name, sha256 FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(m.version, m.name, m.sha256) for m in code]
    assert store.check_schema() == code[-1].version


def _copy_migrations(tmp_path, upto=None):
    target = tmp_path / "migrations"
    target.mkdir()
    for path in sorted(migrations_dir().glob("*.sql")):
        if upto is None or int(path.name[:4]) <= upto:
            shutil.copy(path, target / path.name)
    return target


def test_old_store_upgrades_without_losing_rows(tmp_path):
    old = _copy_migrations(tmp_path, upto=1)
    root = tmp_path / "store"
    root.mkdir()
    store = Store(root)
    store.migrate(old)
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "tables/vocab").mkdir(parents=True)
    pq.write_table(pa.table({"tokenizer": ["t"] * 5, "token_id": range(5), "token": list("abcde")}),
                   root / "tables/vocab/x.parquet")
    with connect(root, read_only=False) as con:
        con.execute("INSERT INTO runs VALUES ('r1', 'corpus', '{}', 'h', '0', 'host', 'cpu', now(), now(), 5, 'committed')")
        con.execute("INSERT INTO files VALUES ('r1', 'vocab', 'tables/vocab/x.parquet', 'tokenizer=t', 5, 10, now())")
    newest = migrations.discover()[-1].version
    with pytest.raises(StoreError) as behind:
        Store.open(root)
    assert str(behind.value) == f"store schema is at version 1, this quanta-db expects {newest}; run `quanta-db migrate`"
    applied = Store.open(root, check=False).migrate()
    assert [m.version for m in applied] == [m.version for m in migrations.discover()][1:]
    reopened = Store.open(root)
    assert reopened.query_df("SELECT run_id, rows_written FROM runs").values.tolist() == [["r1", 5]]
    assert reopened.query_df("SELECT count(*) AS n FROM files")["n"][0] == 1
    # files committed before per-file keys existed get them from their own key columns
    assert reopened.query_df("SELECT keys FROM files")["keys"][0] == '{"tokenizer": "t"}'


VOCAB_FILES = {"mixed": {"tokenizer": ["t", "u"], "token_id": [0, 0], "token": ["a", "b"]},  # two key values
               "one": {"tokenizer": ["t"] * 3, "token_id": [0, 1, 2], "token": ["a", "b", "c"]}}


def _version_one_store(tmp_path, *names: str):
    """A store at schema version 1 (before per-file keys) with the vocab files ``names`` of
    ``VOCAB_FILES`` committed by one run, their keys unrecorded."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "store"
    root.mkdir()
    Store(root).migrate(_copy_migrations(tmp_path, upto=1))
    (root / "tables/vocab").mkdir(parents=True)
    rows = {name: len(VOCAB_FILES[name]["token"]) for name in names}
    with connect(root, read_only=False) as con:
        con.execute(f"INSERT INTO runs VALUES ('r1', 'corpus', '{{}}', 'h', '0', 'host', 'cpu', now(), now(), "
                    f"{sum(rows.values())}, 'committed')")
        for name in names:
            pq.write_table(pa.table(VOCAB_FILES[name]), root / f"tables/vocab/{name}.parquet")
            con.execute(f"INSERT INTO files VALUES ('r1', 'vocab', 'tables/vocab/{name}.parquet', '', {rows[name]}, 10, now())")
    return root


def test_an_upgraded_file_of_two_key_values_is_listed_and_replaced_without_keys(tmp_path):
    """A file written before per-file keys whose rows hold two tokenizers has no one key value to
    record: the manifest lists it with none, and replacing the whole table drops it."""
    root = _version_one_store(tmp_path, "mixed")
    Store.open(root, check=False).migrate()
    store = Store.open(root)
    assert store.manifest("vocab").to_pylist() == [
        {"path": str(root / "tables/vocab/mixed.parquet"), "tokenizer": None, "rows": 2}]
    with store.begin_run("corpus", {"again": True}) as run:
        run.replace("vocab")
        run.commit()
    assert run.dropped == {"vocab": 2} and store.manifest("vocab").num_rows == 0
    assert not (root / "tables/vocab/mixed.parquet").exists()


def test_the_key_backfill_counts_the_files_it_filled_in(tmp_path):
    """``backfill_file_keys`` fills in the files of one key value and counts them; a file of two
    values stays without keys, so a second pass finds it again and fills in nothing; a file of a
    table no longer known is passed over."""
    root = _version_one_store(tmp_path, "mixed", "one")
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / "tables/token_filters").mkdir(parents=True)  # a table of two key columns
    pq.write_table(pa.table({"corpus": ["c", "c"], "filter": ["induction"] * 2, "doc_id": [0, 0], "pos": [1, 2]}),
                   root / "tables/token_filters/f.parquet")
    with connect(root, read_only=False) as con:  # a file of a table this quanta-db no longer knows, listed first
        con.execute("INSERT INTO files VALUES ('r1', 'retired', 'tables/a-retired/x.parquet', '', 1, 10, now())")
        con.execute("INSERT INTO files VALUES ('r1', 'token_filters', 'tables/token_filters/f.parquet', '', 2, 10, now())")
    newest = tmp_path / "newest"
    shutil.copytree(migrations_dir(), newest)
    store = Store.open(root, check=False)
    store.migrate(newest)  # a directory of its own: the migrations alone, no backfill
    with store.write() as con:
        assert migrations.backfill_file_keys(con, root) == 2
        assert migrations.backfill_file_keys(con, root) == 0
        keys = dict(con.execute("SELECT path, keys FROM files ORDER BY path").fetchall())
    assert keys["tables/vocab/one.parquet"] == '{"tokenizer": "t"}'
    assert keys["tables/token_filters/f.parquet"] == '{"corpus": "c", "filter": "induction"}'
    assert keys["tables/vocab/mixed.parquet"] in (None, "") and keys["tables/a-retired/x.parquet"] is None


def test_changed_checksum_is_refused(tmp_path, store, store_snapshot):
    changed = _copy_migrations(tmp_path)
    first = sorted(changed.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    before = store_snapshot(store)
    with pytest.raises(StoreError, match="checksum mismatch"):
        store.migrate(changed)
    assert store_snapshot(store) == before


@pytest.mark.parametrize("names, message", [
    (["0001_a.sql", "0003_c.sql"], "migrations must be numbered 0001..0002 without gaps; 0003 is out of place"),
    (["0001_a.sql", "0002_b.sql", "0004_d.sql", "0005_e.sql"],
     "migrations must be numbered 0001..0004 without gaps; 0004 is out of place"),
    (["0001_a.sql", "0001_b.sql"], "migration number 0001 is used twice (a, b)"),
    (["1_a.sql"], "migration file 1_a.sql is not named NNNN_name.sql"),
])
def test_bad_numbering_is_refused(tmp_path, names, message):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(f"CREATE TABLE t_{name[:4]} (a INT);")
    with pytest.raises(StoreError) as refused:
        migrations.discover(folder)
    assert str(refused.value) == message


def test_store_newer_than_code_is_refused(store, store_snapshot):
    with connect(store.root, read_only=False) as con:
        con.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x', now())")
    before = store_snapshot(store)
    latest = migrations.discover()[-1].version
    expected = f"store schema is at version 99, newer than this quanta-db (knows up to {latest}); upgrade quanta-db"
    with pytest.raises(StoreError) as refused:
        Store.open(store.root)
    assert str(refused.value) == expected
    with pytest.raises(StoreError) as refused:
        store.migrate()
    assert str(refused.value) == expected
    assert store_snapshot(store) == before


def test_a_gap_in_applied_migrations_is_named_and_nothing_runs(store, store_snapshot):
    with connect(store.root, read_only=False) as con:
        con.execute("DELETE FROM schema_migrations WHERE version = 3")
    before = store_snapshot(store)
    applied = ", ".join(str(m.version) for m in migrations.discover() if m.version != 3)
    for attempt in (lambda: Store.open(store.root), store.migrate):
        with pytest.raises(StoreError, match=f"history skips 0003 \\(applied: {applied}\\).*restore the store"):
            attempt()
    assert store_snapshot(store) == before


def test_failing_migration_rolls_back(tmp_path, store, store_snapshot):
    folder = _copy_migrations(tmp_path)
    n = len(list(folder.glob("*.sql")))
    (folder / f"{n + 1:04d}_broken.sql").write_text("CREATE TABLE half (a INT);\nSELECT * FROM no_such_table;")
    before = store_snapshot(store)
    with pytest.raises(StoreError) as failed:
        store.migrate(folder)
    assert str(failed.value) == (f"migration {n + 1:04d}_broken failed: Catalog Error: Table with name no_such_table "
                                 "does not exist!")
    assert store_snapshot(store) == before
    assert not store.relation_exists("half")


CODE = [migrations.Migration(1, "a", "CREATE TABLE a (x INT)"), migrations.Migration(2, "b", "CREATE TABLE b (x INT)"),
        migrations.Migration(3, "c", "CREATE TABLE c (x INT)")]


def _done(*versions, **changed):
    return [(m.version, changed.get(f"name{m.version}", m.name), changed.get(f"sha{m.version}", m.sha256))
            for m in CODE if m.version in versions]


@pytest.mark.parametrize(("done", "todo", "refused"), [
    ([], [1, 2, 3], None), (_done(1), [2, 3], None), (_done(1, 2, 3), [], None),
    ([*_done(1, 2, 3), (4, "d", "x")], None,
     "store schema is at version 4, newer than this quanta-db (knows up to 3); upgrade quanta-db"),
    (_done(1, 2, sha2="edited"), None,
     "migration 0002_b was changed after it was applied to this store (checksum mismatch); restore the original file"),
    (_done(1, name1="renamed"), None,
     "migration 0001_renamed was changed after it was applied to this store (checksum mismatch); restore the original file"),
    (_done(1, 3), None, "store's migration history skips 0002 (applied: 1, 3); its schema_migrations table was edited "
                        "or damaged, so migrating cannot be trusted: restore the store from a backup"),
    (_done(3), None, "store's migration history skips 0001, 0002 (applied: 3); its schema_migrations table was edited "
                     "or damaged, so migrating cannot be trusted: restore the store from a backup"),
])
def test_pending_migrations_are_those_after_a_whole_unchanged_history(done, todo, refused):
    if refused is None:
        assert [m.version for m in migrations.pending(None, CODE, done)] == todo
        return
    with pytest.raises(StoreError) as error:
        migrations.pending(None, CODE, done)
    assert str(error.value) == refused


def test_a_store_with_migrations_and_code_with_none_is_newer():
    with pytest.raises(StoreError, match=r"at version 1, newer than this quanta-db \(knows up to 0\)"):
        migrations.pending(None, [], _done(1))


def test_the_lake_runs_a_migration_without_key_constraints():
    assert migrations.lake_sql("CREATE TABLE t (a INT PRIMARY   KEY, b TEXT unique, uniqueness INT)") == \
        "CREATE TABLE t (a INT, b TEXT, uniqueness INT)"


def test_init_refuses_a_catalog_that_is_not_postgresql_and_leaves_nothing(tmp_path, monkeypatch):
    """Given or from ``QUANTA_DB_CATALOG``, a catalog URL of another database is refused before
    any catalog exists: a folder ``init`` made is removed, an empty one it was given stays empty."""
    from quanta_db.errors import InputError
    from quanta_db.store import lake

    monkeypatch.delenv(lake.CATALOG_ENV, raising=False)
    new = tmp_path / "new"
    with pytest.raises(InputError, match=r"^--catalog must be a postgresql://USER@HOST\[:PORT\]/DATABASE URL, "
                                         r"got 'mysql://h/db'$"):
        Store.init(new, "mysql://h/db")
    assert not new.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(lake.CATALOG_ENV, "sqlite:///x")
    with pytest.raises(InputError, match=r"got 'sqlite:///x'$"):
        Store.init(empty)
    assert empty.is_dir() and not any(empty.iterdir())


def test_the_schema_is_checked_against_the_code_queries_connection_and_facts_given(store, monkeypatch):
    """``check_schema``'s arguments replace what it would discover or read; views are refreshed
    only when a result table lacks its view or the installed saved queries differ."""
    from quanta_db.store import views
    from quanta_db.store.registry import fact_tables
    from quanta_db.store.sql import statement

    code, saved = migrations.discover(), views.discover_saved_queries()
    latest = code[-1].version
    refreshed = []
    monkeypatch.setattr(Store, "refresh_views", lambda self: refreshed.append(1))
    assert store.check_schema() == latest and refreshed == []  # up to date: nothing refreshed
    with pytest.raises(StoreError, match=rf"^store schema is at version {latest}, newer than this quanta-db "
                                         rf"\(knows up to {code[-2].version}\); upgrade quanta-db$"):
        store.check_schema(code[:-1])
    assert store.check_schema(code, saved[:-1]) == latest and refreshed == [1]  # one more installed than shipped
    with store.read() as con:
        monkeypatch.setattr(Store, "read", lambda self: pytest.fail("opened a connection of its own"))
        assert store.check_schema(code, saved, con) == latest and refreshed == [1]
        done = migrations.applied(con)
        present = {row[0] for row in con.execute(statement("user_views")).fetchall()}
        installed = dict(con.execute(statement("saved_query_hashes")).fetchall())
    assert store.check_schema(code, saved, facts=(done, present, installed)) == latest and refreshed == [1]
    with pytest.raises(StoreError, match=rf"^store schema is at version {latest - 1}, this quanta-db expects {latest}; "
                                         r"run `quanta-db migrate`$"):
        store.check_schema(code, saved, facts=(done[:-1], present, installed))
    one_view_missing = present - {sorted(fact_tables())[0]}
    assert store.check_schema(code, saved, facts=(done, one_view_missing, installed)) == latest and refreshed == [1, 1]


def test_migrate_writes_through_the_catalog_given_else_a_new_local_one(tmp_path, monkeypatch):
    """``migrate(locator=...)`` (a store's first migration, PostgreSQL's too) writes through that
    catalog; a folder without any gets a local one; an existing store's is located as it opens."""
    from quanta_db.store import lake

    class Stop(Exception):
        pass

    seen = []

    def write(self, locator=None):
        seen.append(locator)
        raise Stop

    monkeypatch.setattr(Store, "write", write)
    given = lake.Locator(tmp_path, "postgresql://alice@db.example/quanta", "quanta_0123456789ab")
    with pytest.raises(Stop):
        Store(tmp_path).migrate(locator=given)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(Stop):
        Store(empty).migrate()
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / lake.LOCAL_FILE).write_bytes(b"")
    with pytest.raises(Stop):
        Store(tmp_path / "local").migrate()
    assert seen == [given, lake.Locator(empty), None]


def test_open_creates_a_store_only_where_there_is_none_and_refreshes_in_the_background_only_if_asked(
        tmp_path, store, monkeypatch, catalog_backend):
    from quanta_db.store import lake

    made = lake.REMOTE_FILE if catalog_backend == "postgresql" else lake.LOCAL_FILE  # QUANTA_DB_CATALOG decides
    assert Store.open(store.root).background_refresh is False
    assert Store.open(store.root, background_refresh=True).background_refresh is True
    missing, empty, full = tmp_path / "missing", tmp_path / "empty", tmp_path / "full"
    with pytest.raises(StoreError, match=rf"^store {missing} does not exist; create it with `quanta-db init`$"):
        Store.open(missing)
    assert Store.open(missing, create=True).root == missing and (missing / made).is_file()
    empty.mkdir()
    assert Store.open(empty, create=True).root == empty and (empty / made).is_file()
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    monkeypatch.setattr(Store, "init", lambda *args: pytest.fail("a folder with files, or a store, is not made anew"))
    assert Store.open(store.root, create=True).root == store.root
    for opening in (lambda: Store.open(full, create=True), lambda: Store.open(full, check=False)):
        with pytest.raises(StoreError) as refused:
            opening()
        assert str(refused.value) == (f"{full} is not a quanta-db store (no {lake.LOCAL_FILE} or {lake.REMOTE_FILE}); "
                                      "run `quanta-db init`")
    old = tmp_path / "old"  # a store of quanta-db 0.1 opens unchecked, for `migrate` to convert
    old.mkdir()
    (old / lake.LEGACY_FILE).write_bytes(b"")
    assert Store.open(old, check=False).root == old


def test_a_new_postgresql_catalog_gets_its_own_schema_recorded_without_the_password(tmp_path):
    from quanta_db.store import lake

    url = "postgres://alice@db.example:5433/quanta"
    remote = lake.new_locator(str(tmp_path), "postgres://alice:s3cret@db.example:5433/quanta")
    assert (remote.root, remote.url) == (tmp_path, url) and re.fullmatch(r"quanta_[0-9a-f]{12}", remote.schema)
    assert lake.new_locator(tmp_path, url).schema != remote.schema  # one schema per store in a shared database
    lake.save(remote)
    assert (tmp_path / lake.REMOTE_FILE).read_text() == f'{{\n  "catalog": "{url}",\n  "schema": "{remote.schema}"\n}}\n'
    assert lake.locate(tmp_path) == remote
    local = lake.new_locator(str(tmp_path / "here"), None)
    assert local == lake.Locator(tmp_path / "here") and not local.on_postgres
    lake.save(local)  # a local catalog needs no record
    assert not (tmp_path / "here").exists()
