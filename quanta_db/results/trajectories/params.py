"""Parameters of ``ingest trajectories`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import Device, Force, JobParams, ParameterError, param

METHODS = ("pca", "sparse", "hybrid")


@dataclass(frozen=True)
class TrajectoryParams(JobParams, Device, Force):
    """Joint PCA / sparse PCA / hybrid of several models' per-token losses across checkpoints.

    Identity: the parameters below, with the (model, step) rows as resolved; the sparse options
    only for the methods that use them."""

    models: tuple[str, ...] = param(text="names", help="Comma-separated model names (at least two), e.g. sizes of one family.")
    corpus: str = param(help="Corpus (e.g. a context set) whose token losses form the columns.")
    steps: tuple[int, ...] | None = param(None, text="steps", help="Comma-separated steps every model must have "
                                          "[default: each model's steps with losses].")
    tokens: str | None = param(None, help="SQL returning doc_id, pos (and optionally corpus): only these tokens, "
                               "e.g. a filter or a cluster.")
    method: str = param("pca", choices=METHODS, help="hybrid: PCA, then sparse PCA of the residual.")
    components: int = param(10, min=1, help="Components (hybrid: the PCA ones).")
    sparse_components: int | None = param(None, min=1, identity=False,
                                          help="Sparse components of a hybrid [default: --components].")
    alpha: float = param(1.0, min=0, identity=False, help="Sparse PCA L1 weight.")
    ridge_alpha: float = param(0.01, min=0, identity=False, help="Ridge of the sparse scores (sklearn's transform).")
    max_iter: int = param(1000, min=1, help="Iterations of the sparse fit.")
    tol: float = param(1e-6, min=0, help="Tolerance of the sparse fit.")
    seed: int = param(42, help="Seed of the sparse fit.")
    scale: bool = param(False, help="Standardise each token column before fitting.")
    smooth: tuple[float, float] = param((1.0, 2.0), text="sigma_pair", min=0,
                                        help="EARLY,LATE Gaussian sigmas (in checkpoints) of the score curves, "
                                             "linear in between [default: 1,2].")

    def check(self) -> None:
        if self.steps == "all":  # each model's steps with losses, as when left out
            object.__setattr__(self, "steps", None)
        elif isinstance(self.steps, str):
            raise ParameterError("steps", f"must list steps, got {self.steps!r}")

    def identity(self, **derived) -> dict:
        sparse = self.method != "pca"
        return super().identity(sparse_components=self.sparse_components if self.method == "hybrid" else None,
                                alpha=self.alpha if sparse else None, ridge_alpha=self.ridge_alpha if sparse else None,
                                **derived)
