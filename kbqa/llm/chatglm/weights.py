"""Stream the tensors of a checkpoint directory one at a time, shard after shard."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kbqa.errors import ModelError


def weight_files(path: Path) -> list[Path]:
    """The checkpoint's shard files in order: safetensors first, else pytorch_model*.bin."""
    path = Path(path)
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = path / index_name
        if index.is_file():
            try:
                names = sorted(
                    set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
                )
            except (OSError, ValueError, KeyError) as e:
                raise ModelError(f"{index} is not a valid shard index: {e}") from None
            missing = [n for n in names if not (path / n).is_file()]
            if missing:
                raise ModelError(
                    f"{path} is missing shard(s) {', '.join(missing)} listed in {index_name}; "
                    "copy the complete model directory"
                )
            return [path / n for n in names]
        if (path / single).is_file():
            return [path / single]
    shards = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not shards:
        raise ModelError(f"{path} has no weights (model*.safetensors or pytorch_model*.bin)")
    return shards


_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
           "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
           "BOOL": "bool"}  # fmt: skip


def read_safetensors(file: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) in file order, each read into its own buffer.

    Plain reads, not a memory map: mapped file pages would count in the process's resident
    memory as they are touched, doubling the peak while a model loads.
    """
    import torch

    with open(file, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        header.pop("__metadata__", None)
        base = 8 + size
        for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            start, end = info["data_offsets"]
            dtype = getattr(torch, _DTYPES[info["dtype"]])
            if end == start:
                yield name, torch.empty(info["shape"], dtype=dtype)
                continue
            buf = bytearray(end - start)
            f.seek(base + start)
            if f.readinto(buf) != end - start:
                raise ValueError(f"tensor {name} runs past the end of the file")
            yield name, torch.frombuffer(buf, dtype=dtype).reshape(info["shape"])


def iter_tensors(path: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) for every stored tensor; only one shard is open at a time.

    safetensors files are read tensor by tensor; a .bin shard is memory-mapped (weights_only:
    a checkpoint is data, never code to unpickle).
    """
    import torch

    for file in weight_files(path):
        try:
            if file.suffix == ".safetensors":
                yield from read_safetensors(file)
            else:
                state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                for name in list(state):
                    yield name, state.pop(name)
                del state
        except Exception as e:  # safetensors and unpickling errors have no common base class
            raise ModelError(
                f"cannot read the weights in {file}: {e}; the file is damaged or incomplete, copy "
                "it again from the original model"
            ) from e
