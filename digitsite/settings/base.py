"""Settings shared by every environment, all read from the environment (docs/configuration.md lists them).

local.py (manage.py, `make run`, the Celery command line), test.py (pytest) and production.py (the image,
docker compose, Kubernetes) add what differs: the secret key's source, DEBUG, the test database's name.
"""

import contextlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]  # the checkout


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


# DEBUG is off unless asked for (local.py); production.py keeps it off whatever the environment says.
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "csp",
    "recognizer",
    "review",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers a locked-out login
]

# Admin logins: django-axes locks an address out for AXES_COOLOFF_TIME after 5 failed attempts.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_PARAMETERS = ["ip_address"]  # REMOTE_ADDR: the real client behind TRUSTED_PROXIES (edge.proxies)

# HTTPS, when a TLS proxy serves the site (DJANGO_HTTPS=1; it must send X-Forwarded-Proto and be in
# TRUSTED_PROXIES). Health checks stay plain HTTP for the orchestrator's probes.
HTTPS = env_bool("DJANGO_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$"]
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000")) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", False)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Preloading HSTS into browsers is a commitment for the whole domain that an operator makes on purpose
# (DJANGO_HSTS_PRELOAD=1), not a default.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD or not HTTPS else ["security.W021"]

# Content-Security-Policy (django-csp): scripts only from this site's files (no inline script, no
# eval), so injected markup cannot run; data: and blob: images are the predictions' and uploads'
# pictures; inline style *attributes* (the admin's thumbnails) are allowed, style elements are not.
# connect-src 'self' covers the page's own WebSocket (ws/wss to the same host).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}

# Behind a proxy: only its own address(es), never whole private ranges (any client on them could
# then write X-Forwarded-For and choose the address its limits and lockouts are counted under).
TRUSTED_PROXIES = [p for p in os.environ.get("TRUSTED_PROXIES", "").split(",") if p.strip()]

# /metrics (Prometheus format, recognizer.metrics) is served to a scraper that sends
# `Authorization: Bearer <METRICS_TOKEN>` or comes from METRICS_ALLOWED_NETWORKS (default: this machine).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = [n for n in os.environ.get("METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1").split(",") if n.strip()]

ROOT_URLCONF = "digitsite.urls"
ASGI_APPLICATION = "digitsite.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=0, conn_health_checks=True)
}
# SQLite (`make run` without PostgreSQL): writers take the lock at BEGIN and wait their turn, reads go on
# meanwhile (WAL); docs/configuration.md has why (tests/test_sqlite_writers.py).
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(SQLITE_OPTIONS)
    # Django's backend, the file (and so its -wal and -shm) created 0600: it holds sessions and password hashes
    DATABASES["default"]["ENGINE"] = "digitsite.sqlite3"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT") or BASE_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic in development
# collectstatic fills STATIC_ROOT (the image's build does); a checkout has none, and WhiteNoise warned
# "No directory at: .../staticfiles/" on every start of every process for it, though the finders
# serve the files. An empty one until collectstatic fills it (left alone where it cannot be made).
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(exist_ok=True)

# Uploads: /api/predict takes images up to 5 MB; anything larger is refused before it is read.
DATA_UPLOAD_MAX_MEMORY_SIZE = 6 * 2**20
FILE_UPLOAD_MAX_MEMORY_SIZE = 6 * 2**20
UPLOAD_MAX_BYTES = 5 * 2**20
UPLOAD_MAX_PIXELS = 4096 * 4096
# Any request body larger than this is refused before it is read (edge/limits.py).
REQUEST_MAX_BYTES = UPLOAD_MAX_BYTES + 64 * 1024

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Prepended to every Redis key of the broker and the channel layer, so that several deployments
# or test runs can share one Redis without taking each other's jobs.
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "")

