"""The ASGI app of ``quanta-db serve`` (Starlette + Jinja2): pages, downloads, reports, JSON API.

Every query goes through :func:`quanta_db.store.querying.run_on` — read-only statement check, a
connection confined to the store's files, a time and a row limit — on the newest private copy
of the catalog (:mod:`quanta_db.store.snapshots`), so serving never blocks an ingest's commit.
Sync endpoints run in Starlette's worker threads: a slow query holds only its own thread.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from quanta_db import kinds
from quanta_db.errors import InputError, QuantaError
from quanta_db.reports.formats import FORMATS, encode, to_json
from quanta_db.serve.snapshot import SnapshotStore
from quanta_db.store import querying
from quanta_db.store.copies import Snapshots
from quanta_db.store.sql import quote_ident, quote_literal

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE_SQL = Path(__file__).resolve().parent / "sql"  # the pages' own fixed queries (not saved analyses)
PAGE_ROWS = 50


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
DOWNLOADS = [name for name, output in FORMATS.items() if output.download]


def default_memory_limit() -> str:
    """What DuckDB may hold for the server's queries: a quarter of the machine's memory, at most
    4 GiB (DuckDB's own default, 80% of memory, would let one query starve the machine)."""
    import os

    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 16 * 2**30
    return f"{min(physical // 4, 4 * 2**30) // 2**20}MiB"


@dataclass
class Settings:
    root: Path
    time_limit_ms: int = 5000
    max_rows: int = 1000
    token: str | None = None
    # Host names the server answers to (DNS-rebinding defence); a request naming another is refused.
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    memory_limit: str | None = None  # DuckDB syntax; None: default_memory_limit()


@functools.cache
def page_sql(name: str) -> str:
    """The text of ``sql/NAME.sql``."""
    return (PAGE_SQL / f"{name}.sql").read_text()


def _parameters(text: str) -> list[tuple[str, str | None]]:
    """``"corpus_name, document_id := 0"`` → [("corpus_name", None), ("document_id", "0")]."""
    out = []
    for part in (p.strip() for p in (text or "").split(",") if p.strip()):
        name, _, default = part.partition(":=")
        out.append((name.strip(), default.strip() or None))
    return out


def sql_literal(text: str) -> str:
    """A form value as an SQL literal: integers and decimals as numbers, NULL as NULL, the rest quoted."""
    value = text.strip()
    if re.fullmatch(r"-?\d+", value) or re.fullmatch(r"-?\d+\.\d*([eE][-+]?\d+)?", value):
        return value
    if value.upper() == "NULL":
        return "NULL"
    if len(value) >= 2 and value[0] == value[-1] == "'":
        value = value[1:-1]
    return quote_literal(value)


def analysis_sql(name: str, parameters: list[tuple[str, str | None]], given: dict[str, str]) -> str | None:
    """The SELECT running saved analysis ``name`` with ``given`` values (None while a required one is missing)."""
    if not parameters:
        return f"SELECT * FROM {quote_ident(name)}"
    arguments = []
    for param, default in parameters:
        value = given.get(param, "")
        if value.strip() == "":
            if default is None:
                return None
            continue
        arguments.append(f"{param} := {sql_literal(value)}" if default is not None else sql_literal(value))
    return f"SELECT * FROM {quote_ident(name)}({', '.join(arguments)})"


def create_app(settings: Settings):
    import jinja2
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
    from starlette.routing import Route

    snapshots = Snapshots(settings.root, _checked_memory_limit(settings.memory_limit or default_memory_limit()),
                          background=True)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True)
    environment.filters["urlencode_params"] = urlencode
    environment.globals["rows_of"] = lambda table: zip(*(c.to_pylist() for c in table.columns))
    # a run of one of these jobs links to its report: {job: report name}
    environment.globals["downloads"] = DOWNLOADS
    environment.globals["run_reports"] = {r.run_job: name for name, r in kinds.reports().items() if r.run_job}
    report_cache: dict[tuple, tuple[str, bytes]] = {}

    def execute(sql: str, params=None, max_rows: int | None = settings.max_rows) -> querying.Result:
        with snapshots.for_query() as snapshot:
            return querying.run_on(snapshot, sql, params, settings.time_limit_ms, max_rows)

    def page(template: str, status: int = 200, **context) -> HTMLResponse:
        body = environment.get_template(template).render(settings=settings, **context)
        return HTMLResponse(body, status_code=status)

    def saved(name: str) -> dict:
        rows = execute(page_sql("saved_analysis"), [name]).table
        if not rows.num_rows:
            raise InputError(f"unknown saved analysis {name!r}")
        return {k: rows.column(k)[0].as_py() for k in rows.column_names}

    def relations() -> list[dict]:
        from quanta_db.store.registry import catalog_tables, fact_tables

        columns = execute(page_sql("columns"), max_rows=None).table.to_pylist()
        names = sorted([*catalog_tables(), *fact_tables()])
        out = []
        for name in names:
            count = execute(f"SELECT count(*) AS n FROM {quote_ident(name)}").table.column("n")[0].as_py()
            out.append({"name": name, "role": "fact" if name in fact_tables() else "catalog", "rows": count,
                        "columns": [(c["column_name"], c["data_type"]) for c in columns if c["table_name"] == name]})
        return out

    # -- pages ----------------------------------------------------------------------------------
    def home(request):
        status = {key: execute(page_sql(f"home_{key}"), max_rows=None).table.to_pylist()
                  for key in ("corpora", "checkpoints", "saes", "runs")}
        analyses = execute(page_sql("saved_analyses"), max_rows=None).table.to_pylist()
        return page("home.html", status=200, store=status, tables=relations(), analyses=analyses)

    def columns_of(name: str) -> list[str]:
        from quanta_db.store.registry import catalog_tables, fact_tables

        if name not in {*catalog_tables(), *fact_tables()}:
            raise InputError(f"unknown table {name!r}")
        return execute(f"SELECT * FROM {quote_ident(name)} LIMIT 0").table.column_names

    def table_page(request):
        name = request.path_params["name"]
        sql, count_sql, offset = _table_sql(request, name, columns_of(name))
        result = execute(sql + f" LIMIT {PAGE_ROWS} OFFSET {offset}", max_rows=None)
        total = execute(count_sql).table.column("n")[0].as_py()
        return page("table.html", name=name, sql=sql, result=result, offset=offset, total=total, page_rows=PAGE_ROWS,
                    columns=result.table.column_names,
                    query={k: v for k, v in request.query_params.items() if k != "token"})

    def analysis_page(request):
        name = request.path_params["name"]
        info = saved(name)
        parameters = _parameters(info["parameters"])
        given = {k: v for k, v in request.query_params.items() if k in {p for p, _ in parameters}}
        sql = analysis_sql(name, parameters, given)
        result = execute(sql) if sql else None
        return page("analysis.html", info=info, parameters=parameters, given=given, sql=sql, result=result)

    def sql_page(request):
        sql = request.query_params.get("sql", "").strip()
        result = execute(sql) if sql else None
        schema = execute(page_sql("schema"), max_rows=None).table.to_pylist()
        return page("sql.html", sql=sql, result=result, schema=schema)

    def download(request):
        sql, fmt = request.query_params.get("sql", ""), request.query_params.get("format", "csv")
        if fmt not in DOWNLOADS:
            raise InputError(f"unknown format {fmt!r} ({', '.join(DOWNLOADS)})")
        result = execute(sql)
        return Response(encode(result, fmt, sql), media_type=FORMATS[fmt].media_type,
                        headers={"Content-Disposition": f'attachment; filename="result.{FORMATS[fmt].extension}"'})

    def report(request):
        name, ident = request.path_params["report"], request.path_params["ident"]
        declared = kinds.report(name)
        options = dict(request.query_params)
        # reports of a run id never change; the others (an SAE name, a metric) follow commits
        key = (name, ident, tuple(sorted(options.items())),
               None if declared.run_job else snapshots.current().generation)
        if key not in report_cache:
            store = SnapshotStore(settings.root, snapshots.current(), settings.time_limit_ms)
            report_cache[key] = declared.render(store, ident, options)
        media_type, body = report_cache[key]
        return Response(body, media_type=media_type)

    # -- JSON API ---------------------------------------------------------------------------------
    def api_query(request):
        return JSONResponse(to_json(execute(request.query_params.get("sql", ""))))

    def api_view(request):
        name = request.path_params["name"]
        info = saved(name)
        parameters = _parameters(info["parameters"])
        unknown = sorted(set(request.query_params) - {p for p, _ in parameters})
        if unknown:
            raise InputError(f"saved analysis {name!r} has no parameter(s) {', '.join(unknown)}")
        sql = analysis_sql(name, parameters, dict(request.query_params))
        if sql is None:
            missing = [p for p, d in parameters if d is None and not request.query_params.get(p)]
            raise InputError(f"saved analysis {name!r} needs {', '.join(missing)}")
        return JSONResponse({"sql": sql, **to_json(execute(sql))})

    def api_table(request):
        name = request.path_params["name"]
        sql, _, offset = _table_sql(request, name, columns_of(name))
        try:
            limit = min(int(request.query_params.get("limit", PAGE_ROWS)), settings.max_rows)
        except ValueError:
            raise InputError("limit must be an integer") from None
        return JSONResponse({"sql": sql, **to_json(execute(sql + f" LIMIT {limit} OFFSET {offset}",
                                                                  max_rows=None))})

    def api_runs(request):
        return JSONResponse(to_json(execute(page_sql("runs"), max_rows=None)))

    routes = [Route("/", home), Route("/tables/{name}", table_page), Route("/analyses/{name}", analysis_page),
              Route("/sql", sql_page), Route("/download", download), Route("/reports/{report}/{ident}", report),
              Route("/api/query", api_query), Route("/api/views/{name}", api_view),
              Route("/api/tables/{name}", api_table), Route("/api/runs", api_runs),
              Route("/favicon.ico", lambda request: Response(status_code=204))]

    async def errors(request, call_next):
        try:
            return await call_next(request)
        except QuantaError as error:
            message = str(error)
            if request.url.path.startswith("/api/") or request.url.path == "/download":
                return JSONResponse({"error": message}, status_code=400)
            return page("error.html", status=400, message=message)

    class Guard(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):
            refusal = foreign_request(request.headers, settings.allowed_hosts)
            if refusal:
                return PlainTextResponse(refusal, status_code=403)
            if settings.token is None:
                return await errors(request, call_next)
            in_link = request.query_params.get("token")
            offered = request.headers.get("authorization", "").removeprefix("Bearer ").strip() or \
                request.cookies.get("quanta_db_token") or in_link or ""
            if not hmac.compare_digest(offered.encode(), settings.token.encode()):
                return PlainTextResponse("a token is required (Authorization: Bearer ..., or ?token=...)",
                                         status_code=401)
            if in_link and not request.url.path.startswith("/api/") and request.method == "GET":
                # Trade the token in the address for a cookie, so no page, link or history entry keeps it.
                kept = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{kept}" if kept else ""), status_code=303)
                response.set_cookie("quanta_db_token", settings.token, httponly=True, samesite="strict")
                return response
            return await errors(request, call_next)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        snapshots.close()  # the private catalog copies

    app = Starlette(routes=routes, middleware=[Middleware(Guard)], lifespan=lifespan)
    app.state.snapshots = snapshots
    return app


