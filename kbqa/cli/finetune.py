"""Commands `kbqa qa-pairs`, `kbqa finetune` and `kbqa finetune eval`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from kbqa.cli.common import JsonOpt, command, emit
from kbqa.types import Hit


def open_kb_source(name: str) -> tuple[Iterable[Hit], Callable[[str, int], list[Hit]]]:
    """A KB's chunks and the retrieval the service runs on it (tests replace this)."""
    from kbqa.config import load_settings
    from kbqa.embed.factory import load_embedder
    from kbqa.kb import KnowledgeBase
    from kbqa.retrieval.retriever import Retriever

    s = load_settings()
    kb = KnowledgeBase.open(s.home, name)
    embedder = load_embedder(s.embedding_model or kb.manifest.embedding_spec, s.embed_config())
    # The hybrid retrieval `kbqa ask` runs, so distractors are the ones the model will meet.
    retriever = Retriever(kb, embedder, s.retrieve_config())
    return kb.iter_chunks(), lambda q, k: retriever.search(q, k)


def qa_pairs(
    kb: Annotated[str, typer.Option("--kb", help="Knowledge base to derive pairs from.")],
    out: Annotated[Path, typer.Option("--out", help="Output jsonl (prompt/response rows).")],
    llm: Annotated[
        str | None,
        typer.Option(
            help="LLM spec that writes questions for prose; none: offline rules.",
            envvar="KBQA_QA_LLM",
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="Chunks per training prompt.")] = 3,
    refusal_share: Annotated[
        float, typer.Option(help="Share of pairs that also get a refusal sample.")
    ] = 0.1,
    dev_ratio: Annotated[float, typer.Option(help="Share of documents held out as dev.")] = 0.1,
    questions_per_chunk: Annotated[int, typer.Option(help="Most questions per prose chunk.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed for the split and the refusal choice.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Derive Q/A pairs from a knowledge base and write them as training samples."""
    from kbqa.finetune.qa import dedupe, derive_pairs, split_by_document, write_jsonl
    from kbqa.finetune.samples import SampleConfig, build_samples
    from kbqa.prompt import load_prompts

    config = SampleConfig(top_k=top_k, refusal_share=refusal_share, seed=seed)
    chunks, retrieve = open_kb_source(kb)
    generate = None
    if llm:
        from kbqa.llm import load_generator

        generator = load_generator(llm, load=True)
        generate = generator.generate if generator else None
    pairs = dedupe(derive_pairs(chunks, generate, questions_per_chunk=questions_per_chunk))
    pairs = split_by_document(pairs, dev_ratio, seed)
    prompts = load_prompts()
    rows = build_samples(pairs, retrieve, prompts.qa, prompts.refusal, config)
    write_jsonl(rows, out)
    report = {
        "kb": kb,
        "out": str(out),
        "pairs": len(pairs),
        "samples": len(rows),
        "refusal_samples": sum(r["refusal"] for r in rows),
        "by_origin": dict(Counter(p.origin for p in pairs)),
        "train": sum(r["split"] == "train" for r in rows),
        "dev": sum(r["split"] == "dev" for r in rows),
        "documents": dict(Counter(s for s, _ in {(p.split, p.source) for p in pairs})),
    }
    if as_json:
        emit(report)
    else:
        print(
            f"{report['pairs']} pairs ({report['by_origin']}) -> {report['samples']} samples "
            f"({report['refusal_samples']} refusals; {report['train']} train / {report['dev']} dev) "
            f"in {out}"
        )


def _progress_bar(as_json: bool):
    """A rich progress bar on stderr with loss, lr, steps/s and ETA; a no-op in JSON mode."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}  {task.fields[rate]:.2f} steps/s"
        ),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=as_json,
    )
    task = progress.add_task("train", total=None, loss=0.0, lr=0.0, rate=0.0)

    def on_step(log: Any) -> None:
        progress.update(
            task,
            total=log.total_steps,
            completed=log.step,
            loss=log.loss,
            lr=log.lr,
            rate=log.steps_per_second,
        )

    return progress, on_step


def finetune(
    ctx: typer.Context,
    base_model: Annotated[
        Path | None, typer.Option(help="Local model folder (config, weights, tokenizer).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="Training jsonl: prompt/response or ChatGLM3 conversations.")
    ] = None,
    method: Annotated[str, typer.Option(help="lora, qlora or ptuning-v2.")] = "lora",
    output: Annotated[
        Path | None, typer.Option(help="Folder for the adapter, checkpoints, metrics.json.")
    ] = None,
    epochs: Annotated[
        float, typer.Option(help="Passes over the data (ignored with --max-steps).")
    ] = 3.0,
    max_steps: Annotated[
        int | None, typer.Option(help="Optimizer steps; overrides --epochs.")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 2e-4,
    batch_size: Annotated[int, typer.Option(help="Samples per micro-batch.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    max_source_len: Annotated[
        int, typer.Option(help="Most prompt tokens (the middle is cut).")
    ] = 512,
    max_target_len: Annotated[int, typer.Option(help="Most answer tokens.")] = 128,
    scheduler: Annotated[str, typer.Option(help="linear, cosine or constant.")] = "linear",
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps of linear warm-up.")] = 0.0,
    lora_r: Annotated[int, typer.Option(help="LoRA rank.")] = 8,
    lora_alpha: Annotated[int, typer.Option(help="LoRA alpha.")] = 16,
    lora_dropout: Annotated[float, typer.Option(help="LoRA dropout.")] = 0.05,
    target_modules: Annotated[
        str | None, typer.Option(help="Comma-separated LoRA targets; default per architecture.")
    ] = None,
    pre_seq_len: Annotated[int, typer.Option(help="P-Tuning v2 prefix length.")] = 16,
    prefix_projection: Annotated[
        bool, typer.Option(help="P-Tuning v2: an MLP over the prefix.")
    ] = False,
    gradient_checkpointing: Annotated[
        bool, typer.Option(help="Recompute activations to save memory.")
    ] = False,
    bf16: Annotated[
        bool | None,
        typer.Option("--bf16/--no-bf16", help="bf16 autocast; default on a GPU that supports it."),
    ] = None,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 100,
    dev_ratio: Annotated[float, typer.Option(help="Dev share for rows without a split.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed for data order and initialisation.")] = 42,
    resume: Annotated[
        bool, typer.Option(help="Continue from the latest checkpoint in --output.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option(help="Write into an --output folder that is not empty.")
    ] = False,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            help="Run the model folder's own code (not the ChatGLM family: it loads natively)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a LoRA, QLoRA or P-Tuning v2 adapter; `kbqa finetune eval` scores one."""
    if ctx.invoked_subcommand is not None:
        return
    params = dict(ctx.params)
    params.pop("as_json", None)
    _train(params, as_json=as_json)


@command
def _train(params: dict[str, Any], as_json: bool = False) -> None:
    import torch

    from kbqa.finetune.options import FinetuneOptions
    from kbqa.finetune.samples import read_training_file, split_rows
    from kbqa.finetune.train import train

    opts = FinetuneOptions(**params)  # every flag checked here, before a model loads
    bf16 = opts.bf16
    if bf16 is None:  # CPU bf16 autocast is slower than fp32 on most CPUs (no AMX): GPUs only.
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    method, config = opts.method_config(bf16), opts.train_config()
    method.check_base()
    train_rows, dev_rows = split_rows(read_training_file(opts.data), opts.dev_ratio, opts.seed)
    progress, on_step = _progress_bar(as_json)
    with progress:
        metrics = train(method, config, train_rows, dev_rows, on_step=on_step)
    metrics.pop("losses")
    if as_json:
        emit(metrics)
    else:
        print(
            f"{metrics['method']}: {metrics['steps']} steps, loss {metrics['first_loss']:.4f} -> "
            f"{metrics['final_loss']:.4f}, {metrics['steps_per_second']} steps/s, peak "
            f"{metrics['peak_memory_mb']} MB; adapter and metrics.json in {config.output}"
        )


@command
def finetune_eval(
    base_model: Annotated[
        Path, typer.Option(help="The base model folder the adapter was trained on.")
    ],
    adapter: Annotated[
        Path, typer.Option(help="The trained adapter folder (--output of training).")
    ],
    data: Annotated[Path, typer.Option(help="The training jsonl; its dev rows are scored.")],
    max_samples: Annotated[int, typer.Option(help="Most dev rows to score.")] = 50,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per generated answer.")] = 128,
    dev_ratio: Annotated[
        float, typer.Option(help="Dev share for rows without a split (as in training).")
    ] = 0.1,
    seed: Annotated[int, typer.Option(help="The training seed (the same split).")] = 42,
    as_json: JsonOpt = False,
) -> None:
    """Score base model and adapter on the dev split: ROUGE-1/2/L, BLEU-4, answer metrics."""
    from kbqa.errors import BadInput
    from kbqa.finetune.metrics import evaluate
    from kbqa.finetune.samples import read_training_file, split_rows
    from kbqa.prompt import load_prompts

    _, dev = split_rows(read_training_file(data), dev_ratio, seed)
    if not dev:
        raise BadInput(f'{data} has no dev rows: mark rows "split": "dev" or raise --dev-ratio')
    result = evaluate(
        base_model, adapter, dev[:max_samples], load_prompts().refusal, max_new_tokens
    )
    (Path(adapter) / "eval.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    if as_json:
        emit(result)
        return
    for name in ("base", "adapter"):
        scores = "  ".join(f"{k} {v}" for k, v in result[name].items())
        print(f"{name:8s} {scores}")


@command
def finetune_export_ptuning(
    base_model: Annotated[Path, typer.Option(help="The base model folder it was trained on.")],
    adapter: Annotated[Path, typer.Option(help="A --method ptuning-v2 adapter folder.")],
    output: Annotated[Path, typer.Option(help="Where to write the ChatGLM ptuning/ folder.")],
    overwrite: Annotated[bool, typer.Option(help="Write into a non-empty --output.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Export a P-Tuning v2 adapter as ChatGLM's ptuning/ checkpoint (config.json + .bin)."""
    from kbqa.finetune.export import export_ptuning

    result = export_ptuning(base_model, adapter, output, overwrite)
    if as_json:
        emit(result)
    else:
        print(f"ptuning checkpoint (pre_seq_len {result['pre_seq_len']}) in {result['output']}")


def register(app: typer.Typer) -> None:
    """Add `qa-pairs` and the `finetune` group (train by default, `eval` inside) to ``app``."""
    app.command("qa-pairs")(command(qa_pairs))
    group = typer.Typer(invoke_without_command=True, no_args_is_help=False)
    group.callback()(finetune)
    group.command("eval")(finetune_eval)
    group.command("export-ptuning")(finetune_export_ptuning)
    app.add_typer(group, name="finetune")