CHANNEL_LAYERS = {
    "default": {
        # Redis pub/sub: one PUBLISH per message and nothing stored, which halves the push latency
        # of the list-based layer. A reply published while its socket is gone is simply dropped;
        # the consumer's per-request timeout covers a lost one.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            # socket_timeout None: with redis-py >= 8 the default 5 s read timeout kills blocking
            # reads on idle connections (channels_redis issue 422).
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": f"{REDIS_PREFIX}asgi",
        },
    }
}

# Celery: no result backend (results travel over the channel layer), short-lived messages.
# The broker is Redis unless BROKER_URL names another (RabbitMQ: amqp://...; docs/brokers.md says which
# to choose when). Redis stays the channel layer, the heartbeats' and the limits' store either way.
CELERY_BROKER_URL = os.environ.get("BROKER_URL") or REDIS_URL
BROKER_IS_REDIS = CELERY_BROKER_URL.partition("://")[0] in ("redis", "rediss")
# redis:// is served by digitsite.broker's transport (kombu's, one client per channel): digitsite/celery.py
# registers it under kombu's "redis" alias, so the URL stays redis:// for Flower and other tools.
CELERY_WORKER_CONSUMER = "digitsite.worker_consumer:Consumer"  # reconnects to a returning broker within a second
# ack_emulation off: kombu would otherwise write every delivered message to an "unacked" hash
# and delete it on ack (two extra round trips per task hop) only to redeliver it after the
# visibility timeout (1 h), long after the job expires (30 s). A job lost with a crashed worker
# is retried by the web side after WS_PREDICTION_TIMEOUT_S instead.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "ack_emulation": False,
        **({"global_keyprefix": REDIS_PREFIX} if REDIS_PREFIX else {}),
    }
    if BROKER_IS_REDIS
    else {
        # Another broker (RabbitMQ): publisher confirms, so a publish returns once the broker has the message
        # (and raises when it did not take it), in the web's publish thread (cost: docs/configuration.md).
        "confirm_publish": True,
    }
)
if not BROKER_IS_REDIS:
    # Live jobs (strokes, uploads, heat maps) expire within 30 s: not written to the broker's disk (a
    # persistent message's confirm waits for an fsync); the web side asks again for one lost.
    # Stored drawings' fills are kept across a broker restart. Queues stay classic and durable: a quorum
    # queue replicates and fsyncs every message through Raft, for jobs that live seconds (docs/brokers.md).
    CELERY_TASK_DEFAULT_DELIVERY_MODE = "transient"
CELERY_TASK_IGNORE_RESULT = True  # no result backend (none is set)
# The serializer (msgpack) is set in digitsite/celery.py: CELERY_TASK_SERIALIZER and
# CELERY_ACCEPT_CONTENT are also Celery 3's names, so every worker warned they were deprecated.
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_ACKS_LATE = True  # with ack emulation off, an ack is bookkeeping in the worker's memory
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "preprocess"
# The task routes (each task to its queue: contract.tasks) are declared in digitsite/celery.py.
# Task events (task-received/started/succeeded, task-sent) for debugging with Flower or `celery events`:
# CELERY_EVENTS=1. Off by default: they cost the live path (docs/operations.md has the measured cost);
# workers still send their 2 s worker heartbeats, so the tools see them, and `celery control enable_events`
# turns task events on at run time.
TASK_EVENTS = env_bool("CELERY_EVENTS", False)  # not CELERY_-prefixed: Celery would read it as a setting
CELERY_WORKER_SEND_TASK_EVENTS = TASK_EVENTS
CELERY_TASK_SEND_SENT_EVENT = TASK_EVENTS
CELERY_WORKER_DISABLE_RATE_LIMITS = True

MODELS_DIR = Path(os.environ.get("MODELS_DIR", BASE_DIR / "models"))
MNIST_DIR = Path(os.environ.get("MNIST_DIR", BASE_DIR.parent / "shared" / "data" / "mnist"))
UJI_DIR = Path(os.environ.get("UJI_DIR", BASE_DIR.parent / "shared" / "data" / "uji-pen"))

