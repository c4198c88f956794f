#!/bin/sh
# Trim the CPU image's virtual environment (argument: its path) of what kbqa never runs there,
# to keep the image under 2.5 GB. A step of its own after install.sh's, so those stay cached.
set -eu
venv="$1"
site="$(echo "$venv"/lib/python3*/site-packages)"
[ -d "$site/torch" ] || { echo "slim.sh: no torch under $site" >&2; exit 2; }
# milvus-lite (and pyarrow, which only it needs): embedded Milvus files (`--milvus-uri x.db`).
# The image reaches a Milvus server (compose's milvus profile) through pymilvus, which stays.
"$venv/bin/python" -m pip uninstall -y milvus-lite pyarrow
# torch's C++ test programs, headers and protoc: for building extensions and testing torch only.
rm -rf "$site/torch/test" "$site/torch/include"
find "$site/torch/bin" -type f ! -name torch_shm_manager -delete
du -sh "$venv"
