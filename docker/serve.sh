#!/bin/sh
# The images' command: `kbqa serve`, so that its guard applies — a server reachable beyond its
# own machine needs API keys (KBQA_API_KEYS or KBQA_API_KEYS_FILE).
#
# In a container "beyond loopback" is every published port, so:
#   keys configured  -> kbqa serve --host 0.0.0.0: the published port answers, keys required;
#   no keys          -> kbqa serve --host 127.0.0.1: the API answers inside the container only
#                       (health check, `docker exec`), and nothing is served on published ports;
#   KBQA_HOST=ADDR   -> kbqa serve --host ADDR, and kbqa serve itself refuses a non-loopback ADDR
#                       without keys (`kbqa serve --allow-insecure` is the explicit way round).
# KBQA_SERVE_PORT (default 8000) is the port inside the container. Extra arguments go to kbqa serve.
set -eu
port="${KBQA_SERVE_PORT:-8000}"
if [ -n "${KBQA_HOST:-}" ]; then
    host="$KBQA_HOST"
elif [ -n "${KBQA_API_KEYS:-}" ] || [ -n "${KBQA_API_KEYS_FILE:-}" ]; then
    host=0.0.0.0
else
    host=127.0.0.1
    echo "kbqa-serve: no API keys (KBQA_API_KEYS / KBQA_API_KEYS_FILE): serving on the container's" \
        "127.0.0.1 only, so published ports answer nothing; set keys to serve beyond the container" >&2
fi
# exec: kbqa (uvicorn) becomes PID 1 and gets docker stop's SIGTERM itself, and shuts down cleanly.
exec kbqa serve --host "$host" --port "$port" "$@"