def _checked_memory_limit(limit: str) -> str:
    import duckdb

    try:
        duckdb.connect(":memory:").execute("SET memory_limit = ?", [limit]).close()
    except duckdb.Error as error:
        raise InputError(f"--memory-limit {limit!r}: {str(error).splitlines()[0]}") from None
    return limit


def _host_name(authority: str) -> str:
    """``"[::1]:8000"`` → ``"::1"``, ``"localhost:8000"`` → ``"localhost"`` (lower case)."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


def foreign_request(headers, allowed_hosts: tuple[str, ...]) -> str | None:
    """Why a request must be refused, or None: a ``Host`` the server does not answer to (a
    DNS-rebinding page reaching a local server under its own name), or an ``Origin`` /
    ``Sec-Fetch-Site`` saying another site's page sent it (a cross-site request would run SQL with
    the user's cookie)."""
    allowed = {h.lower().strip("[]") for h in allowed_hosts}
    host = _host_name(headers.get("host", ""))
    if host not in allowed:
        return f"host {host or '(none)'!r} is not served here (allowed: {', '.join(sorted(allowed))})"
    origin = headers.get("origin")
    if origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower():
        return "cross-site requests are refused"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site requests are refused"
    return None


def _where(request, columns: list[str]) -> str:
    """Column filters of a table page: f.COL=value keeps rows whose COL, as text, equals value."""
    conditions = []
    for key, value in request.query_params.items():
        if key.startswith("f."):
            if key[2:] not in columns:
                raise InputError(f"no column {key[2:]!r} to filter on")
            conditions.append(f"CAST({quote_ident(key[2:])} AS VARCHAR) = {quote_literal(value)}")
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def _table_sql(request, name: str, columns: list[str]) -> tuple[str, str, int]:
    """(rows SQL, count SQL, offset) of table ``name`` with the page's filters (f.COL=value) and
    sort (sort=COL, desc=1), ordered on every column after the sort so pages are stable."""
    where = _where(request, columns)
    sort = request.query_params.get("sort")
    if sort and sort not in columns:
        raise InputError(f"no column {sort!r} to sort by")
    keys = ([f"{quote_ident(sort)} {'DESC' if request.query_params.get('desc') else 'ASC'}"] if sort else []) + \
        [quote_ident(c) for c in columns if c != sort]
    try:
        offset = max(0, int(request.query_params.get("offset", 0)))
    except ValueError:
        raise InputError("offset must be an integer") from None
    source = f"FROM {quote_ident(name)}{where}"
    return f"SELECT * {source} ORDER BY {', '.join(keys)}", f"SELECT count(*) AS n {source}", offset


def resolve_report_caches() -> None:
    """Resolve matplotlib's cache folder now rather than on first use, for a server process the
    kernel then refuses writes outside its scratch folder (``quanta-db serve``); if its font cache
    is missing, matplotlib rebuilds it in memory and only warns that it cannot save it."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.get_cachedir()




@contextlib.contextmanager
def live_server(root, **settings):
    """``serve`` for the store at ``root`` on a free loopback port, in a thread of this process
    (a notebook, a test, a benchmark); yields its base URL and stops it on exit."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(Settings(root, **settings)), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
