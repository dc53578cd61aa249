"""A non-editable install ships migrations and saved queries as package data, and one top-level
package: quanta_db (the command line is quanta_db.cli)."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_ships_sql_and_cli_finds_it(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("quanta_db-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")} == {"quanta_db"}
    assert "quanta_db/cli/main.py" in names and "quanta_db/cli/kinds/sae.py" in names
    for sql in ROOT.glob("migrations/*.sql"):
        assert f"quanta_db/migrations/{sql.name}" in names
    queries = sorted(ROOT.glob("queries/*/*.sql"))
    assert queries
    for sql in queries:
        assert f"quanta_db/queries/{sql.relative_to(ROOT / 'queries').as_posix()}" in names
    for page in [*ROOT.glob("quanta_db/**/templates/*.html"), *ROOT.glob("quanta_db/**/templates/*.js"),
                 *ROOT.glob("quanta_db/results/*/*.json"), *ROOT.glob("quanta_db/serve/sql/*.sql")]:
        assert page.relative_to(ROOT).as_posix() in names
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    code = (f"import sys; sys.path = [p for p in sys.path if p not in ('', {str(ROOT)!r})]; "
            f"sys.path.insert(0, {str(target)!r});"
            f"import quanta_db.resources as r; assert str(r.migrations_dir()).startswith({str(target)!r}), "
            "r.migrations_dir();"
            "from quanta_db.cli.main import main; sys.argv = ['quanta-db', '--store', 'st', 'init']; main()")
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "schema version" in result.stdout
