"""What `ask` adds around generation: the same prompts through Asker vs `model.generate` alone.

A tiny random GLM (tests/tiny_models.py) answers questions over the sample corpus (HashEmbedder,
so retrieval is cheap and deterministic); for each question the exact text the model received
(`TransformersGenerator.last_prompt`) is then generated again with `model.generate` directly,
greedy, same max_new_tokens. Usage: python benchmarks/bench_llm_overhead.py [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = ["年假有几天？", "加班打车能报销吗？", "VPN账号被锁了怎么办？", "会议室怎么预订？",
             "忘记打卡怎么办？", "公积金比例是多少？", "密码多久换一次？", "入职要带什么材料？"]  # fmt: skip


def main() -> None:
    import torch

    from kbqa.ask import Asker
    from kbqa.config import AskConfig, IngestConfig, SplitConfig
    from kbqa.kb import KnowledgeBase
    from kbqa.llm import load_generator
    from kbqa.prompt import load_prompts
    from tests.fakes import HashEmbedder
    from tests.tiny_models import build_tiny_glm

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    torch.set_num_threads(1)  # both sides alike; a 2-layer model gains nothing from threads
    tmp = Path(tempfile.mkdtemp())
    model_dir = build_tiny_glm(tmp / "glm")
    emb = HashEmbedder()
    split = SplitConfig(chunk_size=120, chunk_overlap=0)
    kb = KnowledgeBase.open_or_create(tmp / "home", "demo", emb, "test", split)
    kb.ingest([ROOT / "ingest"], emb, IngestConfig(split=split))
    gen = load_generator(f"transformers:{model_dir}", load=True)
    config = AskConfig(refusal_threshold=-1.0, faq=False, max_new_tokens=args.max_new_tokens)
    asker = Asker(kb, emb, gen, load_prompts(), config)
    asker.ask(QUESTIONS[0], top_k=2)  # warm-up: tokenizer, first forward pass
    ask_gen, ask_rest, direct = 0.0, 0.0, 0.0
    for _ in range(args.rounds):
        for q in QUESTIONS:
            t = time.perf_counter()
            answer = asker.ask(q, top_k=2)
            total = (time.perf_counter() - t) * 1000
            ask_gen += answer.timings["generate_ms"]
            ask_rest += total - answer.timings["retrieve_ms"]
            ids = gen.tokenizer(gen.last_prompt, return_tensors="pt", add_special_tokens=False)
            t = time.perf_counter()
            with torch.inference_mode():  # as kbqa's generator runs it
                gen.model.generate(
                    **ids, max_new_tokens=args.max_new_tokens, do_sample=False,
                    pad_token_id=gen.tokenizer.pad_token_id,
                )  # fmt: skip
            direct += (time.perf_counter() - t) * 1000
    n = args.rounds * len(QUESTIONS)
    print(f"| measure (mean of {n} questions) | ms |\n| --- | --- |")
    print(f"| `model.generate` on the same rendered prompt | {direct / n:.1f} |")
    print(f"| ask: generate stage | {ask_gen / n:.1f} |")
    print(f"| ask: everything after retrieval | {ask_rest / n:.1f} |")
    print(f"| overhead beyond retrieval | {ask_rest / direct - 1:+.1%} (goal <= +5%) |")


if __name__ == "__main__":
    main()
