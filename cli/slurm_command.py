"""``quanta-db slurm ingest JOB ...``: a shardable ingest command submitted as a SLURM split."""

from __future__ import annotations

import dataclasses

import click

from quanta_db.cli.options import pass_store
from quanta_db.cli.params import SPLIT_OPTIONS

# Options of the ingest command that the SLURM form sets itself (the shard) or does not take.
NOT_TAKEN = {*SPLIT_OPTIONS, "shard", "stage_only"}


def _slurm_options(command):
    for option in reversed([
        click.option("--shards", type=int, required=True, help="Split the job into N shards (array indices 0..N-1)."),
        click.option("--partition", help="SLURM partition [default: the cluster's default]."),
        click.option("--gpus-per-shard", type=click.IntRange(0), default=1, show_default=True,
                     help="GPUs each array task requests (--gres=gpu:G; 0: none)."),
        click.option("--max-parallel", type=click.IntRange(1), help="At most K shards at once (--array=...%K)."),
        click.option("--time", help="Time limit of each shard (SLURM's --time, e.g. 4:00:00)."),
        click.option("--dry-run", is_flag=True, help="Print both scripts; submit nothing."),
    ]):
        command = option(command)
    return command


def slurm_form(original: click.Command) -> click.Command:
    """``original``'s options (less its split options) plus SLURM's, submitting instead of running."""
    shardable = original.shardable

    @pass_store
    def submit_split(ref, shards, partition, gpus_per_shard, max_parallel, time, dry_run, **values):
        from quanta_db.scaleout import slurm

        params = shardable.params(values)
        options = slurm.SlurmOptions(partition, gpus_per_shard, max_parallel, time)
        store = ref.open()
        plan = shardable.split(params, shards)
        if dry_run:
            for name, text in slurm.scripts(store, plan, params, shardable.name, options).items():
                click.echo(f"# --- {name} ---\n{text}")
            return
        done = slurm.submit(store, plan, params, shardable.name, options)
        click.echo(f"submitted split {done.split}: array job {done.shards_job} ({plan.shards} shard(s)) and commit job "
                   f"{done.commit_job} after it\nfollow it with: quanta-db --store {store.root} status\n"
                   f"if a shard fails, `quanta-db status` prints the line that resubmits the missing ones")

    fields = {f.name for f in dataclasses.fields(shardable.params_type)}
    command = click.Command(original.name, callback=submit_split, help=original.help,
                            params=[p for p in original.params if p.name in fields and p.name not in NOT_TAKEN])
    return _slurm_options(command)


class SlurmIngest(click.Group):
    """Every shardable ingest command, in its SLURM form."""

    def _ingest(self, ctx):
        from quanta_db.cli.main import ingest

        return ingest

    def list_commands(self, ctx) -> list[str]:
        ingest = self._ingest(ctx)
        return [name for name in ingest.list_commands(ctx) if hasattr(ingest.get_command(ctx, name), "shardable")]

    def get_command(self, ctx, name):
        original = self._ingest(ctx).get_command(ctx, name)
        return slurm_form(original) if hasattr(original, "shardable") else None


@click.group()
def slurm():
    """Submit jobs to SLURM: a split as a job array and a dependent commit job."""


@slurm.group(cls=SlurmIngest, name="ingest")
def slurm_ingest():
    """An ingest job split into --shards N array tasks that stage, then one commit job."""
