#!/usr/bin/env bash
# Start the demo: embedded database, the bundled mock provider, the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${PORT:-8000}
MOCK_PORT=${MOCK_PORT:-9100}

$BIN/python manage.py migrate --noinput -v 0
$BIN/python manage.py collectstatic --noinput -v 0
$BIN/python manage.py load_prices >/dev/null
$BIN/python -m proxy.mock_provider --host 127.0.0.1 --port "$MOCK_PORT" &
MOCK_PID=$!
trap 'kill $MOCK_PID 2>/dev/null || true' EXIT INT TERM

echo
$BIN/python manage.py setup_demo \
  --mock-url "http://127.0.0.1:$MOCK_PORT/v1" --console-url "http://127.0.0.1:$PORT/"
echo
echo "Gateway starting on http://127.0.0.1:$PORT (Ctrl-C stops it)"
GATEWAY_ENABLE_LOGGING=${GATEWAY_ENABLE_LOGGING:-false} LOG_LEVEL=${LOG_LEVEL:-WARNING} \
  $BIN/python -m gateway_project.serve --host 127.0.0.1 --port "$PORT"
