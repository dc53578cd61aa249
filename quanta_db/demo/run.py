"""The embedded default: everything the README's first command runs, offline, on CPU.

Builds its inputs next to the store (a corpus from the Python standard library's docstrings
and source as two subsets, DeepMind-mathematics problems, a BPE tokenizer trained on them,
and two tiny Pythia-architecture models trained for a few hundred steps with Pythia-style
log-spaced checkpoints), then runs the same jobs as the `ingest` commands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quanta_db.demo import toy_corpus as toy
from quanta_db.demo.toy_models import gpt_neox_config, train_checkpoints
from quanta_db.results.baselines.job import ingest_baselines
from quanta_db.results.corpus import dm_math_problems as dm_math
from quanta_db.results.corpus.contexts import ingest_contexts
from quanta_db.results.corpus.dm_math import ingest_dm_math
from quanta_db.results.corpus.job import ingest_corpus
from quanta_db.results.filters.job import ingest_filters
from quanta_db.results.geometry.job import ingest_geometry
from quanta_db.results.heads.job import ingest_heads
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.quanta.job import ingest_clusters
from quanta_db.results.sae.job import ingest_sae
from quanta_db.results.trajectories.job import ingest_trajectories
from quanta_db.store.store import Store

CORPUS = "stdlib"
CONTEXTS = "stdlib_contexts"
DM_MATH = "dm_math"
CHECKPOINT_STEPS = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256]
MODELS = {"tiny-64d": dict(d_model=64, n_layers=2, n_heads=4), "tiny-128d": dict(d_model=128, n_layers=3, n_heads=4)}
ANALYSES = {
    "loss_curve": "SELECT * FROM loss_curve WHERE corpus = 'stdlib_contexts' AND step IN (0, 16, 64, 256)",
    "loss_by_subset_and_step": "SELECT * FROM loss_by_subset_and_step WHERE corpus = 'stdlib_contexts' AND step = 256",
    "prompting_summary": "SELECT * FROM prompting_summary WHERE step IN (0, 64, 256)",
    "low_loss_tokens": "SELECT count(*) AS n_tokens_below_0_1_nats, count(DISTINCT token) AS n_distinct "
                       "FROM low_loss_tokens('tiny-128d', 256, threshold := 0.1)",
    "cluster_summary": "SELECT * FROM cluster_summary WHERE cluster < 6",
    "sae_comparison": "SELECT sae, d_sae, n_tokens, l0, explained_variance, ce_loss_score, dead_fraction "
                      "FROM sae_comparison",
    "pair_summary": "SELECT method, sae_a, sae_b, pairs_kept, unique_a_features, mean_corr FROM pair_summary",
    "significance_table": "SELECT sae_a, layer_a, sae_b, layer_b, paired, null_mean, p_value "
                          "FROM significance_table('svcca')",
    "trajectory_explained_variance": "SELECT component, method, explained_variance_ratio, cumulative_ratio, sparsity "
                                     "FROM trajectory_explained_variance",
    "head_seed_table": "SELECT layer, head, mean_mover_dla, mean_dla, induction, ov_copy_vocab "
                       "FROM head_seed_table('tiny-128d', 256, 'stdlib') LIMIT 6",
    "sae_vs_baselines": "SELECT sae, kind, d_sae, explained_variance, ce_loss_score, l0, dead_fraction, dec_cos_p95 "
                        "FROM sae_vs_baselines('tiny-64d', 'blocks.1.hook_resid_post', 'stdlib')",
    "anisotropy_over_training": "SELECT step, participation_ratio, variance_top1, variance_top10, mean_pair_cosine "
                                "FROM anisotropy_over_training('tiny-128d', 'blocks.2.hook_resid_post')",
}
UNIVERSALITY = dict(method="one-to-one", permutations=200)
HEADS = dict(corpus=CORPUS, max_docs=40, induction_length=20)
TRAJECTORIES = dict(corpus=CONTEXTS, method="hybrid", components=3, sparse_components=2, smooth=(0.5, 1.0), device="cpu")
BASELINE_METHODS = ("pca", "ica", "nmf")  # on the first model's SAE hook, K = half its width
ACTIVATION_TOKENS = 20_000  # fitted by the baselines, streamed by geometry
CLUSTERING = dict(model="tiny-128d", step=256, corpus=CORPUS, loss_below=1.0, exclude_filter="trigram", n_tokens=300,
                  skip=3, n_clusters=10, n_init=10, seed=0)


@dataclass(frozen=True)
class DemoShape:
    """How big the demo is; the default is the README's demo, tests build smaller ones alike."""

    docs_per_subset: int = 150
    checkpoint_steps: tuple[int, ...] = tuple(CHECKPOINT_STEPS)
    models: dict = field(default_factory=lambda: dict(MODELS))
    dm_per_category: int = 4
    contexts_per_subset: int = 64
    clustering: dict = field(default_factory=lambda: dict(CLUSTERING))
    sae_hook: str = "blocks.1.hook_resid_post"
    sae_expansion: int = 4  # d_sae = expansion x d_model
    sae_steps: int = 300
    # the jobs added after release 0.1.0: dictionary baselines and activation geometry (the
    # identity test pins the release's jobs and leaves these to their own tests)
    since_release_0_1: bool = True


