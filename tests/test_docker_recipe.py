"""docker/install.sh, the images' one install step, run here in a fresh venv (no Docker engine)."""

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


def test_the_dockerfiles_run_the_install_script_and_drop_root():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (ROOT / "docker" / name).read_text(encoding="utf-8")
        assert "bash /src/docker/install.sh" in text
        assert "\nUSER kbqa\n" in text
        assert "HEALTHCHECK" in text and "/health" in text
        # The model is prepared at build time, into a cache the runtime reads offline.
        assert "KBQA_CACHE=/opt/kbqa/cache" in text and "XDG_CACHE_HOME=/opt/kbqa/cache" in text
        assert "HF_HUB_OFFLINE=1" in text
    assert "whl/cpu" in (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "train" in (ROOT / "docker" / "Dockerfile.gpu").read_text(encoding="utf-8")


def test_compose_mounts_ingest_and_indexes_with_optional_milvus_and_vllm():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    volumes = " ".join(services["kbqa"]["volumes"])
    assert "../ingest:/app/ingest" in volumes and "../indexes:/app/indexes" in volumes
    assert services["milvus"]["profiles"] == ["milvus"]
    assert services["vllm"]["profiles"] == ["vllm"]
    assert services["kbqa"]["build"]["dockerfile"] == "docker/Dockerfile"


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