# Per-connection limits of the WebSocket consumer (message limits live in recognizer/protocol.py).
WS_RATE_PER_SECOND = 100  # token bucket refill; bursts up to WS_RATE_BURST
WS_RATE_BURST = 200
# Per client address (edge.throttle, recognizer.ratelimit): open sockets and their messages per web
# process; uploads, new sockets (shared by all processes, in Redis) and health checks per window
# ("off" disables one). A page streams about 20 messages/s and opens one socket.
WS_SOCKETS_PER_ADDRESS = int(os.environ.get("WS_SOCKETS_PER_ADDRESS", "50"))
WS_ADDRESS_RATE_PER_SECOND = float(os.environ.get("WS_ADDRESS_RATE_PER_SECOND", "1000"))
WS_ADDRESS_RATE_BURST = float(os.environ.get("WS_ADDRESS_RATE_BURST", "2000"))
# What a socket's messages ask for (recognizer.ratelimit): their bytes (a frame over budget is refused
# before it is parsed; a page drawing fast sends ~6 KB/s, re-sends a whole drawing after a reconnect:
# at most ~300 KB), and predictions (1 + points / 5,000 each; a page asks ~11/s at most, never delayed;
# past the budget the next live prediction waits, nothing is refused). An address's defaults follow
# WS_ADDRESS_RATE_* (1000/s: 256 KB/s and 100 predictions/s), so stacks without per-address limits
# have none here either.
WS_BYTES_PER_SECOND = float(os.environ.get("WS_BYTES_PER_SECOND", str(64 * 1024)))
WS_BYTES_BURST = float(os.environ.get("WS_BYTES_BURST", str(512 * 1024)))
WS_PREDICTIONS_PER_SECOND = float(os.environ.get("WS_PREDICTIONS_PER_SECOND", "40"))
WS_PREDICTIONS_BURST = float(os.environ.get("WS_PREDICTIONS_BURST", "120"))
WS_ADDRESS_BYTES_PER_SECOND = float(os.environ.get("WS_ADDRESS_BYTES_PER_SECOND", str(256 * WS_ADDRESS_RATE_PER_SECOND)))
WS_ADDRESS_BYTES_BURST = float(os.environ.get("WS_ADDRESS_BYTES_BURST", str(512 * WS_ADDRESS_RATE_BURST)))
WS_ADDRESS_PREDICTIONS_PER_SECOND = float(
    os.environ.get("WS_ADDRESS_PREDICTIONS_PER_SECOND", str(0.1 * WS_ADDRESS_RATE_PER_SECOND))
)
WS_ADDRESS_PREDICTIONS_BURST = float(os.environ.get("WS_ADDRESS_PREDICTIONS_BURST", str(0.1 * WS_ADDRESS_RATE_BURST)))
THROTTLE_UPLOADS = os.environ.get("THROTTLE_UPLOADS", "5/second;60/minute")
# Submitted (stored) drawings per address; off where uploads are off (the test stacks).
THROTTLE_SUBMITS = os.environ.get("THROTTLE_SUBMITS", "off" if THROTTLE_UPLOADS == "off" else "20/minute;300/hour")
THROTTLE_SOCKET_OPENS = os.environ.get("THROTTLE_SOCKET_OPENS", "10/second;120/minute")
THROTTLE_HEALTH = os.environ.get("THROTTLE_HEALTH", "20/second")
# An address refused by one of these and back before its Retry-After is answered 429 at accept,
# after a hold of PENALTY_HOLD_S (default 1 s; read by edge.penalties in the web server).
# While the pen is down, a connection's live prediction is refreshed at most this often (ms; 0: as
# often as the workers answer). A pen-up state is always predicted at once.
WS_LIVE_INTERVAL_MS = float(os.environ.get("WS_LIVE_INTERVAL_MS", "100"))
# ...or, when the workers answer slowly, at most every this many (smoothed) round trips.
WS_LIVE_LOAD_FACTOR = float(os.environ.get("WS_LIVE_LOAD_FACTOR", "16"))
# An unanswered prediction (its job lost with a worker) is asked again once, after this many seconds,
# for the drawing's newest state; then the client gets an `unavailable` error.
WS_PREDICTION_TIMEOUT_S = float(os.environ.get("WS_PREDICTION_TIMEOUT_S", "5"))

