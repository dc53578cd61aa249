"""Loading an SAE with sae-lens and checking it against the model whose activations it reads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from quanta_db.errors import InputError, first_line
from quanta_db.params import ParameterError
from quanta_db.runtime.hooks import HookPoint, parse_hook_name

SUPPORTED_POINTS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z")


@dataclass
class LoadedSAE:
    sae: object  # sae_lens.SAE
    name: str
    source: str
    sae_id: str | None
    hook_name: str
    config: dict

    @property
    def architecture(self) -> str:
        return self.sae.cfg.architecture()

    @cached_property
    def config_hash(self) -> str:
        """sha256 of the config and float32 weights: what makes two SAEs of one name the same
        (computed on load, before the SAE is cast to the job's dtype)."""
        digest = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode())
        for name, tensor in sorted(self.sae.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes())
        return digest.hexdigest()


def load_sae(source: str, sae_id: str | None, device, name: str | None = None, root=None) -> LoadedSAE:
    """A sae-lens SAE from a folder saved by sae-lens (``SAE.load_from_disk``) or from a release
    and id (``SAE.from_pretrained``), in float32 on ``device``. A relative folder that is not one
    here is looked for under the store ``root`` too (where ``ingest baselines`` keeps its
    dictionaries, recorded relative to the store so that it can move)."""
    from sae_lens import SAE

    from quanta_db.results.baselines import dictionary

    dictionary.register()  # quanta-db's own architectures (pca, ica, nmf) load like any other
    path = Path(source)
    if root is not None and not path.is_absolute() and not path.is_dir() and (Path(root) / path).is_dir():
        path = Path(root) / path
    if path.is_dir():
        if not (path / "cfg.json").is_file():
            raise InputError(f"{source} holds no SAE saved by sae-lens (no cfg.json)")
        try:
            sae = SAE.load_from_disk(str(path), device=str(device))
        except Exception as error:  # sae-lens raises many kinds for a malformed folder
            raise InputError(f"SAE folder {source} does not load: {first_line(error)}") from None
        default_name = path.resolve().name
    elif path.exists() or str(source).startswith((".", "/")):
        raise InputError(f"SAE source {source} is not a folder")
    else:
        if not sae_id:
            raise ParameterError("sae_id", "is required with a sae-lens release name")
        try:
            sae = SAE.from_pretrained(source, sae_id, device=str(device))
        except Exception as error:
            raise InputError(f"SAE {source} / {sae_id} does not load: {first_line(error)}") from None
        default_name = f"{source}/{sae_id}"
    sae = sae.to(torch.float32).eval()
    hook_name = sae.cfg.metadata.hook_name
    if not hook_name:
        raise InputError(f"SAE {source} names no hook (cfg metadata hook_name)")
    if sae.cfg.metadata.hook_head_index is not None:
        raise InputError(f"SAE {source} reads one attention head (hook_head_index); not supported yet")
    loaded = LoadedSAE(sae, name or default_name, str(source), sae_id, hook_name, sae.cfg.to_dict())
    _ = loaded.config_hash  # cached now, before any cast to another dtype
    return loaded


def check_against_model(loaded: LoadedSAE, model, model_name: str) -> HookPoint:
    """The SAE's hook point on ``model``; a hook the model lacks, a width that differs from the
    activation there, or an SAE made for another model is a one-line error."""
    config = model.config
    hook = parse_hook_name(loaded.hook_name, config.num_hidden_layers)
    if hook.point not in SUPPORTED_POINTS:
        raise InputError(f"SAE hook {loaded.hook_name}: SAEs on {hook.point} are not supported "
                         f"(supported: {', '.join(SUPPORTED_POINTS)})")
    width = config.hidden_size  # hook_z: n_heads * d_head, which is the same for GPT-NeoX
    if loaded.sae.cfg.d_in != width:
        raise InputError(f"SAE {loaded.name} has d_in {loaded.sae.cfg.d_in} but {loaded.hook_name} of model "
                         f"{model_name!r} is {width} wide")
    expected = loaded.sae.cfg.metadata.model_name
    if expected and _base_name(expected) != _base_name(model_name):
        raise InputError(f"SAE {loaded.name} was made for model {expected!r}, not {model_name!r} "
                         "(pass --model with that model)")
    return hook


def _base_name(name: str) -> str:
    return str(name).rstrip("/").split("/")[-1].lower()
