"""The DuckDB extensions a store loads (quanta_db/store/extensions.py): installed from their
wheels, each installed file's signature checked once and recorded, one process installing at a
time, and no file loaded that was not checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from quanta_db.errors import StoreError
from quanta_db.store import catalog, extensions, lake


def _on_postgres(root: Path) -> lake.Locator:
    """A catalog on a PostgreSQL server that is not there (nothing listens on port 1)."""
    return lake.Locator(root, "postgresql://u@127.0.0.1:1/db", "quanta_x")


@pytest.fixture
def extension_record(tmp_path, monkeypatch) -> Path:
    """A cache folder of its own (two levels that do not exist yet) and nothing checked in this process."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache" / "user"))
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    return tmp_path / "cache" / "user" / "quanta-db" / extensions.RECORD_FILE


def test_checked_extension_files_are_recorded_in_the_users_cache_folder(tmp_path, extension_record, monkeypatch):
    first, second = tmp_path / "ducklake.duckdb_extension", tmp_path / "postgres.duckdb_extension"
    first.write_bytes(b"one")
    second.write_bytes(b"two")
    extensions._record("ducklake", first)
    extensions._record("postgres", second)  # the folder exists by now: the second record goes in beside the first
    entries = json.loads(extension_record.read_text())
    assert {key: entry["path"] for key, entry in entries.items()} == {
        f"{duckdb.__version__}/ducklake": str(first), f"{duckdb.__version__}/postgres": str(second)}
    assert extensions._checked_file("ducklake") == first
    monkeypatch.setattr(extensions, "_VERIFIED", {})  # another process: it reads the record
    assert extensions._checked_file("postgres") == second
    second.write_bytes(b"edited")  # a changed file is checked again
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    assert extensions._checked_file("postgres") is None


