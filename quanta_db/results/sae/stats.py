"""Streaming statistics of an SAE's features over a corpus, kept on the device.

One pass over batches of (input x, feature activations f, reconstruction x̂). Each batch is read
once densely — for the list of its active (token, feature, activation) entries — and every
per-feature statistic is then computed from that list, whose length is the batch's L0 sum
(tokens × mean L0), not tokens × features. Nothing of size tokens × features reaches host
memory: per feature the accumulators are counts and sums (float64), an exact histogram, the
top-k activations with their token indices, and a uniform random sample of the tokens where the
feature is active (the ``sample_size`` largest of one random key per token), from which the
activation-band examples are drawn at the end. Top-k and sample are merged per batch only for
the entries that beat a feature's current k-th value / key, so after the first batches a merge
touches few entries. A token's random key is a hash of its global index and the seed, so the
statistics of disjoint shards of the tokens merge into exactly those of the whole stream
(:meth:`FeatureStatistics.merge_state`): counts and histograms add, sums add (in float64, up to its
rounding), top-k and sample keep the largest of both.

Metric sums follow sae-lens 6.54 ``evals.get_sparsity_and_variance_metrics``:
l0 = mean over tokens of #{f ≠ 0}; l1 = mean Σ|f|; mse = mean over tokens of ‖x − x̂‖²
(summed over dimensions); explained_variance = 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²) over all
tokens; explained_variance_legacy = mean over tokens of 1 − ‖x − x̂‖² / ‖x − mean_batch(x)‖²
(per batch); cos_sim = mean cos(x, x̂); l2_ratio = mean ‖x̂‖ / ‖x‖ (‖x‖ < 1e-4 counts as 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quanta_db.errors import InputError

SAMPLE_SIZE = 100  # random active tokens kept per feature, for the activation-band examples
# Exact activation histograms on fixed log-spaced bins of |activation| (values beyond the ends
# fall in the first or last bin), so no pass needs to know a feature's maximum first.
HISTOGRAM_EDGES = np.logspace(-4, 4, 33)
# Active entries listed at once (8 bytes of index each): a batch denser than this is read in
# row chunks, so even an SAE that fires everywhere never needs more than ~1 GiB of indices.
MAX_ENTRIES = 2**27
_BUCKETS = 64  # coarse key buckets that thin the first batches' candidates before sorting
_DEVICE_SUMS = ("sum_sq_norm", "sum_sq_residual", "sum_l1", "sum_cos", "sum_l2_ratio", "sum_ev_legacy")
STATE_TENSORS = ("n_active", "sum_act", "top_values", "top_tokens", "sample_keys", "sample_tokens", "sample_values",
                 "histogram")


@dataclass
class MetricSums:
    """Raw float64 sums, stored so a metric can be recomputed if its definition changes."""

    n_tokens: int = 0
    sum_x: np.ndarray | None = None  # Σx per input dimension
    sum_sq_norm: float = 0.0  # Σ‖x‖²
    sum_sq_residual: float = 0.0  # Σ‖x − x̂‖²
    sum_l0: float = 0.0
    sum_l1: float = 0.0
    sum_cos: float = 0.0
    sum_l2_ratio: float = 0.0
    sum_ev_legacy: float = 0.0

    def metrics(self) -> dict[str, float]:
        n = max(self.n_tokens, 1)
        mean_x = (self.sum_x if self.sum_x is not None else np.zeros(1)) / n
        total_variance = self.sum_sq_norm / n - float(np.sum(mean_x**2))
        mse = self.sum_sq_residual / n
        if total_variance < 1e-10:
            explained = 1.0 if mse < 1e-10 else 0.0
        else:
            explained = 1.0 - mse / total_variance
        return {"l0": self.sum_l0 / n, "l1": self.sum_l1 / n, "mse": mse, "explained_variance": explained,
                "explained_variance_legacy": self.sum_ev_legacy / n, "cos_sim": self.sum_cos / n,
                "l2_ratio": self.sum_l2_ratio / n}


class FeatureStatistics:
    """Per-feature and whole-SAE accumulators; call :meth:`add` per batch, then read results."""

    def __init__(self, d_sae: int, device, top_k: int = 20, sample_size: int = SAMPLE_SIZE, seed: int = 0,
                 max_entries: int = MAX_ENTRIES):
        self.device = torch.device(device)
        self.d_sae, self.top_k = d_sae, top_k
        self.max_entries = max_entries
        full = lambda shape, value, dtype=torch.float32: torch.full(shape, value, dtype=dtype, device=self.device)  # noqa: E731
        self.n_active = full((d_sae,), 0, torch.int64)
        self.sum_act = full((d_sae,), 0, torch.float64)
        self.top_values = full((d_sae, top_k), -torch.inf)
        self.top_tokens = full((d_sae, top_k), -1, torch.int64)
        # float64 keys: with 24-bit float32 keys, ties among a million tokens' keys are common
        self.sample_keys = full((d_sae, sample_size), -torch.inf, torch.float64)
        self.sample_tokens = full((d_sae, sample_size), -1, torch.int64)
        self.sample_values = full((d_sae, sample_size), 0)
        self.histogram = full((d_sae, len(HISTOGRAM_EDGES) - 1), 0, torch.int64)
        self._edges = torch.as_tensor(HISTOGRAM_EDGES[1:-1], dtype=torch.float64, device=self.device)
        self.seed = seed
        self.n_tokens, self.sum_l0 = 0, 0
        self._sum_x: torch.Tensor | None = None
        self._sums = {name: full((), 0, torch.float64) for name in _DEVICE_SUMS}  # on the device: no sync per batch

    @torch.no_grad()
    def add(self, x: torch.Tensor, feats: torch.Tensor, x_hat: torch.Tensor, token_index: torch.Tensor) -> None:
        """One batch: ``x`` and ``x_hat`` [B, d_in], ``feats`` [B, d_sae], ``token_index`` [B]
        (a global index of each token, returned in the examples)."""
        keys = self.token_keys(token_index)
        token_index = token_index.to(self.device)
        self._add_metrics(x.float(), x_hat.float())
        for rows in row_chunks(feats, self.max_entries):
            row, feature, value = active_entries(feats[rows])
            tokens = token_index[rows][row]
            self._count(feature, value)
            self._count_histogram(feature, value)
            self._keep_top(feature, value, tokens)
            self._keep_sample(feature, value, keys[rows][row], tokens)

    def _count(self, feature: torch.Tensor, value: torch.Tensor) -> None:
        # index_add_ rather than bincount, which reads its input's maximum back to the host on CUDA
        self.n_active.index_add_(0, feature, torch.ones_like(feature))
        self.sum_act.index_add_(0, feature, value.double())
        self.sum_l0 += len(value)  # Σ_tokens #{f ≠ 0} is the number of active entries
        self._sums["sum_l1"] += value.abs().sum(dtype=torch.float64)

    def _count_histogram(self, feature: torch.Tensor, value: torch.Tensor) -> None:
        # index_add_ adds with atomics, where index_put(accumulate=True) sorts its indices on CUDA;
        # float64 edges and right=True give numpy.histogram's bins [a, b) exactly, edges included.
        n_bins = self.histogram.shape[1]
        bins = torch.bucketize(value.abs().double(), self._edges, right=True)
        self.histogram.view(-1).index_add_(0, feature * n_bins + bins, torch.ones_like(bins))

    def histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feature, bin, count) of the non-empty bins; bin b spans HISTOGRAM_EDGES[b:b + 2]."""
        counts = self.histogram.cpu().numpy()
        feature, bin_index = np.nonzero(counts)
        return feature, bin_index, counts[feature, bin_index]

    def _keep_top(self, feature: torch.Tensor, value: torch.Tensor, tokens: torch.Tensor) -> None:
        keep = self._candidates(self.top_values, feature, value, _value_bucket)
        merge_largest(self.top_values, [self.top_tokens], feature[keep], value[keep], [tokens[keep]])

    def _candidates(self, table: torch.Tensor, feature: torch.Tensor, keys: torch.Tensor, bucket_of) -> torch.Tensor:
        """Indices of the entries that can still enter their feature's row of ``table``: above its
        current last key and — when there are more than a row's width per feature, as in the first
        batches — not below the feature's ``width``-th largest new key by a whole bucket."""
        keep = (keys >= table[:, -1].contiguous()[feature]).nonzero().squeeze(1)  # ties: the smaller token wins
        if len(keep) > table.shape[1] * self.d_sae:
            keep = keep[within_largest(feature[keep], bucket_of(keys[keep]), table.shape[1], self.d_sae)]
        return keep

    def token_keys(self, token_index: torch.Tensor) -> torch.Tensor:
        """Uniform random keys in [0, 1) of the tokens at ``token_index`` (shared by all features): the
        splitmix64 hash of (seed, index), so a token's key does not depend on the batch or shard it
        comes in."""
        index = token_index.cpu().numpy().astype(np.uint64)
        with np.errstate(over="ignore"):
            mixed = _splitmix64(index ^ _splitmix64(np.array([self.seed % 2**64], dtype=np.uint64))[0])
        keys = (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53
        return torch.from_numpy(keys).to(self.device)

    def _keep_sample(self, feature: torch.Tensor, value: torch.Tensor, keys: torch.Tensor,
                     tokens: torch.Tensor) -> None:
        """Bottom-k sampling: per feature, the ``sample_size`` active tokens with the largest
        random keys — a uniform sample of its active tokens (one key per token, independent of
        activity). Once a feature has seen n active tokens, a new one enters with probability
        ``sample_size``/n, so late in a corpus few entries reach the merge."""
        fresh = self._candidates(self.sample_keys, feature, keys, _key_bucket)
        merge_largest(self.sample_keys, [self.sample_tokens, self.sample_values], feature[fresh], keys[fresh],
                      [tokens[fresh], value[fresh]])

    def _add_metrics(self, x: torch.Tensor, x_hat: torch.Tensor) -> None:
        residual_sq = (x - x_hat).pow(2).sum(1)
        norm_x = x.norm(dim=1)
        cos = (x / x.norm(dim=1, keepdim=True)) * (x_hat / x_hat.norm(dim=1, keepdim=True))
        safe_norm = torch.where(norm_x.abs() < 1e-4, torch.ones_like(norm_x), norm_x)
        centered_sq = (x - x.mean(0)).pow(2).sum(1)
        per_token = {"sum_sq_norm": x.double().pow(2).sum(1), "sum_sq_residual": residual_sq.double(),
                     "sum_cos": cos.sum(1).double(), "sum_l2_ratio": (x_hat.norm(dim=1) / safe_norm).double(),
                     "sum_ev_legacy": (1 - residual_sq / centered_sq).double()}
        for name, values in per_token.items():
            self._sums[name] += values.sum().to(self.device)
        batch_sum = x.sum(0, dtype=torch.float64)
        self._sum_x = batch_sum if self._sum_x is None else self._sum_x + batch_sum
        self.n_tokens += x.shape[0]

    # -- shards ------------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything accumulated, on the host (``torch.save``-able), for :meth:`merge_state`."""
        return {**{name: getattr(self, name).cpu() for name in STATE_TENSORS}, "n_tokens": self.n_tokens,
                "sum_l0": int(self.sum_l0), "seed": self.seed,
                "sum_x": None if self._sum_x is None else self._sum_x.cpu(),
                "sums": {name: total.cpu() for name, total in self._sums.items()}}

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> FeatureStatistics:
        d_sae, top_k = state["top_values"].shape
        stats = cls(d_sae, device, top_k=top_k, sample_size=state["sample_keys"].shape[1], seed=state["seed"])
        for name in STATE_TENSORS:
            setattr(stats, name, state[name].to(stats.device))
        stats.n_tokens, stats.sum_l0 = state["n_tokens"], state["sum_l0"]
        stats._sum_x = None if state["sum_x"] is None else state["sum_x"].to(stats.device)
        stats._sums = {name: total.to(stats.device) for name, total in state["sums"].items()}
        return stats

    def merge_state(self, state: dict) -> None:
        """Add the statistics of other tokens (another shard's :meth:`state`): counts, histograms
        and sums add; per feature, top-k and sample keep the largest entries of both, as the
        stream over all tokens would have (entries of equal key: this shard's first)."""
        moved = {name: state[name].to(self.device) for name in STATE_TENSORS}
        for name in ("n_active", "sum_act", "histogram"):
            getattr(self, name).add_(moved[name])
        self.n_tokens += state["n_tokens"]
        self.sum_l0 += state["sum_l0"]
        if state["sum_x"] is not None:
            other = state["sum_x"].to(self.device)
            self._sum_x = other if self._sum_x is None else self._sum_x + other
        for name, total in state["sums"].items():
            self._sums[name] = self._sums[name] + total.to(self.device)
        self.top_values, (self.top_tokens,) = _largest_of_both(self.top_values, [self.top_tokens],
                                                               moved["top_values"], [moved["top_tokens"]])
        self.sample_keys, (self.sample_tokens, self.sample_values) = _largest_of_both(
            self.sample_keys, [self.sample_tokens, self.sample_values], moved["sample_keys"],
            [moved["sample_tokens"], moved["sample_values"]])

    # -- results -----------------------------------------------------------------------------
    def metric_sums(self) -> MetricSums:
        totals = {name: float(total) for name, total in self._sums.items()}
        return MetricSums(n_tokens=self.n_tokens, sum_x=None if self._sum_x is None else self._sum_x.cpu().numpy(),
                          sum_l0=float(self.sum_l0), **totals)

    def max_act(self) -> np.ndarray:
        """Per feature the largest activation over all tokens, zeros of inactive tokens included
        (the top-1 of the active ones, or 0 when some token left the feature at 0)."""
        top = self.top_values[:, 0].cpu().numpy()
        some_inactive = self.n_active.cpu().numpy() < self.n_tokens
        top = np.where(some_inactive, np.maximum(top, 0), top)
        return np.where(np.isfinite(top), top, 0).astype(np.float32)

    def feature_columns(self) -> dict[str, np.ndarray]:
        """n_tokens, n_active, density, mean_act, mean_act_active, max_act, dead per feature."""
        n = self.n_tokens
        n_active = self.n_active.cpu().numpy()
        total = self.sum_act.cpu().numpy()
        return {
            "n_tokens": np.full(len(n_active), n, dtype=np.int64), "n_active": n_active,
            "density": n_active / max(n, 1), "mean_act": total / max(n, 1),
            "mean_act_active": np.divide(total, n_active, out=np.zeros_like(total), where=n_active > 0),
            "max_act": self.max_act(), "dead": n_active == 0,
        }

    def top_examples(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, token indices) [d_sae, k], best first; only active entries are kept (-1 tokens elsewhere)."""
        values, tokens = self.top_values.cpu().numpy(), self.top_tokens.cpu().numpy()
        keep = (values != 0) & np.isfinite(values)
        return np.where(keep, values, 0), np.where(keep, tokens, -1)

    def band_example_arrays(self, n_bands: int = 10, per_band: int = 5) -> dict[str, np.ndarray]:
        """Activation-band examples as arrays ``feature``, ``band``, ``rank`` (within the feature's
        band, in sample order), ``token`` (index) and ``value``: per feature, up to ``per_band``
        random active tokens from each of ``n_bands`` equal-width activation bands (0, max] (band 0
        lowest), as SAEDashboard's quantile-interval examples, drawn from the uniform sample kept
        while streaming. Ordered by feature, band, then sample.

        Vectorised over all features: a loop per feature and band took seconds at 32k features,
        longer than streaming two million tokens through the SAE on a GPU."""
        keys = self.sample_keys.cpu().numpy()
        max_act = self.max_act()
        feature, slot = np.nonzero(np.isfinite(keys) & (max_act > 0)[:, None])
        values = self.sample_values.cpu().numpy()
        band = np.minimum((values[feature, slot] / max_act[feature] * n_bands).astype(int), n_bands - 1)
        order = np.argsort(feature * n_bands + band, kind="stable")  # nonzero gave slots in sample order
        feature, band, slot = feature[order], band[order], slot[order]
        first = np.r_[True, (feature[1:] != feature[:-1]) | (band[1:] != band[:-1])]
        position = np.arange(len(feature))
        rank = position - np.maximum.accumulate(np.where(first, position, 0))
        keep = rank < per_band
        feature, band, slot = feature[keep], band[keep], slot[keep]
        return {"feature": feature, "band": band, "rank": rank[keep], "value": values[feature, slot],
                "token": self.sample_tokens.cpu().numpy()[feature, slot]}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Sebastiano Vigna's splitmix64 finaliser on uint64 (wrapping arithmetic)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _largest_of_both(keys: torch.Tensor, payloads: list[torch.Tensor], other_keys: torch.Tensor,
                     other_payloads: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per row, the ``keys.shape[1]`` largest of both tables' keys and their payloads; among equal
    keys the smaller first payload (token index), as :func:`merge_largest` orders them."""
    both = torch.cat([keys, other_keys], 1)
    tokens = torch.cat([payloads[0], other_payloads[0]], 1)
    by_token = torch.sort(tokens, dim=1, stable=True).indices
    by_key = torch.sort(both.gather(1, by_token), dim=1, descending=True, stable=True).indices
    order = by_token.gather(1, by_key)[:, :keys.shape[1]]
    return both.gather(1, order), [torch.cat([p, q], 1).gather(1, order) for p, q in zip(payloads, other_payloads)]


def row_chunks(feats: torch.Tensor, max_entries: int):
    """Consecutive row ranges of a [B, d_sae] batch with at most ``max_entries`` active entries
    each (a single row above that is a range of its own)."""
    if feats.numel() <= max_entries:  # counting costs a pass; a batch this small cannot exceed the bound
        yield slice(0, feats.shape[0])
        return
    ends = torch.count_nonzero(feats, dim=1).cumsum(0).cpu().numpy()
    start, before = 0, 0
    while start < len(ends):
        stop = max(start + 1, int(np.searchsorted(ends, before + max_entries, side="right")))
        yield slice(start, stop)
        start, before = stop, int(ends[stop - 1])


def active_entries(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, feature, activation as float32) of the nonzero entries of a [B, d_sae] batch, in
    row-major order. NaN is nonzero, so a non-finite activation is always listed, and refused."""
    flat = feats.reshape(-1)
    where = flat.nonzero().squeeze(1)
    value = flat[where].float()
    if not bool(torch.isfinite(value).all()):
        raise InputError("SAE feature activations are not finite (NaN/inf); check the model's dtype and weights")
    return where // feats.shape[1], where % feats.shape[1], value


def within_largest(feature: torch.Tensor, bucket: torch.Tensor, width: int, d: int) -> torch.Tensor:
    """Indices of the entries that may be among their feature's ``width`` largest keys, given
    ``bucket`` in [0, 64) non-decreasing in the key: per feature, the entries in buckets below the
    highest bucket b with at least ``width`` entries in buckets ≥ b are all smaller than those
    ``width`` entries, so they are dropped (exactly; ties cannot cross buckets)."""
    n_buckets = _BUCKETS
    counts = torch.zeros(d * n_buckets, dtype=torch.int64, device=feature.device)
    counts = counts.index_add_(0, feature * n_buckets + bucket, torch.ones_like(bucket)).view(d, n_buckets)
    at_or_above = counts.flip(1).cumsum(1).flip(1)  # non-increasing in the bucket
    cutoff = ((at_or_above >= width).sum(1) - 1).clamp(min=0)
    return (bucket >= cutoff[feature]).nonzero().squeeze(1)


def _value_bucket(value: torch.Tensor) -> torch.Tensor:
    # float32 bit patterns of non-negative values order like the values: sign, exponent and two
    # mantissa bits give four buckets per octave, 2^-8 … 2^8 (negatives and below: bucket 0).
    return ((value.float().view(torch.int32).to(torch.int64) >> 21) - (119 << 2)).clamp(0, _BUCKETS - 1)


def _key_bucket(keys: torch.Tensor) -> torch.Tensor:
    return (keys * _BUCKETS).floor().to(torch.int64).clamp(0, _BUCKETS - 1)  # uniform keys in [0, 1)


def merge_largest(keys_table: torch.Tensor, payload_tables: list[torch.Tensor], feature: torch.Tensor,
                  keys: torch.Tensor, payloads: list[torch.Tensor]) -> None:
    """In place, per row f of ``keys_table`` [d, width] (kept sorted largest first): the ``width``
    largest keys among the row's and the new entries (feature[i] = f, keys[i]), with the matching
    entries of ``payload_tables`` (new values in ``payloads``). Rows without new entries are not read.

    A segmented top-k by three stable sorts (the first payload — the token index — ascending, key
    descending, then row), rank = position − the row's first position: among equal keys the smaller
    token comes first, whatever order the tokens arrived in (so shards of a stream merge into the
    same rows as the whole stream)."""
    if not len(feature):
        return
    d, width = keys_table.shape
    touched = torch.zeros(d, dtype=torch.bool, device=feature.device)
    touched[feature] = True
    rows = touched.nonzero().squeeze(1)
    row_of = torch.cat([rows.repeat_interleave(width), feature])
    all_keys = torch.cat([keys_table[rows].reshape(-1), keys.to(keys_table.dtype)])
    tokens = torch.cat([payload_tables[0][rows].reshape(-1), payloads[0].to(payload_tables[0].dtype)])
    order = torch.argsort(tokens, stable=True)
    order = order[torch.argsort(all_keys[order], descending=True, stable=True)]
    order = order[torch.argsort(row_of[order], stable=True)]
    grouped = row_of[order]
    counts = torch.zeros(d, dtype=torch.int64, device=grouped.device).index_add_(0, grouped, torch.ones_like(grouped))
    rank = torch.arange(len(order), device=order.device) - (torch.cumsum(counts, 0) - counts)[grouped]
    keep = (rank < width).nonzero().squeeze(1)  # every touched row keeps exactly `width` (its old entries count)
    slot_row, slot_rank, picked = grouped[keep], rank[keep], order[keep]
    keys_table[slot_row, slot_rank] = all_keys[picked]
    for table, new in zip(payload_tables, payloads):
        table[slot_row, slot_rank] = torch.cat([table[rows].reshape(-1), new.to(table.dtype)])[picked]


@torch.no_grad()
def decoder_geometry(w_enc: torch.Tensor, w_dec: torch.Tensor, block: int = 4096) -> dict[str, np.ndarray]:
    """Per-feature weight statistics and decoder-pair cosines, in blocks of ``block`` rows.

    ``w_enc`` [d_in, d_sae], ``w_dec`` [d_sae, d_in]. encoder_norm = ‖W_enc[:, i]‖, decoder_norm =
    ‖W_dec[i]‖, enc_dec_cos = cos(W_enc[:, i], W_dec[i]), max_decoder_cos = max over j ≠ i of
    cos(W_dec[i], W_dec[j]); also the mean, 95th percentile and max of the cosines of all distinct
    pairs (percentile from a fixed histogram of 20,001 bins on [-1, 1], so no d_sae² matrix is kept).
    """
    unit = torch.nn.functional.normalize(w_dec.float(), dim=1)
    enc = w_enc.float().T
    d_sae = unit.shape[0]
    max_cos = torch.full((d_sae,), -torch.inf, device=unit.device)
    bins = 20001
    histogram = torch.zeros(bins, dtype=torch.float64, device=unit.device)
    pair_sum, pair_max, n_pairs = 0.0, -np.inf, 0
    for start in range(0, d_sae, block):
        rows = unit[start:start + block]
        cos = rows @ unit.T
        index = torch.arange(start, start + rows.shape[0], device=unit.device)
        cos[torch.arange(rows.shape[0], device=unit.device), index] = -torch.inf
        max_cos[start:start + rows.shape[0]] = cos.max(1).values
        upper = cos[torch.arange(d_sae, device=unit.device)[None, :] > index[:, None]]  # distinct pairs i < j
        if upper.numel():
            pair_sum += float(upper.double().sum())
            pair_max = max(pair_max, float(upper.max()))
            n_pairs += upper.numel()
            histogram += torch.bincount(((upper.clamp(-1, 1) + 1) / 2 * (bins - 1)).round().long(),
                                        minlength=bins).double()
    cumulative = torch.cumsum(histogram, 0) / max(n_pairs, 1)
    p95 = float(torch.searchsorted(cumulative, torch.tensor(0.95, dtype=torch.float64, device=unit.device))) / (bins - 1) * 2 - 1
    return {
        "encoder_norm": enc.norm(dim=1).cpu().numpy(),
        "decoder_norm": w_dec.float().norm(dim=1).cpu().numpy(),
        "enc_dec_cos": torch.nn.functional.cosine_similarity(enc, w_dec.float(), dim=1).cpu().numpy(),
        "max_decoder_cos": max_cos.cpu().numpy() if d_sae > 1 else np.zeros(d_sae, np.float32),
        "dec_cos_mean": pair_sum / max(n_pairs, 1), "dec_cos_p95": p95 if n_pairs else 0.0,
        "dec_cos_max": pair_max if n_pairs else 0.0,
    }


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: all equal, → 1: one holds everything):
    G = Σ_i (2i − n − 1) v_(i) / (n Σ v), with v sorted ascending and i = 1..n."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n == 0 or v.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(np.sum((2 * i - n - 1) * v) / (n * v.sum()))