def inputs_dir(store_path) -> Path:
    """Where the demo keeps what it builds: beside the store, never inside it."""
    store_path = Path(store_path).resolve()
    return store_path.with_name(store_path.name + "-inputs")


def build_inputs(work: Path, echo: Callable[[str], None], shape: DemoShape = DemoShape()) -> dict:
    """Corpus, DM-mathematics problem files, tokenizer and trained models (reused when present)."""
    records = toy.stdlib_documents(shape.docs_per_subset)
    corpus = work / "stdlib.jsonl"
    if not corpus.exists():  # rewriting would change its mtime, and so the ingest's identity
        toy.write_jsonl(records, corpus)
    problems, failed = _dm_math_problems(work / "dm_math", shape.dm_per_category)
    tokenizer = work / "tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        toy.train_tokenizer([r["text"] for r in records] + [p.text for p in problems], tokenizer, vocab_size=1024)
    models = {}
    steps = list(shape.checkpoint_steps)
    for name, dims in shape.models.items():
        models[name] = work / "models" / name
        if not (models[name] / f"step{steps[-1]}" / "config.json").exists():
            echo(f"training {name} for {steps[-1]} steps on CPU")
            _train(models[name], tokenizer, records, problems, dims, steps)
    saes = {}
    for name, dims in shape.models.items():
        saes[name] = work / "saes" / f"{name}-sae"
        if not (saes[name] / "cfg.json").exists():
            echo(f"training an SAE on {name} at {shape.sae_hook} with sae-lens")
            _train_sae(models[name] / f"step{steps[-1]}", tokenizer, records, name, saes[name], shape,
                       shape.sae_expansion * dims["d_model"])
    return {"corpus": corpus, "tokenizer": tokenizer, "models": models, "saes": saes, "dm_math": work / "dm_math",
            "dm_failed": failed}


def _dm_math_problems(folder: Path, per_category: int):
    """Generate once (seeded, so every fresh demo gets the same problems) and keep them in the
    released format, so re-runs of the demo read the same files and are no-ops."""
    if not folder.is_dir():
        problems, failed = dm_math.generate(per_category=per_category, categories=None, seed=0)
        staging = folder.with_name(folder.name + ".tmp")
        staging.mkdir(parents=True, exist_ok=True)
        for category in sorted({p.category for p in problems}):
            lines = [line for p in problems if p.category == category for line in (p.question, p.answer)]
            (staging / (category.replace("/", "__") + ".txt")).write_text("\n".join(lines) + "\n")
        (staging / "FAILED").write_text("".join(f"{c}\t{why}\n" for c, why in sorted(failed.items())))
        staging.rename(folder)
    failed = dict(line.split("\t", 1) for line in (folder / "FAILED").read_text().splitlines() if line)
    return dm_math.read_released(folder, per_category=per_category, categories=None, seed=0), failed


