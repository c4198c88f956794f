"""Examples shown under every `kbqa` command's --help, kept in one table beside the CLI."""

from __future__ import annotations

import typer

# Command path (as typed after `kbqa`) -> example lines. Each runs as shown on a fresh checkout.
EXAMPLES: dict[str, list[str]] = {
    "ingest": ["kbqa ingest ingest/ --kb demo", "kbqa ingest docs/ --kb hr --include '*.pdf' --json"],
    "search": ["kbqa search '年假有几天' --kb demo -k 3"],
    "ask": ["kbqa ask '出差住宿标准是多少？' --kb demo",
            "kbqa ask '年假有几天' --llm transformers:/models/glm-4-9b-chat --stream"],
    "kb list": ["kbqa kb list", "kbqa --home /data/indexes kb list --json"],
    "kb show": ["kbqa kb show demo"],
    "kb delete": ["kbqa kb delete old-kb        (asks first in a terminal)",
                  "kbqa kb delete old-kb --yes  (scripts)"],
    "kb remove": ["kbqa kb remove demo 报销制度.md"],
    "serve": ["kbqa serve", "KBQA_API_KEYS=s3cret-admin:admin KBQA_PUBLIC_KBS=demo "
              "kbqa serve --host 0.0.0.0 --port 8000"],
    "eval": ["kbqa eval --kb demo --qa questions.jsonl"],
    "qa-pairs": ["kbqa qa-pairs --kb demo --out pairs.jsonl"],
    "finetune": ["kbqa finetune --base-model /models/chatglm3-6b --data pairs.jsonl "
                 "--method lora --output adapters/hr --max-steps 200"],
    "finetune eval": ["kbqa finetune eval --base-model /models/chatglm3-6b "
                      "--adapter adapters/hr --data pairs.jsonl"],
    "feedback export": ["kbqa feedback export --kb demo --out feedback.jsonl",
                        "kbqa feedback export --kb demo --vote down --json"],
}  # fmt: skip


def _epilog(lines: list[str]) -> str:
    # "\b" keeps click from re-wrapping the lines of this paragraph.
    return "Examples:\n\n\b\n" + "\n".join(f"  {line}" for line in lines)


def add_examples(app: typer.Typer, prefix: str = "") -> None:
    """Set each command's epilog from EXAMPLES (groups too: their callback is a command)."""
    for info in app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else "")
        if f"{prefix}{name}" in EXAMPLES:
            info.epilog = _epilog(EXAMPLES[f"{prefix}{name}"])
    for group in app.registered_groups:
        if group.name and f"{prefix}{group.name}" in EXAMPLES:
            group.epilog = _epilog(EXAMPLES[f"{prefix}{group.name}"])
        if group.typer_instance is not None and group.name:
            add_examples(group.typer_instance, f"{prefix}{group.name} ")
