"""Streaming statistics of an SAE's features over a corpus, kept on the device.

One pass over batches of (input x, feature activations f, reconstruction x̂), token by token.
Nothing of size tokens × features ever reaches host memory: per feature the accumulators are
counts and sums (float64), the running maximum, the top-k activations with their token
indices, and a uniform random sample of the tokens where the feature is active (bottom-k of a
random key per token), from which activation-band examples are drawn at the end.

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

SAMPLE_SIZE = 100  # random active tokens kept per feature, for the activation-band examples
# Exact activation histograms on fixed log-spaced bins of |activation| (values beyond the ends
# fall in the first or last bin), so no pass needs to know a feature's maximum first.
HISTOGRAM_EDGES = np.logspace(-4, 4, 33)
_MAX_LEVEL = 20  # sampling key levels 1 − 2^-L; past this the float32 keys run out of resolution


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

    def __init__(self, d_sae: int, device, top_k: int = 20, sample_size: int = SAMPLE_SIZE, seed: int = 0):
        self.device = torch.device(device)
        self.top_k = top_k
        zeros = lambda dtype: torch.zeros(d_sae, dtype=dtype, device=self.device)  # noqa: E731
        self.n_active = zeros(torch.int64)
        self.sum_act = zeros(torch.float64)
        self.max_act = torch.full((d_sae,), -torch.inf, device=self.device)
        self.top_values = torch.full((d_sae, top_k), -torch.inf, device=self.device)
        self.top_tokens = torch.full((d_sae, top_k), -1, dtype=torch.int64, device=self.device)
        self.sample_keys = torch.full((d_sae, sample_size), -torch.inf, device=self.device)
        self.sample_tokens = torch.full((d_sae, sample_size), -1, dtype=torch.int64, device=self.device)
        self.sample_values = torch.zeros((d_sae, sample_size), device=self.device)
        self.histogram = torch.zeros((d_sae, len(HISTOGRAM_EDGES) - 1), dtype=torch.int64, device=self.device)
        self._edges = torch.as_tensor(HISTOGRAM_EDGES[1:-1], dtype=torch.float32, device=self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.sums = MetricSums()
        self._sum_x: torch.Tensor | None = None

    @torch.no_grad()
    def add(self, x: torch.Tensor, feats: torch.Tensor, x_hat: torch.Tensor, token_index: torch.Tensor) -> None:
        """One batch: ``x`` and ``x_hat`` [B, d_in], ``feats`` [B, d_sae], ``token_index`` [B]
        (a global index of each token, returned in the examples)."""
        x, x_hat, feats = x.float(), x_hat.float(), feats.float()
        token_index = token_index.to(self.device)
        active = feats != 0
        batch_active = active.sum(0)
        batch_max = feats.max(0).values
        self.n_active += batch_active
        self.sum_act += feats.sum(0, dtype=torch.float64)
        self.max_act = torch.maximum(self.max_act, batch_max)
        self._count_histogram(feats)
        self._keep_top(feats, batch_max, token_index)
        self._keep_sample(feats, batch_active, token_index)
        self._add_metrics(x, feats, x_hat, batch_active)

    def _count_histogram(self, feats: torch.Tensor) -> None:
        # One bincount over feature * n_bins + bin of the active entries: bincount adds with
        # atomics, where index_put(accumulate=True) sorts its indices on CUDA.
        n_bins = self.histogram.shape[1]
        rows, features = (feats != 0).nonzero(as_tuple=True)
        bins = torch.bucketize(feats[rows, features].abs(), self._edges)
        self.histogram += torch.bincount(features * n_bins + bins, minlength=feats.shape[1] * n_bins).view(-1, n_bins)

    def histograms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(feature, bin, count) of the non-empty bins; bin b spans HISTOGRAM_EDGES[b:b + 2]."""
        counts = self.histogram.cpu().numpy()
        feature, bin_index = np.nonzero(counts)
        return feature, bin_index, counts[feature, bin_index]

    def _keep_top(self, feats: torch.Tensor, batch_max: torch.Tensor, token_index: torch.Tensor) -> None:
        # Only features whose batch maximum beats their current k-th value can change; select
        # within the batch on those columns ([k, n] along the token axis), then merge.
        changed = (batch_max > self.top_values[:, -1]).nonzero().flatten()
        if not len(changed):
            return
        k = min(self.top_k, feats.shape[0])
        values, rows = feats.index_select(1, changed).topk(k, dim=0)
        merged, tokens = _merge_top(self.top_values[changed], self.top_tokens[changed], values.T,
                                    token_index[rows].T, self.top_k)
        self.top_values[changed], self.top_tokens[changed] = merged, tokens

    def token_keys(self, n: int) -> torch.Tensor:
        """Uniform random keys of the next ``n`` tokens (shared by all features)."""
        return torch.rand(n, generator=self.generator, device=self.device)

    def _keep_sample(self, feats: torch.Tensor, batch_active: torch.Tensor, token_index: torch.Tensor) -> None:
        """Bottom-k sampling: per feature, the ``sample_size`` active tokens with the largest
        random keys — a uniform sample of its active tokens. One key per token (independent of
        activity) keeps each feature's sample uniform, and lets a feature whose kept keys are all
        above 1 − 2^-L look only at the batch's tokens with keys above that: features are grouped
        by L, so late in a corpus a dense feature reads a small fraction of the rows."""
        keys = self.token_keys(feats.shape[0])
        threshold = self.sample_keys[:, -1]  # kept sorted descending; -inf until full
        level = torch.where(threshold > 0, torch.floor(-torch.log2(1 - threshold.clamp(max=1 - 1e-7))),
                            torch.zeros_like(threshold)).clamp(max=_MAX_LEVEL).to(torch.int64)
        level = torch.where(batch_active > 0, level, -1)
        for value in level.unique().tolist():
            if value >= 0:
                self._merge_sample(feats, keys, token_index, (level == value).nonzero().flatten(), 1 - 2.0**-value)

    def _merge_sample(self, feats, keys, token_index, features, key_floor: float) -> None:
        rows = (keys > key_floor).nonzero().flatten() if key_floor > 0 else None
        block = feats.index_select(1, features) if rows is None else feats.index_select(0, rows).index_select(1, features)
        row_keys = keys if rows is None else keys[rows]
        if not block.shape[0]:
            return
        masked = torch.where(block != 0, row_keys[:, None], -torch.inf)
        batch_keys, where = masked.topk(min(self.sample_keys.shape[1], block.shape[0]), dim=0)
        batch_rows = where if rows is None else rows[where]
        merged, pick = torch.cat([self.sample_keys[features], batch_keys.T], dim=1).topk(self.sample_keys.shape[1], dim=1)
        self.sample_tokens[features] = torch.cat([self.sample_tokens[features], token_index[batch_rows].T], 1).gather(1, pick)
        self.sample_values[features] = torch.cat([self.sample_values[features], block.gather(0, where).T], 1).gather(1, pick)
        self.sample_keys[features] = merged

    def _add_metrics(self, x: torch.Tensor, feats: torch.Tensor, x_hat: torch.Tensor, batch_active: torch.Tensor) -> None:
        s = self.sums
        residual_sq = (x - x_hat).pow(2).sum(1)
        norm_x = x.norm(dim=1)
        batch_sum = x.sum(0, dtype=torch.float64)
        self._sum_x = batch_sum if self._sum_x is None else self._sum_x + batch_sum
        s.n_tokens += x.shape[0]
        s.sum_sq_norm += float(x.double().pow(2).sum())
        s.sum_sq_residual += float(residual_sq.double().sum())
        s.sum_l0 += float(batch_active.sum())  # Σ_tokens #{f ≠ 0} = Σ_features #{active tokens}
        s.sum_l1 += float(feats.abs().sum(1).double().sum())
        cos = (x / x.norm(dim=1, keepdim=True)) * (x_hat / x_hat.norm(dim=1, keepdim=True))
        s.sum_cos += float(cos.sum(1).double().sum())
        safe_norm = torch.where(norm_x.abs() < 1e-4, torch.ones_like(norm_x), norm_x)
        s.sum_l2_ratio += float((x_hat.norm(dim=1) / safe_norm).double().sum())
        centered_sq = (x - x.mean(0)).pow(2).sum(1)
        s.sum_ev_legacy += float((1 - residual_sq / centered_sq).double().sum())

    # -- results -----------------------------------------------------------------------------
    def metric_sums(self) -> MetricSums:
        self.sums.sum_x = None if self._sum_x is None else self._sum_x.cpu().numpy()
        return self.sums

    def feature_columns(self) -> dict[str, np.ndarray]:
        """n_tokens, n_active, density, mean_act, mean_act_active, max_act, dead per feature."""
        n = self.sums.n_tokens
        n_active = self.n_active.cpu().numpy()
        total = self.sum_act.cpu().numpy()
        max_act = self.max_act.cpu().numpy().astype(np.float32)
        return {
            "n_tokens": np.full(len(n_active), n, dtype=np.int64), "n_active": n_active,
            "density": n_active / max(n, 1), "mean_act": total / max(n, 1),
            "mean_act_active": np.divide(total, n_active, out=np.zeros_like(total), where=n_active > 0),
            "max_act": np.where(np.isfinite(max_act), max_act, 0).astype(np.float32), "dead": n_active == 0,
        }

    def top_examples(self) -> tuple[np.ndarray, np.ndarray]:
        """(values, token indices) [d_sae, k], best first; only active entries are kept (-1 tokens elsewhere)."""
        values, tokens = self.top_values.cpu().numpy(), self.top_tokens.cpu().numpy()
        keep = (values != 0) & np.isfinite(values)
        return np.where(keep, values, 0), np.where(keep, tokens, -1)

    def band_examples(self, n_bands: int = 10, per_band: int = 5) -> list[tuple[int, int, int, float]]:
        """(feature, band, token index, activation) samples: per feature, up to ``per_band`` random
        active tokens from each of ``n_bands`` equal-width activation bands (0, max] (band 0 lowest),
        as SAEDashboard's quantile-interval examples, drawn from the uniform sample kept while streaming."""
        keys = self.sample_keys.cpu().numpy()
        tokens = self.sample_tokens.cpu().numpy()
        values = self.sample_values.cpu().numpy()
        max_act = self.max_act.cpu().numpy()
        out = []
        for feature in np.flatnonzero(np.isfinite(keys[:, 0])):
            kept = np.isfinite(keys[feature])
            top = max_act[feature]
            if not top > 0:
                continue
            band = np.minimum((values[feature, kept] / top * n_bands).astype(int), n_bands - 1)
            for b in range(n_bands):
                for token, value in list(zip(tokens[feature, kept][band == b], values[feature, kept][band == b]))[:per_band]:
                    out.append((int(feature), b, int(token), float(value)))
        return out


def _merge_top(values: torch.Tensor, tokens: torch.Tensor, new_values: torch.Tensor, new_tokens: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest of two [d_sae, *] candidate sets, with their token indices."""
    merged, where = torch.cat([values, new_values], dim=1).topk(k, dim=1)
    return merged, torch.cat([tokens, new_tokens], dim=1).gather(1, where)


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