def _train_sae(checkpoint: Path, tokenizer: Path, records, model_name: str, out: Path, shape: DemoShape,
               d_sae: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from quanta_db.results.sae.training import train_sae

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    sequences = [np.array(ids[:512], dtype=np.int64)
                 for ids in tok([r["text"] for r in records], add_special_tokens=False)["input_ids"]]
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32).eval()
    train_sae(model, sequences, shape.sae_hook, model_name, out, d_sae, steps=shape.sae_steps)


def _train(out: Path, tokenizer: Path, records, problems, dims: dict, steps: list[int]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer))
    texts = [r["text"] for r in records] + [p.text for p in problems]
    sequences = [np.array(ids, dtype=np.int64) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    config = gpt_neox_config(len(tok), n_ctx=512, **dims)
    train_checkpoints(config, sequences, out, steps, tokenizer_dir=tokenizer, seq_len=128, batch_size=16)


def run_demo(store_path, echo: Callable[[str], None] = print, progress: bool = True,
             shape: DemoShape = DemoShape()) -> Store:
    """Build inputs, then ingest corpus, contexts, DM mathematics, filters, losses, clusters, SAEs,
    feature pairs, dictionary baselines, activation geometry, trajectories and heads.

    Bit-reproducible on one machine and set of library versions: every input is seeded
    (tokenizer training is deterministic, DM-mathematics generation is made so)."""
    import torch

    from quanta_db.runtime.models import silence_library_progress

    silence_library_progress()
    torch.manual_seed(0)
    work = inputs_dir(store_path)
    echo(f"building demo inputs in {work}")
    inputs = build_inputs(work, echo, shape)
    if inputs["dm_failed"]:
        echo(f"DM mathematics: {len(inputs['dm_failed'])} categories cannot be generated with this numpy/sympy: "
             + ", ".join(sorted(inputs["dm_failed"])))
    store = Store.open(store_path, create=True)
    tokenizer = str(inputs["tokenizer"])
    steps = [
        lambda: [ingest_corpus(store, inputs["corpus"], CORPUS, tokenizer, max_tokens=512, progress=progress)],
        lambda: [ingest_contexts(store, CORPUS, CONTEXTS, per_subset=shape.contexts_per_subset, length=128, seed=0)],
        lambda: [ingest_dm_math(store, DM_MATH, tokenizer, per_category=shape.dm_per_category, source=inputs["dm_math"],
                                       seed=0, few_shot_tokens=512)],
        lambda: [ingest_filters(store, CORPUS, name, progress=progress) for name in ("trigram", "bigram")],
        *[
            (lambda name=name, path=path, corpus=corpus: ingest_losses(store, str(path), corpus, name=name,
                                                                      progress=progress))
            for name, path in inputs["models"].items()
            for corpus in (CORPUS, CONTEXTS, f"{DM_MATH}_zero_shot", f"{DM_MATH}_few_shot")
        ],
    ]
    steps.append(lambda: [ingest_clusters(store, **shape.clustering, progress=progress)])
    steps += [(lambda name=name, path=path: [ingest_sae(store, str(path), CORPUS, name, name=f"{name}-sae",
                                                        step=shape.checkpoint_steps[-1], progress=progress)])
              for name, path in inputs["saes"].items()]
    steps.append(lambda: _universality(store, [f"{name}-sae" for name in inputs["saes"]], progress))
    if shape.since_release_0_1:
        steps.append(lambda: _baselines(store, shape, progress))
        steps.append(lambda: [result for name, dims in shape.models.items()
                              for result in ingest_geometry(store, name, _resid_hooks(dims["n_layers"]), CORPUS,
                                                            n_tokens=ACTIVATION_TOKENS, progress=progress)])
    if len(inputs["models"]) > 1:
        steps.append(lambda: [ingest_trajectories(store, list(inputs["models"]), **TRAJECTORIES)])
    steps.append(lambda: [ingest_heads(store, name, step=shape.checkpoint_steps[-1], progress=progress, **HEADS)
                          for name in inputs["models"]])
    for step in steps:
        for result in step():
            echo(("skipped: " if result.skipped else "") + result.message)
    return store


def _baselines(store: Store, shape: DemoShape, progress: bool) -> list:
    """PCA, ICA and NMF of the first model's SAE hook, scored beside its SAE."""
    name, dims = next(iter(shape.models.items()))
    return [ingest_baselines(store, name, shape.sae_hook, CORPUS, method, step=shape.checkpoint_steps[-1],
                             n_components=dims["d_model"] // 2, n_tokens=ACTIVATION_TOKENS, progress=progress)
            for method in BASELINE_METHODS]


def _resid_hooks(n_layers: int) -> tuple[str, ...]:
    return tuple(f"blocks.{layer}.hook_resid_post" for layer in range(n_layers))


def _universality(store: Store, saes: list[str], progress: bool) -> list:
    """Pair the first two SAEs (the two tiny models'), match them one to one, compare the matched decoders."""
    from quanta_db.results.universality.job import ingest_feature_matches, ingest_feature_pairs, ingest_metrics

    if len(saes) < 2:
        return []
    pairing = ingest_feature_pairs(store, saes[0], saes[1], CORPUS, progress=progress)
    matching = ingest_feature_matches(store, pairing.run_id, UNIVERSALITY["method"], exclude_dead=True)
    return [pairing, matching, ingest_metrics(store, matching.run_id, permutations=UNIVERSALITY["permutations"],
                                              seed=0)]


def write_trajectory_report(store: Store, store_path) -> Path:
    """The trajectory page and figures of the demo's fit, beside the store."""
    from quanta_db.results.trajectories.report import write_report

    fit = store.catalog_rows("trajectory_fits", corpus=TRAJECTORIES["corpus"])[-1]["fit"]
    return write_report(store, fit, inputs_dir(store_path) / "trajectories")[0]


def write_tokens_page(store: Store, store_path, models: list[str]) -> Path:
    """Per-token loss panes of the context set: raw loss, stepwise and model differences at the last step."""
    from quanta_db.results.corpus.token_report import panes_from_options, render_tokens_html

    last = CHECKPOINT_STEPS[-1]
    panes = panes_from_options(CONTEXTS, loss=[f"{m}@{last}" for m in models], stepwise=[f"{models[-1]}@{last}"],
                               model_difference=[f"{models[-1]},{models[0]}@{last}"] if len(models) > 1 else [])
    path = inputs_dir(store_path) / "tokens.html"
    path.write_text(render_tokens_html(store, CONTEXTS, panes, n_docs=12), encoding="utf-8")
    return path


def write_heatmap(store: Store, store_path) -> Path:
    """The SVCCA heat map of the demo's SAE pair, beside the store."""
    from quanta_db.results.universality.heatmap import heatmap_data, render_heatmap_png

    path = inputs_dir(store_path) / "svcca-heatmap.png"
    render_heatmap_png(heatmap_data(store, "svcca"), path, "svcca")
    return path


def write_feature_reports(store: Store, store_path) -> list[Path]:
    """The feature report of each demo SAE, beside the store."""
    from quanta_db.results.sae.report import render_features_html

    paths = []
    for row in store.catalog_rows("saes"):
        path = inputs_dir(store_path) / f"features-{row['sae']}.html"
        path.write_text(render_features_html(store, row["sae"], CORPUS), encoding="utf-8")
        paths.append(path)
    return paths


def write_viewer(store: Store, store_path) -> Path:
    """The cluster viewer of the demo's clustering, beside the store."""
    from quanta_db.results.quanta.viewer import render_clusters_html

    clustering = store.catalog_rows("clusterings", model=CLUSTERING["model"], corpus=CORPUS)[-1]["clustering"]
    path = inputs_dir(store_path) / "clusters.html"
    path.write_text(render_clusters_html(store, clustering, before=200, after=0), encoding="utf-8")
    return path
