"""Resident memory of a random GLM loaded plain, nf4 and int8 through the transformers generator.

Run: python benchmarks/bench_llm_memory.py [--layers 8 --hidden 1024]; each mode loads in a fresh
process so one mode's allocations do not hide another's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def linear_bytes(model) -> tuple[int, int]:
    """(parameters, bytes) of the decoder's linear layers, quantization state included."""
    import torch

    params = nbytes = 0
    for module in model.modules():
        if (
            not isinstance(module, torch.nn.Linear)
            or module.out_features == model.config.vocab_size
        ):
            continue  # lm_head is never quantized; count the decoder's linears only
        params += module.in_features * module.out_features
        w = module.weight
        nbytes += w.numel() * w.element_size()
        state = getattr(w, "quant_state", None)
        if state is not None:  # nf4: absmax (uint8 with double quantization) and its own state
            for t in (state.absmax, getattr(state.state2, "absmax", None), getattr(state.state2, "code", None), state.code):  # fmt: skip
                if t is not None:
                    nbytes += t.numel() * t.element_size()
        scb = getattr(w, "SCB", None)
        if scb is not None:  # int8: one scale per row
            nbytes += scb.numel() * scb.element_size()
    return params, nbytes


def measure(path: str, quant: str) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch  # noqa: F401  (imports are not the model: count them before loading)
    import transformers  # noqa: F401

    if quant != "plain":
        import bitsandbytes  # noqa: F401
    from kbqa.llm import load_generator

    before = rss_mb()
    gen = load_generator(f"transformers:{path}" + ("" if quant == "plain" else f"?quant={quant}"))
    gen.load()
    after = rss_mb()
    params, nbytes = linear_bytes(gen.model)
    return {
        "mode": quant,
        "rss_delta_mb": round(after - before, 1),
        "linear_params_m": round(params / 1e6, 2),
        "linear_mb": round(nbytes / 2**20, 1),
        "bytes_per_linear_param": round(nbytes / params, 3),
    }


def build(path: Path, layers: int, hidden: int) -> None:
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import build_tiny_glm

    build_tiny_glm(path)  # the tokenizer and a config to overwrite
    cfg = GlmConfig.from_pretrained(path)
    heads = hidden // 64
    cfg.update(dict(hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                    num_attention_heads=heads, num_key_value_heads=max(1, heads // 4), head_dim=64))  # fmt: skip
    GlmForCausalLM(cfg).to(torch.float32).save_pretrained(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--measure", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "glm"
        build(path, args.layers, args.hidden)
        rows = []
        for mode in ("plain", "nf4", "int8"):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", str(path), mode],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"random GLM, {args.layers} layers, hidden {args.hidden}, CPU")
    print("| mode | RSS delta MB | linear params (M) | linear MB | bytes / linear param |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['rss_delta_mb']} | {r['linear_params_m']} | {r['linear_mb']} | {r['bytes_per_linear_param']} |")  # fmt: skip


if __name__ == "__main__":
    main()
