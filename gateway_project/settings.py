"""Settings, all read from the environment.

Embedded mode (the default) needs nothing: SQLite in ``var/``, in-process
counters, an in-memory channel layer, Celery tasks run in process. Setting
``DATABASE_URL`` and ``REDIS_URL`` switches to cluster mode. With
``GATEWAY_ENV=production`` the process refuses to start on insecure settings.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from gateway_project.environment import env, env_bool, env_float, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("GATEWAY_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

GATEWAY_ENV = (env("GATEWAY_ENV", "development") or "development").lower()
PRODUCTION = GATEWAY_ENV == "production"

# Secrets that are only acceptable on a developer's machine. In development a
# random value is generated once and kept in var/, so encrypted provider keys
# survive restarts; production must supply its own.
INSECURE_SECRET_PREFIX = "insecure-"


def _development_secret(name: str) -> str:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / f"{name}.secret"
    if not path.exists():
        path.write_text(INSECURE_SECRET_PREFIX + secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _required_secret(name: str) -> str:
    value = env(name)
    if PRODUCTION:
        if not value or value.startswith(INSECURE_SECRET_PREFIX) or len(value) < 32:
            raise ImproperlyConfigured(
                f"{name} must be set to a random value of at least 32 characters "
                "when GATEWAY_ENV=production"
            )
        return value
    return value or _development_secret(name.lower())


SECRET_KEY = _required_secret("DJANGO_SECRET_KEY")
GATEWAY_ENCRYPTION_KEY = _required_secret("GATEWAY_ENCRYPTION_KEY")
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be off when GATEWAY_ENV=production")
    if "*" in ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must name the gateway's hosts in production")
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_prometheus",
    "keys",
    "proxy",
    "governance",
    "audit",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.audit_context_middleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "gateway_project.urls"
ASGI_APPLICATION = "gateway_project.asgi.application"
WSGI_APPLICATION = "gateway_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "keys.console.navigation",
            ],
        },
    },
]

# --- Database --------------------------------------------------------------

DATABASE_URL = env("DATABASE_URL")
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        # A file beside it for tests, shared with the gateway processes they start.
        test_name = f"{DATABASES['default']['NAME']}.test"
        DATABASES["default"].update(
            CONN_MAX_AGE=0, OPTIONS=SQLITE_OPTIONS, TEST={"NAME": test_name}
        )
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "gateway.sqlite3",
            # The test database lives in a file so that gateway processes
            # started by the tests open the same database.
            "TEST": {"NAME": str(VAR_DIR / "test-gateway.sqlite3")},
            "OPTIONS": SQLITE_OPTIONS,
        }
    }
EMBEDDED_DATABASE = not DATABASE_URL
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, channel layer, Celery -------------------------------------------

REDIS_URL = env("REDIS_URL")
CLUSTER_MODE = bool(REDIS_URL)
GATEWAY_REDIS_PREFIX = env("GATEWAY_REDIS_PREFIX", "gw") or "gw"
# Redis connections per gateway process; requests wait for a free one.
GATEWAY_REDIS_MAX_CONNECTIONS = env_int("GATEWAY_REDIS_MAX_CONNECTIONS", 256)
# While Redis cannot be reached, requests under a limit or budget are refused
# with 503 ("closed", the default: limits and budgets stay exact) or served
# with limits counted in each process and added to Redis when it is back
# ("open": available, limits approximate). governance.outage.
GATEWAY_REDIS_FAILURE_MODE = (env("GATEWAY_REDIS_FAILURE_MODE", "closed") or "closed").lower()
if GATEWAY_REDIS_FAILURE_MODE not in ("open", "closed"):
    raise ImproperlyConfigured("GATEWAY_REDIS_FAILURE_MODE must be 'open' or 'closed'")
# How long an admission waits for Redis before it counts as down, and the
# longest pause between two attempts to reach it again.
GATEWAY_REDIS_TIMEOUT_SECONDS = env_float("GATEWAY_REDIS_TIMEOUT_SECONDS", 0.5)
GATEWAY_REDIS_RETRY_MAX_SECONDS = env_float("GATEWAY_REDIS_RETRY_MAX_SECONDS", 5.0)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{GATEWAY_REDIS_PREFIX}:channels"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 240)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task taken by a worker that died is handed out again after this long
# (seconds): longer than the time limit, so a slow task is not run twice.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT * 2}

# --- The data plane ---------------------------------------------------------

# Largest request body the inference endpoints accept (bytes); larger is 413.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 4 * 1024 * 1024)
# Slow or oversized requests (gateway_project.http_limits): the headers must
# arrive within this long of the connection (408), be at most this large
# (431), and the body must follow within this long (408).
GATEWAY_HEADER_TIMEOUT_SECONDS = env_float("GATEWAY_HEADER_TIMEOUT_SECONDS", 10.0)
GATEWAY_MAX_HEADER_BYTES = env_int("GATEWAY_MAX_HEADER_BYTES", 64 * 1024)
GATEWAY_BODY_TIMEOUT_SECONDS = env_float("GATEWAY_BODY_TIMEOUT_SECONDS", 30.0)
# Largest non-streamed upstream answer relayed (bytes); larger is a 502.
GATEWAY_MAX_RESPONSE_BYTES = env_int("GATEWAY_MAX_RESPONSE_BYTES", 64 * 1024 * 1024)
# How often each process checks whether the configuration changed (seconds).
# In cluster mode a Redis notification refreshes at once; the poll is a net.
GATEWAY_SNAPSHOT_POLL_SECONDS = env_float(
    "GATEWAY_SNAPSHOT_POLL_SECONDS", 5.0 if CLUSTER_MODE else 1.0
)
# How long an unknown key stays known as unknown before the database is asked again.
GATEWAY_NEGATIVE_CACHE_SECONDS = env_float("GATEWAY_NEGATIVE_CACHE_SECONDS", 30.0)
# Database lookups per second and process for keys not in the snapshot; beyond
# them an unknown key is refused without one.
GATEWAY_KEY_LOOKUPS_PER_SECOND = env_int("GATEWAY_KEY_LOOKUPS_PER_SECOND", 50)
# After this many invalid keys from one address within the window, the address
# gets 429 until the window ends (per process; 0 turns it off).
GATEWAY_AUTH_FAILURE_LIMIT = env_int("GATEWAY_AUTH_FAILURE_LIMIT", 30)
GATEWAY_AUTH_FAILURE_WINDOW_SECONDS = env_float("GATEWAY_AUTH_FAILURE_WINDOW_SECONDS", 60.0)
# Requests refused before a key was found written to the usage ledger, per
# process and minute; the rest are only counted (proxy.auth_failures).
GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE = env_int("GATEWAY_LEDGER_UNAUTHENTICATED_PER_MINUTE", 60)
# Upstream timeouts (seconds).
GATEWAY_UPSTREAM_CONNECT_TIMEOUT = env_float("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", 10.0)
GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT = env_float("GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT", 300.0)
GATEWAY_UPSTREAM_READ_TIMEOUT = env_float("GATEWAY_UPSTREAM_READ_TIMEOUT", 300.0)
GATEWAY_UPSTREAM_TOTAL_TIMEOUT = env_float("GATEWAY_UPSTREAM_TOTAL_TIMEOUT", 600.0)
# While a stream waits for its first token, an SSE comment goes to the client
# this often (seconds; 0: never) so that idle timeouts of proxies do not cut it.
GATEWAY_SSE_KEEPALIVE_SECONDS = env_float("GATEWAY_SSE_KEEPALIVE_SECONDS", 15.0)
# The response cache (proxy.cache; on for the teams and keys that set a TTL):
# the largest answer kept (bytes; a larger one is served, not stored), and in
# embedded mode the in-process store's bounds (entries and bytes, least
# recently used out first).
GATEWAY_CACHE_MAX_ENTRY_BYTES = env_int("GATEWAY_CACHE_MAX_ENTRY_BYTES", 1024 * 1024)
GATEWAY_CACHE_MEMORY_MAX_ENTRIES = env_int("GATEWAY_CACHE_MEMORY_MAX_ENTRIES", 10_000)
GATEWAY_CACHE_MEMORY_MAX_BYTES = env_int("GATEWAY_CACHE_MEMORY_MAX_BYTES", 64 * 1024 * 1024)
# Upstream connections kept per process (0 = unbounded).
GATEWAY_UPSTREAM_POOL_SIZE = env_int("GATEWAY_UPSTREAM_POOL_SIZE", 1000)
# Declarative configuration applied at start (`manage.py apply_config`).
GATEWAY_CONFIG = env("GATEWAY_CONFIG")

# --- Auth, i18n, static ------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The console's own sign-in page; the Django admin keeps its own.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "governance:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The console's stylesheet and scripts, and the vendored chart library.
STATICFILES_DIRS = [BASE_DIR / "gateway_project" / "static"]
STATIC_ROOT = Path(env("GATEWAY_STATIC_ROOT", str(VAR_DIR / "static")) or VAR_DIR / "static")
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# The REST management API (``/api/v1/``): admin API tokens or the console's
# session, the roles of ``keys.access``, one error envelope (``keys.api.errors``).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "keys.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["keys.api.permissions.OperatorPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": [
        "keys.api.filters.ApiFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "keys.api.pagination.LimitOffsetPages",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "keys.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "AI Gateway management API",
    "DESCRIPTION": (
        "Customers, teams, virtual keys, providers, routes, budgets, limits, prices, "
        "operators, the request log, usage and the audit trail."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the sidecar package's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# "json" (one object per line; production's default) or "plain".
GATEWAY_LOG_FORMAT = env("GATEWAY_LOG_FORMAT", "json" if PRODUCTION else "plain") or "plain"
if GATEWAY_LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured("GATEWAY_LOG_FORMAT must be 'json' or 'plain'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "gateway_project.logs.JsonFormatter"},
    },
    "filters": {"secrets": {"()": "gateway_project.logs.SecretFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": GATEWAY_LOG_FORMAT,
            "filters": ["secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}

# --- Governance -------------------------------------------------------------

# The seed's enforceGovernanceHeader: when on, a request without a virtual key
# is refused (401); when off, it is served under GATEWAY_DEFAULT_TEAM's policy.
GATEWAY_ENFORCE_GOVERNANCE_HEADER = env_bool("GATEWAY_ENFORCE_GOVERNANCE_HEADER", default=True)
GATEWAY_DEFAULT_TEAM = env("GATEWAY_DEFAULT_TEAM", "") or ""

# Calendar budget periods (day, week, month...) start at midnight here.
GATEWAY_BUDGET_TIMEZONE = env("GATEWAY_BUDGET_TIMEZONE", "UTC") or "UTC"
# Output tokens assumed for a budget reservation when the request sets no
# max_tokens and the model's price names no output cap.
GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = env_int("GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS", 4096)

if not GATEWAY_ENFORCE_GOVERNANCE_HEADER and not GATEWAY_DEFAULT_TEAM:
    raise ImproperlyConfigured(
        "GATEWAY_ENFORCE_GOVERNANCE_HEADER=false needs GATEWAY_DEFAULT_TEAM: the team whose "
        "policy applies to requests without a virtual key"
    )

# --- Usage ledger -------------------------------------------------------------

# Records are flushed from each process every this many seconds, or sooner
# when this many are waiting; a crashed process loses at most one interval.
GATEWAY_LEDGER_FLUSH_SECONDS = env_float("GATEWAY_LEDGER_FLUSH_SECONDS", 0.5)
GATEWAY_LEDGER_BATCH_SIZE = env_int("GATEWAY_LEDGER_BATCH_SIZE", 500)
# A batch read from the usage stream by a worker that died is taken over by
# another worker after this long (milliseconds).
GATEWAY_LEDGER_CLAIM_IDLE_MS = env_int("GATEWAY_LEDGER_CLAIM_IDLE_MS", 60_000)
# Rollups of the request log (governance.rollups) run this often (seconds).
GATEWAY_ROLLUP_INTERVAL_SECONDS = env_float("GATEWAY_ROLLUP_INTERVAL_SECONDS", 60.0)
# Raw request records older than this many days are pruned (rollups stay); 0 keeps them.
GATEWAY_LOG_RETENTION_DAYS = env_int("GATEWAY_LOG_RETENTION_DAYS", 0)
GATEWAY_RETENTION_INTERVAL_SECONDS = env_float("GATEWAY_RETENTION_INTERVAL_SECONDS", 3600.0)
# Records deleted per statement when pruning (short transactions, no long lock).
GATEWAY_RETENTION_BATCH_SIZE = env_int("GATEWAY_RETENTION_BATCH_SIZE", 5000)
# For teams that store message content: at most this many bytes (UTF-8) of
# a request's messages, and as many of its answer's text, are kept.
GATEWAY_CONTENT_MAX_BYTES = env_int("GATEWAY_CONTENT_MAX_BYTES", 32 * 1024)
# A budget period is closed (history written, counters reconciled) this long
# after it ends: requests still in flight settle and their records land first.
GATEWAY_BUDGET_CLOSE_DELAY_SECONDS = env_float("GATEWAY_BUDGET_CLOSE_DELAY_SECONDS", 600.0)
GATEWAY_BUDGET_CLOSE_INTERVAL_SECONDS = env_float("GATEWAY_BUDGET_CLOSE_INTERVAL_SECONDS", 60.0)

# --- Shutdown (gateway_project.serve) ---------------------------------------------

# On SIGTERM readiness goes off at once and the socket closes after this
# delay (0 where a preStop hook already waited); requests and streams in
# flight then have the grace period to finish before the process exits.
GATEWAY_DRAIN_DELAY_SECONDS = env_float("GATEWAY_DRAIN_DELAY_SECONDS", 0.0)
GATEWAY_SHUTDOWN_GRACE_SECONDS = env_float("GATEWAY_SHUTDOWN_GRACE_SECONDS", 30.0)

# --- Observability ---------------------------------------------------------------

# Worker processes of one server share their metrics through files in this
# directory (wiped when the server starts); empty: one process, in memory.
GATEWAY_METRICS_DIR = env("GATEWAY_METRICS_DIR", "") or ""
GATEWAY_METRICS_FLUSH_SECONDS = env_float("GATEWAY_METRICS_FLUSH_SECONDS", 1.0)
# /metrics asks for `Authorization: Bearer <token>` when a token is set. In
# production without a token it is closed, unless declared reachable only by
# the scraper (GATEWAY_METRICS_PUBLIC=true, e.g. behind a network policy).
GATEWAY_METRICS_TOKEN = env("GATEWAY_METRICS_TOKEN", "") or ""
GATEWAY_METRICS_PUBLIC = env_bool("GATEWAY_METRICS_PUBLIC", default=not PRODUCTION)
# One JSON line per inference request on stdout (the access log).
GATEWAY_ENABLE_LOGGING = env_bool("GATEWAY_ENABLE_LOGGING", default=True)

# The periodic jobs: run by Celery beat in cluster mode, by each web process's
# own scheduler in embedded mode (governance.schedule), from this one table.


def _every(task: str, seconds: float) -> dict:
    # A run not started within its interval is dropped rather than piling
    # up behind a busy or absent worker: the next one does the same work.
    return {"task": task, "schedule": seconds, "options": {"expires": max(seconds, 1.0)}}


CELERY_BEAT_SCHEDULE = {
    "usage-drain": _every("governance.usage_drain", 1.0),
    "usage-rollup": _every("governance.usage_rollup", GATEWAY_ROLLUP_INTERVAL_SECONDS),
    "budget-periods-close": _every(
        "governance.budget_periods_close", GATEWAY_BUDGET_CLOSE_INTERVAL_SECONDS
    ),
    "records-prune": _every("governance.records_prune", GATEWAY_RETENTION_INTERVAL_SECONDS),
}

# --- Admission per provider ------------------------------------------------------

# Concurrency slots per provider and process (the seed's initialPoolSize);
# beyond them requests wait, up to the timeout. With GATEWAY_DROP_EXCESS_REQUESTS
# (dropExcessRequests) a request finding GATEWAY_QUEUE_SIZE already waiting
# is refused at once (503, Retry-After).
GATEWAY_INITIAL_POOL_SIZE = env_int("GATEWAY_INITIAL_POOL_SIZE", 300)
GATEWAY_QUEUE_SIZE = env_int("GATEWAY_QUEUE_SIZE", 1000)
GATEWAY_DROP_EXCESS_REQUESTS = env_bool("GATEWAY_DROP_EXCESS_REQUESTS", default=False)
GATEWAY_QUEUE_TIMEOUT_SECONDS = env_float("GATEWAY_QUEUE_TIMEOUT_SECONDS", 30.0)

# --- Retries and fallbacks ------------------------------------------------------

# A provider is retried at most this share of its recent requests (plus the
# floor), over the window: no retry storm against a provider that is down.
GATEWAY_RETRY_BUDGET_RATIO = env_float("GATEWAY_RETRY_BUDGET_RATIO", 0.2)
GATEWAY_RETRY_BUDGET_MIN_RETRIES = env_int("GATEWAY_RETRY_BUDGET_MIN_RETRIES", 5)
GATEWAY_RETRY_BUDGET_WINDOW_SECONDS = env_int("GATEWAY_RETRY_BUDGET_WINDOW_SECONDS", 10)
# Circuit breaking per deployment: open when the window holds this many
# failures making up this share of attempts; stay open this long, then probe.
GATEWAY_BREAKER_MIN_FAILURES = env_int("GATEWAY_BREAKER_MIN_FAILURES", 5)
GATEWAY_BREAKER_FAILURE_RATE = env_float("GATEWAY_BREAKER_FAILURE_RATE", 0.5)
GATEWAY_BREAKER_WINDOW_SECONDS = env_int("GATEWAY_BREAKER_WINDOW_SECONDS", 10)
GATEWAY_BREAKER_OPEN_SECONDS = env_float("GATEWAY_BREAKER_OPEN_SECONDS", 30.0)

# Retries per deployment (a route, or one of its fallbacks) after the first try.
GATEWAY_RETRIES = env_int("GATEWAY_RETRIES", 2)
# Exponential backoff with jitter between retries: base and ceiling (seconds).
GATEWAY_RETRY_BACKOFF_SECONDS = env_float("GATEWAY_RETRY_BACKOFF_SECONDS", 0.2)
GATEWAY_RETRY_BACKOFF_MAX_SECONDS = env_float("GATEWAY_RETRY_BACKOFF_MAX_SECONDS", 2.0)
# A provider's Retry-After is honoured up to this many seconds.
GATEWAY_RETRY_AFTER_MAX_SECONDS = env_float("GATEWAY_RETRY_AFTER_MAX_SECONDS", 10.0)
