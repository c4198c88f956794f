"""docker/: install.sh in a fresh venv, serve.sh, compose.yaml and .dockerignore (no Docker engine).

tests/test_docker_image.py builds and runs the image itself (-m docker).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docker" / "install.sh"


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose` (v1.29, Debian's); None without either."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_compose_config_validates_with_kbqa_alone_and_optional_milvus_and_vllm(tmp_path):
    """`docker compose config`: the file parses and interpolates; needs the tool, not an engine."""
    compose = _compose_command()
    if compose is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    yaml = pytest.importorskip("yaml")
    env = {**os.environ, "KBQA_INDEXES_DIR": str(tmp_path), "KBQA_PORT": "18000"}
    env.pop("KBQA_BIND", None)

    def config(*extra: str) -> dict:
        result = subprocess.run(
            [*compose, "-f", str(ROOT / "docker" / "compose.yaml"), *extra, "config"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return yaml.safe_load(result.stdout)

    kbqa = config()["services"]["kbqa"]
    assert kbqa["build"]["dockerfile"] == "docker/Dockerfile"
    assert kbqa["read_only"] is True and kbqa["tmpfs"] == ["/tmp"]
    # Published on this host's loopback by default (v1 prints a string, v2 a mapping).
    port = kbqa["ports"][0]
    assert (
        port.startswith("127.0.0.1:18000:8000")
        if isinstance(port, str)
        else (port["host_ip"], str(port["published"]), port["target"])
        == ("127.0.0.1", "18000", 8000)
    )
    volumes = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in kbqa["volumes"]]
    assert any(v.startswith(f"{tmp_path}:/app/indexes") for v in volumes), volumes
    assert any(v.endswith("/ingest:/app/ingest:ro") for v in volumes) or any(
        isinstance(v, dict) and v["target"] == "/app/ingest" and v.get("read_only")
        for v in kbqa["volumes"]
    ), volumes
    everything = config("--profile", "milvus", "--profile", "vllm")["services"]
    assert everything["milvus"]["profiles"] == ["milvus"]
    assert everything["vllm"]["profiles"] == ["vllm"]


def _serve(tmp_path: Path, env: dict[str, str], kbqa: str | None = None):
    """docker/serve.sh, the images' command, with `kbqa` on PATH (a stand-in printing its args)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "kbqa"
    fake.write_text(kbqa or '#!/bin/sh\necho "kbqa $*"\n', encoding="utf-8")
    fake.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith("KBQA_")}
    return subprocess.run(
        ["sh", str(ROOT / "docker" / "serve.sh")],
        env={**base, "PATH": f"{bindir}:/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_serve_script_keeps_the_api_inside_the_container_without_keys(tmp_path):
    result = _serve(tmp_path, {"KBQA_API_KEYS": ""})
    assert result.returncode == 0
    assert result.stdout.strip() == "kbqa serve --host 127.0.0.1 --port 8000"
    assert "no API keys" in result.stderr and "127.0.0.1 only" in result.stderr


def test_serve_script_serves_every_address_with_keys_and_honours_host_and_port(tmp_path):
    keyed = _serve(tmp_path, {"KBQA_API_KEYS": "k1:admin", "KBQA_SERVE_PORT": "9000"})
    assert keyed.stdout.strip() == "kbqa serve --host 0.0.0.0 --port 9000"
    assert keyed.stderr == ""
    keyfile = _serve(tmp_path, {"KBQA_API_KEYS_FILE": "/run/secrets/keys.json"})
    assert keyfile.stdout.strip() == "kbqa serve --host 0.0.0.0 --port 8000"
    chosen = _serve(tmp_path, {"KBQA_HOST": "::1"})
    assert chosen.stdout.strip() == "kbqa serve --host ::1 --port 8000"


def test_serve_script_leaves_the_guard_to_kbqa_serve(tmp_path):
    """KBQA_HOST beyond loopback without keys: the real `kbqa serve` refuses, as outside docker."""
    real = f"#!/bin/sh\nexec {sys.executable} -c 'from kbqa.cli import main; main()' \"$@\"\n"
    env = {"KBQA_HOST": "0.0.0.0", "PYTHONPATH": str(ROOT), "KBQA_HOME": str(tmp_path / "home")}
    result = _serve(tmp_path, env, kbqa=real)
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without API keys" in " ".join(result.stderr.split())


def test_model_layer_has_every_kbqa_module_that_e5_rebuild_imports():
    """The Dockerfiles' model layer copies only these modules; an import of another breaks it."""
    import ast

    copied = {"kbqa", "kbqa.errors", "kbqa.embed", "kbqa.embed.e5_rebuild"}
    for name in ("__init__.py", "errors.py", "embed/__init__.py", "embed/e5_rebuild.py"):
        tree = ast.parse((ROOT / "kbqa" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kbqa"):
                assert node.module in copied, f"kbqa/{name} imports {node.module}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("kbqa") or alias.name in copied
    for dockerfile in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "docker" / dockerfile).read_text(encoding="utf-8")
        assert "COPY kbqa/__init__.py kbqa/errors.py /src/kbqa/" in text
        assert "COPY kbqa/embed/__init__.py kbqa/embed/e5_rebuild.py /src/kbqa/embed/" in text


def test_dockerignore_is_an_allowlist_without_tests_venv_indexes_or_benchmarks():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {
        "pyproject.toml", "README.md", "kbqa", "docker/wheels",
        "docker/install.sh", "docker/serve.sh", "docker/slim.sh",
    }  # fmt: skip
    assert "**/__pycache__" in lines


def test_install_script_refuses_a_folder_without_pyproject(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT)],
        env={**os.environ, "KBQA_SRC": str(tmp_path), "KBQA_VENV": str(tmp_path / "venv")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "no pyproject.toml" in result.stderr
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["wheels"], {}, "unknown step 'wheels'"),
        ([], {"KBQA_TORCH_BUILD": "rocm"}, "KBQA_TORCH_BUILD=rocm"),
    ],
)
def test_install_script_refuses_a_bad_step_or_torch_build(tmp_path, args, env, message):
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, "KBQA_SRC": str(ROOT), "KBQA_VENV": str(tmp_path / "venv"), **env},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "venv").exists()


