"""Job parameters declared once (quanta_db.params): the Python API, the CLI options and the
validation all come from each job's dataclass, and a refused value is named as its caller knows it."""

from __future__ import annotations

import inspect
import math
from dataclasses import fields

import click
import pytest
from click.testing import CliRunner

import quanta_db
from quanta_db.cli.main import cli
from quanta_db.cli.params import SPLIT_OPTIONS, TEXT_TYPES
from quanta_db.errors import InputError
from quanta_db.kinds import job, jobs
from quanta_db.params import ParameterError, spec_of
from quanta_db.results.quanta.params import ClusterParams
from quanta_db.results.sae.params import SaeParams
from quanta_db.results.universality.params import METRIC_NAMES, MetricParams

COMMANDS = {"ingest_corpus": "corpus", "ingest_contexts": "contexts", "ingest_dm_math": "dm-math",
            "ingest_filters": "filters", "ingest_losses": "losses", "ingest_clusters": "clusters",
            "ingest_recluster": "recluster", "ingest_sae": "sae", "ingest_heads": "heads",
            "ingest_trajectories": "trajectories", "ingest_feature_pairs": "feature-pairs",
            "ingest_feature_matches": "feature-matches", "ingest_metrics": "metrics",
            "ingest_baselines": "baselines", "ingest_geometry": "geometry"}


def _command(name: str) -> click.Command:
    ingest = cli.commands["ingest"]
    return ingest.get_command(click.Context(ingest), name)


def test_every_job_and_its_command_come_from_one_dataclass():
    assert sorted(jobs()) == sorted(COMMANDS)
    for name, command_name in COMMANDS.items():
        function = job(name)
        params_type = function.params_type
        declared = sorted(fields(params_type), key=lambda f: f.kw_only)  # as the dataclass's __init__ takes them
        assert list(inspect.signature(function).parameters) == ["store", *(f.name for f in declared)], name
        options = {p.name for p in _command(command_name).params} - {"help"}
        if command_name == "clusters":  # also takes recluster's --from-similarity, its spelling before the split
            options.remove("from_similarity")
        if "stage_only" in options:  # a shardable job: how to run its split, not what it computes
            options -= set(SPLIT_OPTIONS)
        assert options == {f.name for f in fields(params_type) if spec_of(f).cli}, name
        assert _command(command_name).help == params_type.__doc__.split("\n\n")[0], name


def test_library_errors_name_the_parameter_and_the_cli_its_flag(corpus_store):
    with pytest.raises(ParameterError, match="^top_k must be at least 1, got 0$"):
        SaeParams("sae", "toy", "model", top_k=0)
    with pytest.raises(ParameterError, match="^loss_below must be a finite number, got nan$"):
        quanta_db.ingest_clusters(corpus_store, "tiny", 8, "toy", loss_below=math.nan)
    with pytest.raises(ParameterError, match="^metrics must be one of svcca, .*, got 'nope'$"):
        MetricParams("r0", ("cka", "nope"))
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(corpus_store.root), "ingest", "sae", "--sae", "x", "--model", "m",
                                 "--corpus", "toy", "--top-k", "0"])
    assert result.exit_code == 1 and result.output == "Error: --top-k must be at least 1, got 0\n"
    result = runner.invoke(cli, ["--store", str(corpus_store.root), "ingest", "contexts", "--from", "toy",
                                 "--name", "toy"])
    assert result.output == "Error: --name 'toy' is the source corpus itself; give the contexts another name\n"


def test_metric_names_are_the_metrics_computed():
    from quanta_db.results.universality.metrics import METRICS

    assert tuple(METRICS) == METRIC_NAMES


def test_identity_keys_are_declared_keys_plus_what_the_job_derives():
    params = ClusterParams("m", 8, "c", loss_below=1.0, loss_unit="bits", device="cpu", grad_memory_gb=2.0)
    identity = params.identity(loss_below_nats=params.loss_below_nats)
    assert identity["loss_below_nats"] == pytest.approx(math.log(2))
    assert {"loss_below", "loss_unit", "device", "grad_memory_gb", "force", "progress"}.isdisjoint(identity)
    assert identity["exclude_params"] == list(ClusterParams.__dataclass_fields__["exclude_params"].default)


@pytest.mark.parametrize(("text_type", "text", "value"), [
    ("shard", "1/4", (1, 4)), ("steps", "512,0,512", (0, 512)), ("steps", "all", "all"),
    ("int_pair", "3,90", (3, 90)), ("sigma_pair", "0.5,2", (0.5, 2.0)), ("names", " a, ,b ", ("a", "b")),
])
def test_text_types_read_what_the_flags_document(text_type, text, value):
    assert TEXT_TYPES[text_type].convert(text, None, None) == value


@pytest.mark.parametrize(("text_type", "text"), [("shard", "4/4"), ("shard", "1-2"), ("steps", "1,x"),
                                                 ("int_pair", "3"), ("sigma_pair", "a,b")])
def test_text_types_refuse_in_one_line(text_type, text):
    with pytest.raises(InputError):
        TEXT_TYPES[text_type].convert(text, None, None)


def test_errors_raised_inside_a_job_are_named_by_flag_on_the_command_line(corpus_store, toy_model):
    import torch

    runner = CliRunner()
    base = ["--store", str(corpus_store.root), "ingest", "losses", "--model", str(toy_model["dir"]), "--corpus", "toy"]
    result = runner.invoke(cli, [*base, "--batch-size", "0"])
    assert result.output == "Error: --batch-size must be 'auto' or a positive integer, got '0'\n"
    if torch.cuda.is_available():
        return  # the device error below needs a machine without CUDA
    result = runner.invoke(cli, [*base, "--steps", "8", "--device", "cuda:1", "--no-progress"])
    assert result.output == "Error: --device cuda:1 was asked for but no CUDA device is available\n"
    with pytest.raises(ParameterError, match="^device cuda:1 was asked for"):
        quanta_db.ingest_losses(corpus_store, str(toy_model["dir"]), "toy", steps=[8], device="cuda:1", progress=False)
