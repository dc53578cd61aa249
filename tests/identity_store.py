"""A store written by every job the demo runs (plus a recluster and option variants), for the
test that job identities never change: ``python -m tests.identity_store --write`` records the
normalised parameters of its runs in ``tests/data/run_identities.json``. That file was written by
release 0.1.0 (commit d296aec); regenerate it only when an identity is meant to change, knowing
that every existing store will then recompute that job."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

from quanta_db.demo.run import CORPUS, DemoShape, inputs_dir, run_demo

GOLDEN = Path(__file__).resolve().parent / "data" / "run_identities.json"
SHAPE = DemoShape(docs_per_subset=12, checkpoint_steps=(0, 2, 4),
                  models={"tiny-32d": dict(d_model=32, n_layers=1, n_heads=2),
                          "tiny-48d": dict(d_model=48, n_layers=1, n_heads=2)},
                  dm_per_category=1, contexts_per_subset=4,
                  clustering=dict(model="tiny-48d", step=4, corpus=CORPUS, loss_below=20.0, exclude_filter="trigram",
                                  n_tokens=40, skip=3, n_clusters=3, n_init=2, seed=0),
                  sae_hook="blocks.0.hook_resid_post", sae_steps=20,
                  since_release_0_1=False)  # jobs the release lacked: their tests pin their reruns
RUN_ID = re.compile(r"^r\d{14}-[0-9a-f]{8}$")


def extra_jobs(store, store_path) -> list:
    """Jobs and options the demo does not run, with parameters a user would give."""
    import quanta_db

    clustering = store.catalog_rows("clusterings")[0]["clustering"]
    pairing = store.query_arrow("SELECT run_id FROM runs WHERE kind = 'feature_pairs'").column(0)[0].as_py()
    matching = store.query_arrow("SELECT run_id FROM runs WHERE kind = 'feature_matches'").column(0)[0].as_py()
    return [
        quanta_db.ingest_contexts(store, CORPUS, "stdlib_short", per_subset=2, length=32, seed=1),
        quanta_db.ingest_recluster(store, clustering, n_clusters=2, n_init=3, seed=1),
        quanta_db.ingest_losses(store, str(inputs_dir(store_path) / "models" / "tiny-32d"), "stdlib_short",
                                name="tiny-32d", steps=[4], shard=(0, 2), progress=False),
        quanta_db.ingest_feature_matches(store, pairing, "greedy", min_corr=0.1),
        quanta_db.ingest_metrics(store, matching, ("svcca", "cka"), permutations=5, seed=3),
    ]


def build(store_path, echo=lambda _: None):
    store = run_demo(store_path, echo=echo, progress=False, shape=SHAPE)
    results = extra_jobs(store, store_path)
    return store, results


def sae_weights_hash(folder: Path) -> str:
    """The release's identity of a saved SAE, recomputed here without quanta-db: sha256 of its
    sae-lens config (sorted JSON), then of each weight's name and float32 bytes, by name."""
    import torch
    from sae_lens import SAE
    from safetensors.torch import load_file

    config = SAE.load_from_disk(str(folder), device="cpu").cfg.to_dict()
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(load_file(str(folder / "sae_weights.safetensors")).items()):
        digest.update(name.encode())
        digest.update(tensor.to(torch.float32).numpy().tobytes())
    return digest.hexdigest()


def _sae_hashes(store) -> dict[str, str]:
    """Each demo SAE's weights hash -> a name for it. The weights come out of a short training
    whose float sums differ between CPUs (their SIMD kernels), so the hash itself is not kept in
    the golden file: that each job hashes the SAE's config and weights the release's way is."""
    saes = inputs_dir(store.root) / "saes"
    return {sae_weights_hash(folder): f"<sha256 of {folder.name}'s config and weights>"
            for folder in sorted(saes.iterdir()) if (folder / "cfg.json").is_file()}


def normalised_identities(store, root: Path) -> list[dict]:
    """(kind, params) of every committed run, with what differs between two machines replaced:
    the folder the store was built in, file times, library versions, run ids (by their run's kind),
    the hashes of the demo's trained SAEs (by the SAE they hash)."""
    kinds = {r["run_id"]: r["kind"] for r in store.query_arrow("SELECT run_id, kind FROM runs").to_pylist()}
    sae_hashes = _sae_hashes(store)

    def clean(value):
        if isinstance(value, dict):
            return {k: "<mtime>" if k == "mtime_ns" else clean(v) for k, v in value.items() if k != "environment"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            if RUN_ID.match(value):
                return f"<run of {kinds.get(value, '?')}>"
            if value in sae_hashes:
                return sae_hashes[value]
            return value.replace(str(root), "<root>")
        return value

    rows = store.query_arrow("SELECT kind, params FROM runs WHERE status = 'committed'").to_pylist()
    found = [{"kind": r["kind"], "params": clean(json.loads(r["params"]))} for r in rows]
    return sorted(found, key=lambda r: json.dumps(r, sort_keys=True))


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        built, _ = build(Path(folder) / "store")
        GOLDEN.write_text(json.dumps(normalised_identities(built, Path(folder).resolve()), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
