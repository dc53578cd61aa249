"""Store commands: init, migrate, status, gc, views, query."""

from __future__ import annotations

import json
import sys

import click

from quanta_db.cli.options import format_option, output_option, pass_store, read_only_process, write_result
from quanta_db.errors import InputError


@click.command()
@click.option("--catalog", "catalog_url", envvar="QUANTA_DB_CATALOG", metavar="URL",
              help="postgresql://USER@HOST[:PORT]/DATABASE to keep the catalog in, for a store several hosts "
                   "share (pip install 'quanta-db[postgres]'); the password comes from PGPASSWORD, ~/.pgpass or "
                   "this URL [default: a catalog file in the store; also QUANTA_DB_CATALOG].")
@pass_store
def init(ref, catalog_url):
    """Create a store (or upgrade an existing one) and install its views."""
    from quanta_db.store.store import Store

    store = Store.init(ref.path, catalog_url=catalog_url)
    click.echo(f"store ready at {store.root} (schema version {store.check_schema()}; catalog {store.catalog()})")


@click.command()
@click.option("--list", "list_only", is_flag=True, help="List migrations and whether each is applied.")
@pass_store
def migrate(ref, list_only):
    """Apply pending schema migrations (in one transaction); upgrade a store of quanta-db 0.1."""
    from quanta_db.store.store import Store

    store = Store.open(ref.path, check=False)
    if list_only:
        for row in store.migration_list():
            state = f"applied {row['applied_at']:%Y-%m-%d %H:%M:%S}" if row["applied"] else "pending"
            click.echo(f"{row['version']:04d}  {row['name']:<24} {state}")
        return
    applied = store.migrate()
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
    click.echo(f"applied: {names}; schema is at version {store.check_schema()}")


@click.command()
@pass_store
def status(ref):
    """Schema version, each table's rows, files and bytes, and the last runs."""
    info = ref.open().status()
    click.echo(f"store {info['root']}  schema version {info['schema_version']}  catalog {info['catalog']}")
    click.echo("\nfact tables (Parquet) and artifacts:")
    for row in info["fact_tables"]:
        click.echo(f"  {row['table']:<24} {row['rows']:>14,} rows {row['files']:>6} files {_size(row['bytes']):>10}")
    click.echo("\ncatalog tables:")
    for name, rows in info["catalog_tables"].items():
        click.echo(f"  {name:<24} {rows:>14,} rows")
    runs = info["last_runs"]
    click.echo("\nlast runs:" if len(runs) else "\nno runs yet")
    for run in runs.itertuples(index=False):
        line = f"  {run.run_id}  {run.kind:<10} {run.status:<10} {run.rows_written:>12,} rows  {run.ended_at:%Y-%m-%d %H:%M:%S}"
        if isinstance(run.dropped, str):
            line += "  replaced " + ", ".join(f"{t} ({n:,})" for t, n in json.loads(run.dropped).items())
        click.echo(line)
    for split in info["staged_splits"]:
        staged = sorted(split.staged)
        click.echo(f"\nsplit {split.split} ({split.job}): {len(staged)} of {split.shards} shard(s) staged")
        if split.missing:
            click.echo(f"  run the missing shard(s) and commit: {split.retry_command(info['root'])}")
        else:
            click.echo(f"  complete: quanta-db --store {info['root']} commit --split {split.split}")


def _size(n_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


@click.command()
@click.option("--split", "split", required=True, metavar="ID", help="The split whose staged shards to commit.")
@click.option("--expect", type=int, metavar="N", help="Refuse unless the split has N shards.")
@pass_store
def commit(ref, split, expect):
    """Commit every staged shard of a split in one transaction, or nothing."""
    from quanta_db.cli.params import echo_split

    echo_split(ref.open().commit_split(split, expect=expect))


@click.command()
@click.option("--force", is_flag=True, help="Also remove staging folders of jobs that look alive.")
@pass_store
def gc(ref, force):
    """Remove staged files of runs that never committed and unlisted table files."""
    report = ref.open().gc(force=force)
    click.echo(
        f"removed {len(report.staging_removed)} staging folder(s) and {len(report.orphans_removed)} orphan file(s)"
        + (f"; kept {len(report.staging_kept)} of running jobs" if report.staging_kept else "")
    )


@click.command()
@click.argument("name", required=False)
@click.option("--refresh", is_flag=True, help="Reinstall all saved queries from queries/.")
@pass_store
def views(ref, name, refresh):
    """List saved analyses, or show the SQL of one (NAME)."""
    store = ref.open()
    if refresh:
        store.refresh_views()
    if name:
        row = store.saved_query(name)
        click.echo(f"-- name: {row['name']}\n-- description: {row['description']}")
        if row["parameters"]:
            click.echo(f"-- parameters: {row['parameters']}")
        click.echo(row["sql"])
        return
    saved = store.saved_queries()
    for row in saved.itertuples(index=False):
        call = f"{row.name}({row.parameters})" if row.parameters else row.name
        click.echo(f"{call}\n    {row.description}")


@click.command()
@click.argument("sql", required=False)
@click.option("-f", "--file", "sql_file", type=click.File("r"), help="Read the SQL from a file.")
@format_option
@output_option
@click.option("--max-rows", type=click.IntRange(1), default=200, show_default=True, help="Rows shown by --format table.")
@click.option("--time-limit-ms", type=click.IntRange(1), help="Stop the query after this long (default: no limit).")
@click.option("--unsafe", is_flag=True,
              help="Allow any statement type and file access outside the store (the catalog stays read-only).")
@pass_store
def query(ref, sql, sql_file, fmt, output, max_rows, time_limit_ms, unsafe):
    """Run one SELECT (argument, -f FILE, or stdin); it can read only the store's own files."""
    if sql_file is not None:
        sql = sql_file.read()
    elif sql is None or sql == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise InputError("give SQL as an argument, with -f FILE, or on standard input")
        sql = sys.stdin.read()
    if not unsafe:
        from quanta_db.store.sandbox import precheck

        precheck(sql)  # refused before the store is opened
    store = ref.open()  # may rebuild views: before the process gives up writing
    if not unsafe:
        read_only_process(output)
    write_result(store.query(sql, unsafe=unsafe, time_limit_ms=time_limit_ms), fmt, output, sql, max_rows)