def test_slim_script_refuses_a_folder_without_torch(tmp_path):
    result = subprocess.run(
        ["sh", str(ROOT / "docker" / "slim.sh"), str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "no torch under" in result.stderr


@pytest.mark.slow
def test_install_script_in_a_fresh_venv_builds_a_working_offline_kbqa():
    """The image's recipe: venv, kbqa[milvus] from the checkout, e5 prepared into the cache.

    torch==2.13.0 resolves to the local CPU wheel through pip's configured find-links, so no
    KBQA_TORCH_INDEX here; pip's cache makes a second run fast.
    """
    # Not tmp_path: pytest runs started meanwhile on a shared machine rotate old basetemps away,
    # which deleted this venv mid-run once.
    with tempfile.TemporaryDirectory(prefix="kbqa-recipe-") as tmp:
        _recipe(Path(tmp))


def _recipe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    # The build context the Dockerfile copies, and nothing else.
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kbqa", src / "kbqa", ignore=shutil.ignore_patterns("__pycache__"))
    venv, cache = tmp_path / "venv", tmp_path / "cache"
    env = {
        **os.environ,
        "KBQA_SRC": str(src),
        "KBQA_VENV": str(venv),
        "KBQA_CACHE": str(cache),
        "KBQA_EXTRAS": "milvus",
        "PYTHON": sys.executable,
    }
    env.pop("VIRTUAL_ENV", None)
    subprocess.run(["bash", str(SCRIPT)], env=env, check=True, timeout=1800)
    assert list(cache.glob("kbqa/models/*/modules.json")), "the e5 rebuild is not in the cache"

    # Now as the container runs: offline, the prepared cache, a fresh KB home, milvus-lite.
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "leave.md").write_text("# 年假\n\n员工入职满一年后，每年享有5天带薪年假。\n", "utf-8")
    run_env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(cache),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "KBQA_HOME": str(tmp_path / "indexes"),
    }
    kbqa = str(venv / "bin" / "kbqa")
    for store in (["--store", "faiss"], ["--store", "milvus", "--milvus-uri", "m.db"]):
        kb = store[1]
        subprocess.run(
            [kbqa, "ingest", str(docs), "--kb", kb, "--json", *store],
            env=run_env, cwd=tmp_path, check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        out = subprocess.run(
            [kbqa, "search", "年假有几天", "--kb", kb, "--json"],
            env=run_env, cwd=tmp_path, check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert "5天带薪年假" in out.stdout
    # The run wrote nothing new into the cache: the build-time model was used as is.
    assert not list(cache.glob("kbqa/models/.*"))