def test_the_record_is_under_home_without_xdg_and_a_damaged_one_is_ignored(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / ".cache" / "quanta-db" / extensions.RECORD_FILE
    assert extensions._record_path() == path
    path.parent.mkdir(parents=True)
    for damaged in ("[1, 2]", "{not json", '"text"'):
        path.write_text(damaged)
        assert extensions._recorded() == {}


def test_a_damaged_entry_of_the_record_checks_the_extension_again(tmp_path, extension_record, monkeypatch):
    """Only an entry naming a file whose identity is recorded and still the file's is trusted:
    any other shape (a hand edit, another version's layout) means the signature is checked again."""
    installed = tmp_path / "ducklake.duckdb_extension"
    installed.write_bytes(b"one")
    identity = extensions._identity(installed)
    key = f"{duckdb.__version__}/ducklake"
    extension_record.parent.mkdir(parents=True)
    for entry in ([str(installed), identity], {"path": 3, "identity": identity}, {"path": str(installed)},
                  {"path": str(tmp_path / "missing"), "identity": None}, {"identity": identity},
                  {"path": str(installed), "identity": [*identity[:-1], identity[-1] + 1]}):
        extension_record.write_text(json.dumps({key: entry}))
        monkeypatch.setattr(extensions, "_VERIFIED", {})
        assert extensions._checked_file("ducklake") is None, entry
    extension_record.write_text(json.dumps({key: {"path": str(installed), "identity": identity}}))
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    assert extensions._checked_file("ducklake") == installed


def test_an_unwritable_cache_folder_only_means_checking_again(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # its quanta-db folder cannot be made
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    extensions._record("ducklake", blocker)
    assert extensions._checked_file("ducklake") == blocker  # this process remembers it all the same


def test_the_extension_file_is_the_one_inside_its_wheel_or_a_one_line_install_hint(tmp_path, monkeypatch):
    import importlib.machinery
    import importlib.util

    installed = extensions.wheel_extension("ducklake")
    assert installed.is_file() and installed.name == "ducklake.duckdb_extension"
    assert installed.parent.name == f"v{duckdb.__version__}" and "duckdb_extension_ducklake" in installed.parts
    empty_package = importlib.machinery.ModuleSpec("duckdb_extension_x", None, is_package=True)
    empty_package.submodule_search_locations = [str(tmp_path)]  # installed, but without the file
    for spec, name, hint in [(None, "postgres", "pip install 'quanta-db[postgres]'"),
                             (importlib.machinery.ModuleSpec("duckdb_extension_x", None), "ducklake", "pip install quanta-db"),
                             (empty_package, "ducklake", "pip install quanta-db")]:
        monkeypatch.setattr(importlib.util, "find_spec", lambda _name, spec=spec: spec)
        with pytest.raises(StoreError) as refusal:
            extensions.wheel_extension(name)
        assert str(refusal.value) == f"DuckDB's {name} extension for DuckDB {duckdb.__version__} is not installed ({hint})"


def test_a_blank_connection_checks_signatures_until_every_extension_its_catalog_needs_was_checked(tmp_path, monkeypatch):
    """A connection made ahead for a catalog on PostgreSQL loads DuckLake and postgres: with only
    DuckLake's file checked before, it still checks signatures (postgres's is checked on load)."""
    catalog.blank_connection(lake.Locator(tmp_path)).close()  # DuckLake's file checked, and recorded
    checked_file = extensions._checked_file
    assert checked_file("ducklake") is not None
    monkeypatch.setattr(extensions, "_checked_file", lambda name: None if name == "postgres" else checked_file(name))
    for locator, checking in ((lake.Locator(tmp_path), False),
                              (_on_postgres(tmp_path), True)):
        con = catalog.blank_connection(locator)
        try:
            assert con.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0] is not checking
        finally:
            con.close()


def test_a_blank_connection_has_loaded_every_extension_its_catalog_needs_before_anything_is_attached(tmp_path):
    """postgres too for a catalog on PostgreSQL, and DuckDB's autoloading is off: left to it at the
    attach, postgres would be loaded from whatever file is installed, without the identity
    compared (signatures are not checked on a connection whose extensions were all checked)."""
    loaded = "SELECT extension_name FROM duckdb_extensions() WHERE loaded AND extension_name IN ('ducklake', 'postgres_scanner')"
    on_postgres = _on_postgres(tmp_path)
    for locator, expected in ((lake.Locator(tmp_path), {"ducklake"}), (on_postgres, {"ducklake", "postgres_scanner"})):
        with catalog.blank_connection(locator) as con:
            assert {name for (name,) in con.execute(loaded).fetchall()} == expected
            for setting in ("autoload_known_extensions", "autoinstall_known_extensions"):  # nothing fetched either
                assert con.execute(f"SELECT current_setting('{setting}')").fetchone()[0] is False


def test_attaching_a_lake_on_postgresql_loads_the_checked_postgres_file_first(tmp_path, monkeypatch):
    """DuckLake loads postgres itself at an attach on PostgreSQL (autoloading or not), from
    whatever file is installed: the lake's attach has loaded it through ``load`` first, from
    the file whose identity was compared."""
    postgres_loaded = "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'postgres_scanner'"
    loaded_before_attach, load = [], extensions.load

    def load_then_look(con, postgres):
        load(con, postgres)
        loaded_before_attach.append(con.execute(postgres_loaded).fetchone()[0])

    monkeypatch.setattr(extensions, "load", load_then_look)
    unreachable = _on_postgres(tmp_path)
    with duckdb.connect(config=extensions.connection_config(True)) as con:
        with pytest.raises(duckdb.Error):
            lake.attach(con, unreachable, read_only=True)
    assert loaded_before_attach == [True]


def test_a_new_connection_to_a_lake_on_postgresql_checks_signatures_while_postgres_is_unchecked(tmp_path, extension_record):
    """``_attached`` without a connection made ahead configures its own for the extensions its
    catalog needs: DuckLake's file checked before but postgres's not, it checks signatures and
    loads postgres (configured for DuckLake alone, it would refuse postgres as a changed file)."""
    catalog.blank_connection(lake.Locator(tmp_path)).close()  # DuckLake's file checked, and recorded
    assert extensions._checked_file("ducklake") is not None and extensions._checked_file("postgres") is None
    unreachable = _on_postgres(tmp_path)
    with pytest.raises(duckdb.Error, match="127.0.0.1"):  # the server's absence, not the extension
        catalog._attached(unreachable, True)
    assert extensions._checked_file("postgres") is not None  # checked on its load, and recorded


def test_an_extension_not_yet_installed_is_installed_from_its_wheel_checked_and_recorded(tmp_path, extension_record):
    """A DuckDB extension folder without DuckLake (a fresh machine's): ``load`` installs the file
    inside its wheel there, loads it with its signature checked, and records the installed file."""
    folder = tmp_path / "extensions"
    con = duckdb.connect(config={"extension_directory": str(folder), **extensions.connection_config(False)})
    try:
        extensions.load(con, postgres=False)
        loaded, installed = con.execute("SELECT loaded, install_path FROM duckdb_extensions() "
                                        "WHERE extension_name = 'ducklake'").fetchone()
    finally:
        con.close()
    assert loaded and Path(installed).is_relative_to(folder)
    assert Path(installed).read_bytes() == extensions.wheel_extension("ducklake").read_bytes()
    assert extensions._checked_file("ducklake") == Path(installed)


def test_a_temporary_file_of_another_install_is_neither_loaded_nor_recorded(tmp_path, extension_record, monkeypatch):
    """An install killed (or under way in another process) leaves ``<name>.duckdb_extension.tmp-
    <uuid>.duckdb_extension`` in the extension folder, and DuckDB then reports that file as the
    extension's install path: the file installed beside it is the one loaded and recorded."""
    folder = tmp_path / "extensions"

    def load_once() -> None:
        with duckdb.connect(config={"extension_directory": str(folder), **extensions.connection_config(False)}) as con:
            extensions.load(con, postgres=False)
            assert con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'ducklake'").fetchone()[0]

    load_once()
    installed = extensions._checked_file("ducklake")
    leftover = installed.with_name(installed.name + ".tmp-killed.duckdb_extension")
    leftover.write_bytes(b"half an extension")
    leftover.with_name(leftover.name + ".info").write_bytes(installed.with_name(installed.name + ".info").read_bytes())
    installed.unlink()  # the killed install was the first
    extension_record.unlink()
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    load_once()  # installed anew, checked, recorded
    assert installed.read_bytes() == extensions.wheel_extension("ducklake").read_bytes()
    assert extensions._checked_file("ducklake") == installed
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    assert extensions.connection_config(False)["allow_unsigned_extensions"] is True
    load_once()  # by the recorded path


REPO = Path(__file__).resolve().parent.parent


LOADS_EXTENSIONS = """
import sys, time
from pathlib import Path
import duckdb
from quanta_db.store import extensions
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
for _ in range(2):
    config = {"extension_directory": sys.argv[1], **extensions.connection_config(True)}
    with duckdb.connect(config=config) as con:
        extensions.load(con, postgres=True)
"""


def test_a_file_changed_since_the_connection_was_configured_is_refused_not_loaded_unchecked(tmp_path, extension_record,
                                                                                          monkeypatch):
    """A connection configured without signature checks (every file it loads was checked) whose
    file then changes would load an unchecked file: it is one line instead, and nothing recorded."""
    folder = tmp_path / "extensions"
    with duckdb.connect(config={"extension_directory": str(folder), **extensions.connection_config(False)}) as con:
        extensions.load(con, postgres=False)  # installed and checked
    config = {"extension_directory": str(folder), **extensions.connection_config(False)}
    assert config["allow_unsigned_extensions"] is True
    installed = extensions._checked_file("ducklake")
    os.utime(installed)  # a new change time: the file as if replaced
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    with duckdb.connect(config=config) as con, pytest.raises(StoreError, match="ducklake extension file changed"):
        extensions.load(con, postgres=False)
    assert extensions._checked_file("ducklake") is None
    with duckdb.connect(config={"extension_directory": str(folder), **extensions.connection_config(False)}) as con:
        extensions.load(con, postgres=False)  # checked again
    assert extensions._checked_file("ducklake") == installed


@pytest.mark.slow
def test_processes_installing_the_extensions_at_once_all_load_them(tmp_path):
    """On a fresh machine every worker installs the extensions at once; DuckDB lists an install
    under way by its temporary file (which vanishes), so each process installs in turn."""
    for round_ in range(3):
        folder, go = tmp_path / f"extensions{round_}", tmp_path / f"go{round_}"
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / f"cache{round_}")}
        loaders = [subprocess.Popen([sys.executable, "-c", LOADS_EXTENSIONS, str(folder), str(go)], cwd=REPO, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(4)]
        time.sleep(1.0)  # every one imported and waiting
        go.touch()
        outputs = [loader.communicate(timeout=120)[0] for loader in loaders]
        assert [loader.returncode for loader in loaders] == [0] * 4, outputs
