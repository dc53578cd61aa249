"""CLI of the universality kind: ingest feature-pairs, feature-matches, metrics; report heatmap."""

from __future__ import annotations

import click

from cli.options import echo_result, force_option, pass_store, progress_option


@click.command("feature-pairs")
@click.option("--sae-a", required=True, help="A registered SAE (see `ingest sae`).")
@click.option("--sae-b", required=True, help="Another registered SAE, on a model with the same tokenizer.")
@click.option("--corpus", required=True, help="Corpus whose tokens both models read.")
@click.option("--n-tokens", type=click.IntRange(1), default=100_000, show_default=True, help="First N tokens.")
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True, help="Partners kept per feature.")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@force_option
@progress_option
@pass_store
def feature_pairs(ref, sae_a, sae_b, corpus, n_tokens, top_k, device, force, progress):
    """Pearson correlation of every feature of SAE A with every feature of SAE B over the same tokens."""
    from quanta_db.results.universality.job import ingest_feature_pairs

    echo_result(ingest_feature_pairs(ref.open(), sae_a, sae_b, corpus, n_tokens=n_tokens, top_k=top_k, device=device,
                                     force=force, progress=progress))


@click.command("feature-matches")
@click.option("--pairing", required=True, help="A feature-pairs run id.")
@click.option("--method", type=click.Choice(["argmax", "one-to-one", "greedy"]), required=True,
              help="argmax: each B feature to its best A feature; one-to-one: the best assignment; greedy: "
                   "repeatedly the best remaining pair.")
@click.option("--min-corr", type=float, help="Drop pairs below this correlation.")
@click.option("--max-many", type=click.IntRange(1), help="Drop A features matched more often than this.")
@click.option("--exclude-dead", is_flag=True, help="Never match features dead on the pairing's corpus.")
@click.option("--token-filter", is_flag=True,
              help="Keep pairs whose top tokens share a token that is not only punctuation, whitespace or special.")
@force_option
@pass_store
def feature_matches(ref, pairing, method, min_corr, max_many, exclude_dead, token_filter, force):
    """Match the features of a pairing one to one, many to one, or greedily."""
    from quanta_db.results.universality.job import ingest_feature_matches

    echo_result(ingest_feature_matches(ref.open(), pairing, method, min_corr=min_corr, max_many=max_many,
                                       exclude_dead=exclude_dead, token_filter=token_filter, force=force))


@click.command("metrics")
@click.option("--matching", required=True, help="A feature-matches run id.")
@click.option("--metrics", default="svcca,rsa,cka,procrustes,mknn", show_default=True, help="Comma-separated.")
@click.option("--permutations", type=click.IntRange(1), default=1000, show_default=True, help="Null samples per baseline.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--subspaces", type=click.Path(exists=True, dir_okay=False),
              help="JSON or YAML file: category -> keywords; metrics also per category (example: "
                   "quanta_db/results/universality/categories_example.json).")
@click.option("--device", default="auto", show_default=True, help="Where the permutation nulls run: cuda, cpu or auto.")
@force_option
@pass_store
def metrics(ref, matching, metrics, permutations, seed, subspaces, device, force):
    """Similarity of the matched decoder spaces, with permutation p-values (random selection, shuffled pairing)."""
    from quanta_db.results.universality.job import ingest_metrics

    echo_result(ingest_metrics(ref.open(), matching, tuple(m.strip() for m in metrics.split(",") if m.strip()),
                               permutations=permutations, seed=seed, subspaces=subspaces, device=device,
                               force=force))




@click.command("heatmap")
@click.option("--metric", required=True, type=click.Choice(["svcca", "svcca_reference", "rsa", "cka", "procrustes", "mknn"]))
@click.option("--baseline", type=click.Choice(["random_selection", "shuffled_pairing"]), default="random_selection",
              show_default=True, help="Null whose p-values mark the cells.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.05, show_default=True, help="Star cells with p below this.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="heatmap.png",
              show_default=True, help="PNG to write.")
@pass_store
def heatmap_report(ref, metric, baseline, alpha, output):
    """PNG heat map of a similarity metric, layer by layer, one panel per model pair (data: layer_heatmap)."""
    from quanta_db.results.universality.heatmap import heatmap_data, render_heatmap_png

    panels = render_heatmap_png(heatmap_data(ref.open(), metric, baseline), output, metric, alpha)
    click.echo(f"wrote {output} ({panels} model pair{'s' if panels != 1 else ''})")


INGEST = [feature_pairs, feature_matches, metrics]
REPORT = [heatmap_report]
