"""Peak memory while converting a ChatGLM3-layout checkpoint onto GlmForCausalLM, and nf4 size.

Run: python benchmarks/bench_chatglm_load.py [--layers 16 --hidden 2048]. A random checkpoint of
about 1B parameters in ChatGLM3's original layout (fused query_key_value, dense_h_to_4h, fp16
safetensors shards) is written to a temp folder; a fresh process loads it through kbqa's
converter and reports its peak resident memory against the final model's size. Then each
fixture family in ../shared/data/chatglm (if present) is loaded with quant=nf4 for its bytes
per linear parameter.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_ARGS: list[str] = []


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_checkpoint(path: Path, layers: int, hidden: int) -> dict:
    """A ChatGLM3-shaped random checkpoint (original names and layout), one shard per 4 layers."""
    import torch
    from safetensors.torch import save_file

    heads, kv_channels, groups = hidden // 128, 128, 2
    ffn, vocab = hidden * 107 // 32, 65024  # ChatGLM3's 13696 / 4096 ratio
    cfg = {"model_type": "chatglm", "_name_or_path": "THUDM/chatglm3-6b", "num_layers": layers,
           "hidden_size": hidden, "ffn_hidden_size": ffn, "num_attention_heads": heads,
           "kv_channels": kv_channels, "multi_query_attention": True,
           "multi_query_group_num": groups, "padded_vocab_size": vocab, "seq_length": 8192,
           "layernorm_epsilon": 1e-5, "rmsnorm": True, "add_qkv_bias": True,
           "add_bias_linear": False, "post_layer_norm": True, "original_rope": True,
           "torch_dtype": "float16", "eos_token_id": 2, "pad_token_id": 0}  # fmt: skip
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(cfg))
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).half()

    qkv = heads * kv_channels + 2 * groups * kv_channels
    shard: dict = {"transformer.embedding.word_embeddings.weight": rnd(vocab, hidden)}
    n = 0
    for i in range(layers):
        p = f"transformer.encoder.layers.{i}."
        shard |= {
            p + "input_layernorm.weight": rnd(hidden) + 1,
            p + "self_attention.query_key_value.weight": rnd(qkv, hidden),
            p + "self_attention.query_key_value.bias": rnd(qkv),
            p + "self_attention.dense.weight": rnd(hidden, heads * kv_channels),
            p + "post_attention_layernorm.weight": rnd(hidden) + 1,
            p + "mlp.dense_h_to_4h.weight": rnd(2 * ffn, hidden),
            p + "mlp.dense_4h_to_h.weight": rnd(hidden, ffn),
        }
        if i % 4 == 3:
            n += 1
            save_file(shard, str(path / f"model-{n:05d}.safetensors"))
            shard = {}
    shard |= {"transformer.encoder.final_layernorm.weight": rnd(hidden) + 1,
              "transformer.output_layer.weight": rnd(vocab, hidden)}  # fmt: skip
    save_file(shard, str(path / f"model-{n + 1:05d}.safetensors"))
    return cfg


def measure_load(path: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import GlmForCausalLM  # noqa: F401  (imports are not the model)

    from kbqa.llm.chatglm.loader import load_chatglm

    cfg = json.loads((Path(path) / "config.json").read_text())
    before = rss_mb()
    model = load_chatglm(Path(path), cfg, "chatglm3", "cpu", dtype=torch.float16)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    params = sum(p.numel() for p in model.parameters())
    return {"params_b": round(params / 1e9, 3), "model_mb": round(size, 1),
            "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
            "peak_over_model": round((peak - before) / size, 3)}  # fmt: skip


def nf4_rows(mid: str) -> list[dict]:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bitsandbytes  # noqa: F401
    import torch
    from bench_llm_memory import linear_bytes
    from transformers import GlmForCausalLM  # noqa: F401

    from kbqa.llm import load_generator
    from kbqa.llm.chatglm.loader import load_chatglm

    cfg = json.loads((Path(mid) / "config.json").read_text())
    before = rss_mb()
    model = load_chatglm(Path(mid), cfg, "chatglm3", "cpu", "nf4")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    fp16 = sum(p.numel() for n, p in model.named_parameters() if "weight" in n) / 2**20
    params, nbytes = linear_bytes(model)
    rows = [{"family": f"chatglm3 layout, {cfg['num_layers']} layers, hidden "
             f"{cfg['hidden_size']}", "linear_params": params,
             "bytes_per_linear_param": round(nbytes / params, 3),
             "load": f"nf4 load of this checkpoint ({round(fp16 * 2):.0f} MB in fp16): final "
                     f"model {size:.0f} MB, peak RSS - before = {peak - before:.0f} MB"}]  # fmt: skip
    del model, torch
    base = Path(os.environ.get("KBQA_SHARED_DATA", ROOT.parent / "shared" / "data")) / "chatglm"
    for family in ("chatglm6b", "chatglm2", "chatglm2-int4", "chatglm3", "glm4-chat"):
        if not (base / family / "model").is_dir():
            continue
        gen = load_generator(f"transformers:{base / family / 'model'}?quant=nf4", load=True)
        params, nbytes = linear_bytes(gen.model)
        rows.append({"family": family, "linear_params": params,
                     "bytes_per_linear_param": round(nbytes / params, 3)})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--measure", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--nf4", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure_load(args.measure)))
        return
    if args.nf4:
        print(json.dumps(nf4_rows(args.nf4)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chatglm3-1b"
        write_checkpoint(path, args.layers, args.hidden)
        out = subprocess.run([sys.executable, __file__, "--measure", str(path)],
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        load = json.loads(out.stdout.strip().splitlines()[-1])
        mid = Path(tmp) / "chatglm3-mid"
        write_checkpoint(mid, 4, 1024)
        out = subprocess.run([sys.executable, __file__, "--nf4", str(mid)], capture_output=True,
                             text=True)  # fmt: skip
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        nf4 = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"ChatGLM3-layout random checkpoint: {args.layers} layers, hidden {args.hidden}, "
          f"{load['params_b']}B parameters, fp16 safetensors, loaded in fp16 on CPU")  # fmt: skip
    print()
    print("| model MB | RSS before load MB | peak RSS MB | (peak - before) / model |")
    print("|---|---|---|---|")
    print(f"| {load['model_mb']} | {load['rss_before_mb']} | {load['peak_rss_mb']} | "
          f"{load['peak_over_model']} |")  # fmt: skip
    print()
    print("nf4 (bitsandbytes, double quantization), converted at load; the tiny fixture families'")
    print("ratio is raised by each tensor's constant quantization state (a 256-entry code table):")
    print()
    print("| family | linear params | bytes / linear param |")
    print("|---|---|---|")
    for r in nf4:
        print(f"| {r['family']} | {r['linear_params']} | {r['bytes_per_linear_param']} |")
    print()
    print(nf4[0]["load"])


if __name__ == "__main__":
    main()
