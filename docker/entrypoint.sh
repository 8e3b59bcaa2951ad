#!/bin/sh
# The image's entry: run one of the gateway's processes, chosen by the first
# argument (default `web`); further arguments go to that process.
#
#   web      the gateway server (uvicorn, uvloop + httptools; drains on SIGTERM),
#            WEB_CONCURRENCY worker processes
#   worker   the Celery worker: drains the usage stream, rollups, budget periods
#   beat     the Celery beat scheduler (run exactly one)
#   migrate  schema migrations, then the declarative configuration named by
#            GATEWAY_CONFIG (when set), then the shipped model prices
#   manage   any manage.py command, e.g. `manage createsuperuser`
#
# Anything else is run as a command, so `docker run IMAGE sh` works.
set -eu

command="${1:-web}"
[ "$#" -gt 0 ] && shift

# uvicorn spells its log levels in lower case; Python's logging in upper case.
log_level="$(printf '%s' "${LOG_LEVEL:-INFO}" | tr '[:upper:]' '[:lower:]')"

case "$command" in
web)
    # uvicorn (uvloop + httptools) with the gateway's drain on SIGTERM.
    exec python -m gateway_project.serve \
        --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-1}" \
        --proxy-headers --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
        --log-level "$log_level" \
        "$@"
    ;;
worker)
    exec celery -A gateway_project worker --loglevel "$log_level" "$@"
    ;;
beat)
    # The schedule's state goes to the writable var directory: the root
    # filesystem is read-only in the chart.
    exec celery -A gateway_project beat --loglevel "$log_level" \
        --schedule "${GATEWAY_VAR_DIR:-/app/var}/celerybeat-schedule" "$@"
    ;;
migrate)
    python manage.py migrate --noinput "$@"
    if [ -n "${GATEWAY_CONFIG:-}" ]; then
        python manage.py apply_config "$GATEWAY_CONFIG"
    fi
    exec python manage.py load_prices
    ;;
manage)
    exec python manage.py "$@"
    ;;
*)
    exec "$command" "$@"
    ;;
esac
