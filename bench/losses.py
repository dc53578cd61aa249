"""Benchmark: tokens/s of `ingest losses` (end to end, Parquet and commit included) against the
reference way — one document at a time in float32, as quanta-discovery's evaluate script does —
on the same documents and model shapes, in the same run.

    python bench/losses.py                                   # CPU: pythia-70m shape, small corpus
    python bench/losses.py --device cuda --shapes pythia-70m,pythia-160m,pythia-410m,pythia-1.4b \
        --n-docs 512 --doc-len 1024 --dtypes float32,bfloat16

Random weights (speed does not depend on weight values). On CUDA it also reports achieved FLOP/s
(2 x params x tokens / s) against a large bf16 square matmul measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.demo import toy_corpus as toy  # noqa: E402
from quanta_db.demo.toy_models import pythia_config, random_model  # noqa: E402
from quanta_db.results.corpus.job import prepare_tokenizer, stage_corpus_row, stage_tokenizer, write_corpus_chunk  # noqa: E402
from quanta_db.results.losses.job import ingest_losses  # noqa: E402
from quanta_db.store.store import Store  # noqa: E402


def build_corpus(store: Store, tokenizer_dir: Path, n_docs: int, doc_len: int, vocab: int, seed: int = 0) -> list:
    """A corpus of random token documents (lengths between doc_len/2 and doc_len), written directly."""
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, vocab, size=int(rng.integers(doc_len // 2, doc_len + 1))) for _ in range(n_docs)]
    tok = prepare_tokenizer(store, str(tokenizer_dir))
    with store.begin_run("bench_corpus", {"n": n_docs, "len": doc_len}) as run:
        stage_tokenizer(run, tok)
        counts = write_corpus_chunk(run, "bench", np.arange(n_docs), ["random"] * n_docs, [None] * n_docs, docs, 0)
        stage_corpus_row(run, "bench", "random", tok.name, tok.vocab_hash, doc_len, counts)
        run.commit()
    return docs


def reference_losses(model_dir: Path, docs, device, out: Path) -> float:
    """quanta-discovery style: load the model, one document at a time, full logits, float32,
    then save the losses (np.save); returns seconds for all of it."""
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    losses = []
    with torch.no_grad():
        for doc in docs:
            ids = torch.from_numpy(doc.astype(np.int64))[None].to(device)
            logits = model(ids).logits
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), ids[0, 1:], reduction="none")
            losses.append(loss.cpu().numpy())
    np.save(out, np.concatenate(losses))
    return time.perf_counter() - start


def matmul_flops(device, n: int = 8192, repeats: int = 20) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="pythia-70m")
    parser.add_argument("--dtypes", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-docs", type=int, default=16)
    parser.add_argument("--doc-len", type=int, default=512)
    parser.add_argument("--reference-docs", type=int, default=None, help="Docs timed for the reference (default all).")
    parser.add_argument("--tf32", action="store_true", help="Allow TF32 matmuls for float32 (both ways).")
    parser.add_argument("--compile", action="store_true", help="ingest losses --compile (CUDA only).")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    peak = matmul_flops(device) if device.type == "cuda" else None
    if peak:
        print(f"bf16 8192^3 matmul: {peak / 1e12:.0f} TFLOP/s on {torch.cuda.get_device_name(device)}")
    print("| shape | dtype | tokens | ingest tok/s | reference tok/s | ratio | ingest TFLOP/s | % of matmul |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer_dir = toy.train_tokenizer([r["text"] for r in toy.stdlib_documents(20)], tmp / "tok", 512)
        for shape in args.shapes.split(","):
            config = pythia_config(shape)
            model_dir = tmp / shape
            model = random_model(config)
            n_params = sum(p.numel() for p in model.parameters())
            model.save_pretrained(model_dir)
            del model
            for dtype in args.dtypes.split(","):
                store = Store.init(tmp / f"store-{shape}-{dtype}")
                docs = build_corpus(store, tokenizer_dir, args.n_docs, args.doc_len, config.vocab_size)
                n_tokens = sum(len(d) - 1 for d in docs)
                start = time.perf_counter()
                ingest_losses(store, str(model_dir), "bench", name=shape, dtype=dtype, device=args.device,
                              tokenizer=str(tokenizer_dir), compile_model=args.compile, progress=False)
                ours = n_tokens / (time.perf_counter() - start)
                ref_docs = docs[: args.reference_docs] if args.reference_docs else docs
                seconds = reference_losses(model_dir, ref_docs, device, tmp / "reference.npy")
                reference = sum(len(d) - 1 for d in ref_docs) / seconds
                flops = 2 * n_params * ours
                share = f"{100 * flops / peak:.0f}%" if peak else "-"
                print(f"| {shape} | {dtype} | {n_tokens:,} | {ours:,.0f} | {reference:,.0f} | {ours / reference:.2f}x "
                      f"| {flops / 1e12:.2f} | {share} |", flush=True)
                print(json.dumps({"benchmark": "losses", "device": str(device), "shape": shape, "dtype": dtype,
                                  "tokens": n_tokens, "ours_tokens_per_s": round(ours),
                                  "reference_tokens_per_s": round(reference), "ratio": round(ours / reference, 2),
                                  "tflops": round(flops / 1e12, 3),
                                  "matmul_peak_share": round(flops / peak, 3) if peak else None}), flush=True)


if __name__ == "__main__":
    main()