# Dynamic batching (recognizer/batching.py): each web process keeps at most this many prediction
# batches out at once; jobs that arrive meanwhile gather into the next batch. A batch never answered
# stops counting after BATCH_LOST_AFTER_S.
BATCHES_IN_FLIGHT = int(os.environ.get("BATCHES_IN_FLIGHT", "2"))
BATCH_LOST_AFTER_S = float(os.environ.get("BATCH_LOST_AFTER_S", "3"))
# A pen-up prediction's heat map is asked for once the prediction has stayed on screen this long
# with nothing newer drawn (ms): between strokes it would be replaced before anyone looked at it.
WS_HEAT_DELAY_MS = float(os.environ.get("WS_HEAT_DELAY_MS", "150"))
# A heat map not computed within this many seconds is dropped (it is optional: under overload the
# preprocess queue sheds heat maps instead of falling ever further behind).
HEAT_EXPIRES_S = float(os.environ.get("HEAT_EXPIRES_S", "2"))
# Whether a web process publishes its batches from a thread (its event loop goes on meanwhile) or on
# the event loop itself (no thread hand-off); see docs/benchmarks.md.
PUBLISH_IN_THREAD = env_bool("PUBLISH_IN_THREAD", True)
# How a web process publishes its batches: "redis" pushes the Celery task message straight into the
# queue's Redis list from the event loop (contract/publish.py); "celery" uses Celery's send_task
# (in the publish thread when PUBLISH_IN_THREAD), which any Celery broker accepts. Default: "redis" on a
# Redis broker (the cheaper of the two, docs/configuration.md), "celery" on any other (the push writes Redis lists).
PUBLISH_VIA = os.environ.get("PUBLISH_VIA") or ("redis" if BROKER_IS_REDIS else "celery")
if PUBLISH_VIA not in ("redis", "celery"):
    raise ImproperlyConfigured(f"PUBLISH_VIA={PUBLISH_VIA!r}: expected 'redis' or 'celery'")
if PUBLISH_VIA == "redis" and not BROKER_IS_REDIS:
    raise ImproperlyConfigured(
        f"PUBLISH_VIA=redis pushes into the broker's Redis lists, but the broker is "
        f"{CELERY_BROKER_URL.partition('://')[0]}:// (BROKER_URL): "
        "use PUBLISH_VIA=celery or leave it unset"
    )

# Stored drawings whose prediction message was lost are queued again after this many seconds by
# the workers that fill them in, the preprocess workers (worker.drawings).
DRAWING_SWEEP_S = float(os.environ.get("DRAWING_SWEEP_S", "10"))
# A worker filling in stored drawings waits at most this long for a lock on their rows (a hung
# database), then leaves them to the sweep: the same worker reads uploads and heat maps.
DRAWING_FILL_LOCK_WAIT_S = float(os.environ.get("DRAWING_FILL_LOCK_WAIT_S", "2"))
# A worker whose task runs longer than this ends itself for a fresh one (edge/watchdog.py: the
# solo pool enforces no Celery time limit). Far above the longest task expected (64 large uploads).
WORKER_TASK_TIME_LIMIT_S = float(os.environ.get("WORKER_TASK_TIME_LIMIT_S", "60"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"health_answers": {"()": "digitsite.logfilters.HealthCheckAnswers"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        # start-up chatter of every process ("AXES: BEGIN ...", daphne's endpoint and HTTP/2 notes):
        # `make run` prints a summary instead (scripts.summary); their warnings and errors still show
        "axes.apps": {"level": "WARNING"},
        "daphne.cli": {"level": "WARNING"},
        "daphne.server": {"level": "WARNING"},
        "django.request": {"filters": ["health_answers"]},
    },
}
