"""Two fresh demo-shaped builds, each in its own interpreter (its own hash seed, its own
memory layout), give bit-identical tokens, losses and cluster labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from quanta_db.environment import library_versions
from quanta_db.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
BUILD = """
import sys
from quanta_db.demo.run import CORPUS, DemoShape, run_demo
shape = DemoShape(docs_per_subset=12, checkpoint_steps=(0, 4), models={"tiny-32d": dict(d_model=32, n_layers=1, n_heads=2)},
                  dm_per_category=1, contexts_per_subset=4,
                  clustering=dict(model="tiny-32d", step=4, corpus=CORPUS, loss_below=20.0, exclude_filter="trigram",
                                  n_tokens=40, skip=3, n_clusters=3, n_init=2, seed=0),
                  sae_hook="blocks.0.hook_resid_post", sae_steps=20)
run_demo(sys.argv[1], echo=lambda _: None, progress=False, shape=shape)
"""
TABLES = {
    "tokens": "SELECT corpus, doc_id, pos, token_id, canonical_idx FROM tokens ORDER BY ALL",
    "vocab": "SELECT * FROM vocab ORDER BY ALL",
    "documents": "SELECT corpus, doc_id, subset, text FROM documents ORDER BY ALL",
    "token_losses": "SELECT model, step, corpus, doc_id, pos, loss_nats FROM token_losses ORDER BY ALL",
    "cluster_labels": "SELECT corpus, doc_id, pos, cluster FROM cluster_labels ORDER BY ALL",
    "sae_features": "SELECT * FROM sae_features ORDER BY ALL",
    "feature_examples": "SELECT * FROM feature_examples ORDER BY ALL",
    "activation_dimensions": "SELECT * FROM activation_dimensions ORDER BY ALL",
    "baseline_metrics": "SELECT m.* EXCLUDE (sum_x) FROM sae_metrics AS m JOIN saes USING (sae) "
                        "WHERE architecture IN ('pca', 'ica', 'nmf') ORDER BY ALL",
}


def test_two_fresh_builds_are_bit_identical(tmp_path):
    builds = [subprocess.Popen([sys.executable, "-c", BUILD, str(tmp_path / name / "store")], cwd=ROOT,
                               stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    for build in builds:
        assert build.wait(timeout=600) == 0, build.stderr.read()[-3000:]
    stores = [Store.open(tmp_path / name / "store") for name in ("a", "b")]
    for name, sql in TABLES.items():
        first, second = (store.query_arrow(sql) for store in stores)
        assert first.num_rows > 0, name
        assert first.equals(second), name
    similarity = [store.artifact(store.query_arrow("SELECT clustering FROM clusterings").column(0)[0].as_py(),
                                 "similarity") for store in stores]
    assert similarity[0].tobytes() == similarity[1].tobytes()
    params = json.loads(stores[0].query_arrow("SELECT params FROM runs WHERE kind = 'clusters'").column(0)[0].as_py())
    assert params["seed"] == 0 and params["environment"] == json.loads(json.dumps(library_versions()))
    training = json.loads((tmp_path / "a" / "store-inputs" / "models" / "tiny-32d" / "step4" / "training.json").read_text())
    assert training["seed"] == 0 and training["libraries"]["torch"] == library_versions()["torch"]
