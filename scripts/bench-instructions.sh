#!/usr/bin/env bash
# Instructions per governed request (a rate limit and a budget on the key,
# usage recorded, the access log on), counted by callgrind (repeatable to about
# 2% whatever else the machine does, unlike wall-clock figures), for the
# checkout in $1 (default: this one):
#   scripts/bench-instructions.sh [CHECKOUT] [REQUESTS]
# PYTHON names the interpreter (default: the checkout's .venv). Needs valgrind.
# BENCH_REDIS_URL (say redis://127.0.0.1:6379/15) runs the gateway in cluster
# mode against that Redis database, which is emptied before and after: give it
# a database number nothing else uses.
set -euo pipefail
SRC=${1:-.}; N=${2:-1000}
PY=${PYTHON:-$(cd "$SRC" && pwd)/.venv/bin/python}
VAR=$(mktemp -d /tmp/ir-var-XXXX)
export GATEWAY_VAR_DIR=$VAR DATABASE_URL=sqlite:///$VAR/db.sqlite3 LOG_LEVEL=WARNING
MODE=embedded
if [ -n "${BENCH_REDIS_URL:-}" ]; then
  # Under callgrind everything runs ~50 times slower: a Redis call needs time.
  export REDIS_URL=$BENCH_REDIS_URL GATEWAY_REDIS_PREFIX=gwir GATEWAY_REDIS_TIMEOUT_SECONDS=60 MODE=cluster
  redis-cli -u "$REDIS_URL" flushdb >/dev/null
fi
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ "$MODE" = cluster ]; then redis-cli -u "$REDIS_URL" flushdb >/dev/null || true; fi
}
trap cleanup EXIT
cd "$SRC"
$PY manage.py migrate --noinput -v 0
$PY manage.py load_prices >/dev/null
MP=$((20000 + RANDOM % 20000)); GP=$((MP + 1))
$PY -m proxy.mock_provider --host 127.0.0.1 --port $MP --record-limit 0 >/dev/null 2>&1 &
PIDS+=($!)
KEY=$($PY manage.py setup_demo --mock-url http://127.0.0.1:$MP/v1 --console-url http://x/ 2>&1 | grep -o 'sk-gw-[A-Za-z0-9]*' | head -1)
$PY - <<PYEOF
import django, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
django.setup()
from governance import services as g
from keys.models import VirtualKey
key = VirtualKey.objects.first()
g.rate_limit_create(owner=key, metric="requests", limit=10**9, window_seconds=60)
g.budget_create(owner=key, amount_micros=10**15, period="1d")
PYEOF
if [ -f gateway_project/serve.py ]; then
  CMD=(-m gateway_project.serve --host 127.0.0.1 --port $GP --log-level warning)
else
  CMD=(-m uvicorn gateway_project.asgi:application --host 127.0.0.1 --port $GP --loop uvloop --http httptools --no-access-log --log-level warning)
fi
valgrind --tool=callgrind --callgrind-out-file=$VAR/cg.out --instr-atstart=yes $PY "${CMD[@]}" > $VAR/gw.log 2>&1 &
GW=$!; PIDS+=($GW)
for i in $(seq 1 1800); do curl -s -o /dev/null http://127.0.0.1:$GP/healthz && break; sleep 0.5; done
curl -s -o /dev/null http://127.0.0.1:$GP/healthz || { echo "the gateway did not start: $VAR/gw.log" >&2; exit 1; }
load() {
$PY - "$1" <<PYEOF
import asyncio, sys, aiohttp
n = int(sys.argv[1])
async def main():
    async with aiohttp.ClientSession() as s:
        sem = asyncio.Semaphore(4)
        async def one():
            async with sem:
                async with s.post("http://127.0.0.1:$GP/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}, headers={"authorization": "Bearer $KEY"}) as r:
                    await r.read(); assert r.status == 200, r.status
        await asyncio.gather(*(one() for _ in range(n)))
asyncio.run(main())
PYEOF
}
load 300   # warm up: imports, first connections, caches
callgrind_control -z $GW >/dev/null
load $N
callgrind_control -d $GW >/dev/null
sleep 1
TOTAL=$(for f in $VAR/cg.out*; do grep -m1 "^summary:" $f 2>/dev/null || grep -m1 "^totals:" $f; done | awk '{print $2}' | tail -1)
echo "$SRC: $((TOTAL / N)) instructions per request ($MODE mode, callgrind, $N requests, 4 at a time)"
