"""The Generator protocol is complete: load() and close() on every implementation and double."""

from __future__ import annotations

import subprocess
import sys
import threading
import typing

import pytest

from kbqa.api.llm_queue import QueuedGenerator
from kbqa.errors import ModelError
from kbqa.llm import GenerationConfig, Generator, load_generator
from tests.api_fixtures import EchoLLM
from tests.fakes import FakeGenerator, HashEmbedder

GREEDY = GenerationConfig(max_new_tokens=4)


class NoLifecycle:
    """What a generator looked like before load()/close() were in the protocol."""

    name, context_window = "old", 4096

    def count_tokens(self, text):
        return len(text)

    def generate(self, prompt, history=(), config=None):
        return ""

    def stream(self, prompt, history=(), config=None):
        yield from ()


def test_every_generator_satisfies_the_protocol(glm_dir):
    pytest.importorskip("torch")
    gens = [
        load_generator(f"transformers:{glm_dir}"),
        load_generator("openai:http://127.0.0.1:9/v1?model=m"),
        QueuedGenerator(FakeGenerator()),
        FakeGenerator(),
        EchoLLM(),
    ]
    for gen in gens:
        assert isinstance(gen, Generator), type(gen).__name__
        assert gen.load() is gen
    assert not isinstance(NoLifecycle(), Generator)  # load/close are part of the contract


def test_transformers_generator_close_drops_weights_and_use_loads_again(glm_dir):
    pytest.importorskip("torch")
    gen = load_generator(f"transformers:{glm_dir}", load=True)
    first = gen.generate("年假？", (), GREEDY)
    assert gen._model is not None
    gen.close()
    assert gen._model is None
    gen.close()  # twice is fine
    assert gen.generate("年假？", (), GREEDY) == first  # loads again on use
    assert gen._model is not None


def test_queued_generator_loads_and_closes_the_inner_one():
    inner = FakeGenerator()
    queued = QueuedGenerator(inner)
    assert queued.load() is queued and inner.loads == 1
    queued.close()
    queued._worker.join(5)
    assert not queued._worker.is_alive() and inner.closes == 1


class Held(FakeGenerator):
    def __init__(self) -> None:
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def stream(self, prompt, history=(), config=None):
        self.entered.set()
        assert self.release.wait(30)
        yield "done"


def test_queued_generator_close_with_a_backlog_fails_the_waiting_callers():
    inner = Held()
    queued = QueuedGenerator(inner, max_waiting=2)
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        try:
            results[i] = queued.generate("q")
        except ModelError as e:
            results[i] = e

    running = threading.Thread(target=ask, args=(0,))
    running.start()
    assert inner.entered.wait(5)
    waiting = [threading.Thread(target=ask, args=(i,)) for i in (1, 2)]
    for t in waiting:
        t.start()
    while queued.waiting < 2:
        threading.Event().wait(0.01)
    queued.close()  # the queue is full: the waiting callers are told, not left hanging
    for t in waiting:
        t.join(5)
        assert not t.is_alive()
    assert all("shutting down" in str(results[i]) for i in (1, 2))
    assert inner.closes == 0  # the running request still has the model
    inner.release.set()
    running.join(5)
    queued._worker.join(5)
    assert results[0] == "done" and inner.closes == 1


def test_services_close_closes_the_generator(tmp_path):
    from kbqa.api.state import build_services
    from kbqa.config import Settings

    inner = FakeGenerator()
    services = build_services(
        Settings(home=str(tmp_path)), embedder=HashEmbedder(), generator=inner
    )
    assert isinstance(services.generator, QueuedGenerator) and services.generator.inner is inner
    services.close()
    services.generator._worker.join(5)
    assert inner.closes == 1


def test_services_fields_are_typed_without_importing_models_at_load():
    code = (
        "import sys, kbqa.api.state; "
        "heavy = [m for m in ('torch', 'transformers', 'kbqa.embed', 'kbqa.llm') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from kbqa.api import state
    from kbqa.embed.base import Embedder
    from kbqa.prompt import Prompts

    names = {"QueuedGenerator": QueuedGenerator, "Embedder": Embedder, "Prompts": Prompts}
    hints = typing.get_type_hints(state.Services, localns=names)
    assert hints["generator"] == QueuedGenerator | None
    assert hints["embedder"] is Embedder and hints["prompts"] is Prompts
    assert typing.Any not in hints.values()
