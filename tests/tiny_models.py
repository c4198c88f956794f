"""Tiny random models built in-process for tests: no downloads, seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

# A ChatGLM-style chat template: [gMASK]<sop> then <|role|>\ncontent turns.
GLM_CHAT_TEMPLATE = (
    "[gMASK]<sop>"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

GLM_SPECIAL_TOKENS = [
    "<unk>",
    "<pad>",
    "<|endoftext|>",
    "[gMASK]",
    "<sop>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
]

DEFAULT_LINES = [
    "已知信息: 公司的年假是每年十五天，入职满一年后开始享受。",
    "根据已知信息回答问题: 年假有几天？",
    "报销需要在费用发生后三十天内提交发票和审批单。",
    "The office opens at nine in the morning and closes at six in the evening.",
    "员工手册规定，加班需要提前申请，并由直属经理批准。",
    "Question answering over a company knowledge base with sources.",
    "0123456789 ,.;:!?()[]{}<>-_=+*/\\'\"",
]


def build_tiny_tokenizer(vocab_lines: list[str] | None = None):
    """A byte-level BPE tokenizer trained on a few lines, as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    lines = list(vocab_lines or DEFAULT_LINES)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Byte-level so any Chinese text round-trips, even characters absent from the lines.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=GLM_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|endoftext|>",
        additional_special_tokens=GLM_SPECIAL_TOKENS[3:],
    )
    fast.chat_template = GLM_CHAT_TEMPLATE
    return fast


def build_tiny_glm(path: Path, vocab_lines: list[str] | None = None) -> Path:
    """Save a 2-layer random GlmForCausalLM and its tokenizer under ``path``; return ``path``.

    Example: ``model_dir = build_tiny_glm(tmp_path / "glm")``, then load it with
    ``AutoModelForCausalLM.from_pretrained(model_dir)``.
    """
    import torch
    from transformers import GlmConfig, GlmForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab_lines)
    eos_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>")]
    config = GlmConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos_ids,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = GlmForCausalLM(config).eval()
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_sentence_transformer(path: Path, vocab_lines: list[str] | None = None) -> Path:
    """Save a 2-layer random BERT with a WordPiece tokenizer and mean pooling; return ``path``.

    Example: ``model_dir = build_tiny_sentence_transformer(tmp_path / "tiny-e5")``, then
    ``SentenceTransformer(str(model_dir))``; embeddings have 32 dimensions.
    """
    import torch
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    # BertNormalizer puts spaces around CJK characters, so Chinese splits into characters.
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        list(vocab_lines or DEFAULT_LINES),
        trainers.WordPieceTrainer(vocab_size=500, special_tokens=specials, show_progress=False),
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer = BertTokenizerFast(tokenizer_object=tok, model_max_length=128)
    tokenizer.save_pretrained(path)
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(path)
    transformer = models.Transformer(str(path), max_seq_length=128)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(path))
    return path
