"""The public Python API: the README's example runs as written."""

import os
import re
from pathlib import Path

import quanta_db
from quanta_db.results.corpus.job import ingest_corpus

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_example() -> str:
    text = README.read_text()
    block = re.search(r"<!-- python-example:begin -->\n```python\n(.*?)```\n<!-- python-example:end -->", text, re.S)
    return block.group(1)


def test_readme_python_example_runs(tmp_path, toy_inputs, toy_model, capsys):
    """The example against a store shaped like the demo's (same corpus and model names)."""
    store = quanta_db.open_store(tmp_path / "demo-store", create=True)
    ingest_corpus(store, toy_inputs["corpus"], "stdlib_contexts", str(toy_inputs["tokenizer"]), max_tokens=64,
                  progress=False)
    (tmp_path / "demo-store-inputs" / "models").mkdir(parents=True)
    os.symlink(toy_model["dir"], tmp_path / "demo-store-inputs" / "models" / "tiny-64d")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(_readme_example(), "README example", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "tiny-64d step 8" in printed and "mean_loss_nats" in printed
    curve = store.query_df("SELECT step FROM loss_curve WHERE model = 'tiny-64d' ORDER BY step")
    assert curve.step.tolist() == toy_model["steps"]
