"""``quanta-db serve``: the store as a read-only web service."""

from __future__ import annotations

import click

from quanta_db.cli.options import pass_store, read_only_process


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--time-limit-ms", type=click.IntRange(1), default=5000, show_default=True, help="Per query.")
@click.option("--max-rows", type=click.IntRange(1), default=1000, show_default=True, help="Rows a page or download shows.")
@click.option("--token", help="Require this secret (Authorization: Bearer ..., or ?token=... once per browser).")
@click.option("--allow-host", multiple=True, metavar="NAME",
              help="Also answer requests addressed to this host name (repeatable; loopback names always; "
                   "with a non-loopback --host, that address and this machine's names too).")
@click.option("--memory-limit", metavar="SIZE",
              help="Memory DuckDB may use for the server's queries, e.g. 2GB (default: a quarter of RAM, at most 4 GiB).")
@click.option("--open", "open_browser", is_flag=True, help="Open the home page in a browser.")
@pass_store
def serve(ref, host, port, time_limit_ms, max_rows, token, allow_host, memory_limit, open_browser):
    """Serve the store read-only: tables, saved analyses with forms, ad-hoc SQL, downloads, reports, JSON API."""
    import uvicorn

    from quanta_db.serve.app import LOOPBACK_HOSTS, Settings, create_app, resolve_report_caches

    store = ref.open()  # checks the schema once, builds missing views
    allowed = [*LOOPBACK_HOSTS, *allow_host]
    if host not in LOOPBACK_HOSTS:
        import socket

        click.echo(f"warning: serving on {host} makes the store readable from other machines"
                   + ("" if token else "; consider --token"), err=True)
        allowed += [h for h in (host, socket.gethostname(), socket.getfqdn()) if h not in ("0.0.0.0", "::")]
    app = create_app(Settings(store.root, time_limit_ms=time_limit_ms, max_rows=max_rows, token=token,
                              allowed_hosts=tuple(allowed), memory_limit=memory_limit))
    url = f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"
    click.echo(f"serving {store.root} at {url} (Ctrl-C stops)")
    if open_browser:  # started before the kernel wall: the browser it starts must write its profile
        import threading
        import webbrowser

        threading.Timer(1.0, webbrowser.open, [url + (f"?token={token}" if token else "")]).start()
    resolve_report_caches()
    read_only_process()  # from here on the kernel refuses this server every write but to its scratch folder
    uvicorn.run(app, host=host, port=port, log_level="warning")
