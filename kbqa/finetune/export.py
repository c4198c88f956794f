"""Export a kbqa P-Tuning v2 adapter in ChatGLM's own ``ptuning/`` checkpoint format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kbqa.errors import BadInput, Conflict, NotFound

PREFIX_KEY = "transformer.prefix_encoder.embedding.weight"


def _prefix_table(adapter: Path) -> Any:
    """The adapter's per-layer key/value table [num_virtual_tokens, layers x 2 x kv width].

    peft saves the table itself, also for prefix_projection (its MLP output), so the export is
    always a plain ``embedding`` (ChatGLM's prefix_projection=False).
    """
    from kbqa.llm.adapters import _load_tensors, _weights_file

    file = _weights_file(adapter)
    if file is None:
        raise NotFound(f"{adapter} holds no adapter_model.safetensors or adapter_model.bin")
    tensors = _load_tensors(file)
    key = next((k for k in tensors if k.endswith("prompt_embeddings")), None)
    if key is None:
        raise BadInput(f"{adapter}: no prompt_embeddings tensor; is it a P-Tuning v2 adapter?")
    return tensors[key].float()


def export_ptuning(base_model: Path, adapter: Path, output: Path, overwrite: bool = False) -> dict:
    """Write ``output/config.json`` (base config + pre_seq_len) and ``pytorch_model.bin``."""
    import torch

    base_model, adapter, output = Path(base_model), Path(adapter), Path(output)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise NotFound(f"{adapter} holds no adapter_config.json: not a trained adapter folder")
    peft_cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    if peft_cfg.get("peft_type") != "PREFIX_TUNING":
        raise BadInput(
            f"{adapter} is a {peft_cfg.get('peft_type')} adapter; only P-Tuning v2 "
            "(--method ptuning-v2) exports to ChatGLM's ptuning format"
        )
    base_cfg_file = base_model / "config.json"
    if not base_cfg_file.is_file():
        raise NotFound(f"{base_model} has no config.json: give the base model folder")
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise Conflict(f"output directory {output} exists and is not empty; pass --overwrite")
    table = _prefix_table(adapter)
    config = json.loads(base_cfg_file.read_text(encoding="utf-8"))
    config.update(pre_seq_len=int(table.shape[0]), prefix_projection=False)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    torch.save({PREFIX_KEY: table.contiguous()}, output / "pytorch_model.bin")
    return {"output": str(output), "pre_seq_len": int(table.shape[0]), "width": int(table.shape[1])}
