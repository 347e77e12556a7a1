"""Settings shared by every environment, read from the environment (12-factor).

Every secret can also be given as ``NAME_FILE`` (a path whose content is the value),
which is how container orchestrators mount secrets.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from kernel import limits

BASE_DIR = Path(__file__).resolve().parent.parent.parent


class _FileValues(environ.FileAwareMapping):  # type: ignore[misc]
    """``NAME_FILE``'s content without the newline an editor or ``echo`` leaves at its
    end: a pepper or token read from a file must equal the same value given inline."""

    def __getitem__(self, key: str) -> str:
        value: str = super().__getitem__(key)
        return value.rstrip("\r\n") if self.env.get(key + "_FILE") else value


class _Env(environ.FileAwareEnv):  # type: ignore[misc]
    ENVIRON = _FileValues()


env = _Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
TOKEN_PEPPER = env.str("TOKEN_PEPPER", default="")
AUTH_TOKENS: list[str] = env.list("AUTH_TOKENS", default=[])
# Job payloads at rest (security.encryption): "keyid:base64key,..." (32-byte keys), the
# first seals, all open. Local runs and tests generate their own; production requires it.
ENCRYPTION_KEYS = env.str("ENCRYPTION_KEYS", default="")
# The audit chain's links are HMAC-SHA256 under this key (compliance.audit.chainkeys), kept out
# of the database: "keyid:base64key,..." (32-byte keys), the first seals, all verify.
AUDIT_CHAIN_KEY = env.str("AUDIT_CHAIN_KEY", default="")
# The sealer appends the chain's head (seq, hash, key id, time) to this file after each
# batch: an anchor outside the database for ``audit_verify --anchor-file`` (optional).
AUDIT_ANCHOR_FILE = env.str("AUDIT_ANCHOR_FILE", default="")
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Every API token expires: at most this many days after it was created (a lower value
# also cuts existing tokens short), and create_token's default is shorter still.
TOKEN_MAX_LIFETIME_DAYS = env.int("TOKEN_MAX_LIFETIME_DAYS", default=365)
TOKEN_DEFAULT_LIFETIME_DAYS = min(90, TOKEN_MAX_LIFETIME_DAYS)

# An app server remembers a token it let in for this long (security.authentication):
# revoking a token or changing its rules reaches every app server within this time.
PRINCIPAL_CACHE_SECONDS = env.float("PRINCIPAL_CACHE_SECONDS", default=1.0)
# It remembers the queue settings push and pull read (queues.queuecache) this long: a
# pause, schema or limit changed on another app server reaches this one within it.
QUEUE_CACHE_SECONDS = env.float("QUEUE_CACHE_SECONDS", default=1.0)
# Retention rests this many times as long as each batch took before the next one
# (compliance.retention): 1.0 leaves the database at least half of the run's time for
# the traffic beside it; 0 deletes flat out.
RETENTION_REST = env.float("RETENTION_REST", default=1.0)
if not 0 <= RETENTION_REST <= 10:
    raise ImproperlyConfigured("RETENTION_REST must be 0 to 10 (times a batch's time)")

# Bootstrap tokens are full queue operators: a guessable one is refused at start-up.
MIN_BOOTSTRAP_TOKEN_LENGTH = 32
for _token in AUTH_TOKENS:
    if len(_token) < MIN_BOOTSTRAP_TOKEN_LENGTH:
        raise ImproperlyConfigured(
            f"AUTH_TOKENS: every bootstrap token must be at least "
            f"{MIN_BOOTSTRAP_TOKEN_LENGTH} characters long"
        )

INSTALLED_APPS = [
    "flashq_project.adminsite.FlashqAdminConfig",  # django.contrib.admin, our site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "django_q",
    "auditlog",
    "guardian",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "security",
    "compliance",
    "queues",
    "flashq_project.apps.FlashqConfig",  # wiring that needs every app (last)
]

# Every one sync and async capable, and none starting a thread for an API call under
# ASGI (flashq_project.apimiddleware: Django's own, inline for /api/), so a waiting pull
# holds no thread.
MIDDLEWARE = [
    # First: forwarded headers from anyone but a trusted proxy are dropped before
    # SecurityMiddleware (https redirect) or anything else reads them.
    "flashq_project.proxyheaders.TrustedProxyHeadersMiddleware",
    "flashq_project.apimiddleware.ApiSecurityMiddleware",
    # The admin's static files, served by the app server itself (gunicorn, DEBUG off).
    "flashq_project.staticfiles.StaticFilesMiddleware",
    "flashq_project.requestid.RequestIdMiddleware",
    "flashq_project.apimiddleware.ApiSessionMiddleware",
    "flashq_project.apimiddleware.ApiCommonMiddleware",
    "flashq_project.apimiddleware.ApiCsrfViewMiddleware",
    "flashq_project.apimiddleware.ApiAuthenticationMiddleware",
    # django-auditlog: the staff user as actor of model changes made in the admin.
    "compliance.middleware.StaffAuditlogActorMiddleware",
    "flashq_project.apimiddleware.ApiMessageMiddleware",
    "flashq_project.apimiddleware.ApiXFrameOptionsMiddleware",
    # Last, as django-axes asks: answers a locked-out admin login with 429.
    "axes.middleware.AxesMiddleware",
]

# Admin logins (django-axes): failures are counted per username and, separately, per
# client IP, in the database, so a lockout holds on every app server; each login,
# failure and lockout is also an audit event (compliance.logins). Addresses that may
# call the API at all (ALLOWED_CIDRS) are checked before any token.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    # Per-queue rights for staff (an operator sees and acts on the queues granted).
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user account
AXES_FAILURE_LIMIT = env.int("ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("ADMIN_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "kernel.clientip.client_ip"
AXES_RESET_ON_SUCCESS = True
# Attempts while locked out do not restart the cool-off: a stranger hammering an
# account's name cannot keep its owner out for ever.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # successful logins are in the audit trail

# Scheduled work (django-q2, ORM broker: no extra service). ``manage.py setup_schedules``
# creates the schedules; ``manage.py qcluster`` runs them. Tasks carry names and ids only,
# never payloads.
Q_CLUSTER = {
    "name": "flashq",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=1),
    "timeout": 600,
    "retry": 900,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 100,
    # Per task: the minutely sealing and sweeping must not push the daily retention run's
    # record out (GET /metrics reports when it last succeeded).
    "save_limit_per": "func",
    "label": "Scheduled tasks",
}
# Audit events are sealed into the hash chain at most this long after they are written
# (plus the time a batch takes): the sealing schedule's interval.
AUDIT_SEAL_MINUTES = env.int("AUDIT_SEAL_MINUTES", default=1)

# django-auditlog keeps field-level diffs of queues, tokens, permission rules and retention
# policies (registered in compliance.apps, secrets excluded). Its correlation id is our
# request id; the address is left to the audit trail (which already has the trusted one).
AUDITLOG_CID_GETTER = "flashq_project.requestid.current_request_id"
AUDITLOG_DISABLE_REMOTE_ADDR = True
AUDITLOG_STORE_JSON_CHANGES = True

ROOT_URLCONF = "flashq_project.urls"
WSGI_APPLICATION = "flashq_project.wsgi.application"

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

# psycopg's prepare_threshold: runs before it prepares a statement by itself.
PREPARE_ONLY_WHEN_ASKED = 2**31

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; IMMEDIATE takes the write lock at
    # BEGIN so two claimers queue up on busy_timeout instead of failing to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    # Under the ASGI server a worker's sync code runs in its SYNC_THREADS shared threads
    # (kernel.blocking), each keeping its connection (CONN_MAX_AGE), as a threaded WSGI
    # server's threads did: SYNC_THREADS connections per worker, no pool. A pool per
    # worker process (psycopg's, through Django) is there for DB_POOL_MAX_SIZE > 0: each
    # call then takes a connection and gives it back (slower by a checkout per call).
    DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=0)
    if DB_POOL_MAX_SIZE:
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
            "max_size": DB_POOL_MAX_SIZE,
            "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    # Django's health check costs every request a round trip. Without it each thread's
    # connection that died (a database restart) fails its next request with 503, safe
    # to retry (its transaction rolled back), and is then replaced.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DB_HEALTH_CHECKS", default=False)
    # A push's INSERT is prepared on each connection (kernel.statements): parsed and
    # planned once there. Off for a PgBouncer in transaction mode older than 1.22 or
    # without max_prepared_statements (docs/scaling.md). psycopg prepares nothing else:
    # the threshold is out of reach, so only a statement that asks is prepared.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        PREPARE_ONLY_WHEN_ASKED if env.bool("DB_PREPARED_STATEMENTS", default=True) else None
    )

# Under the ASGI server, a worker process runs its requests' sync code (views, the
# ORM) in this many shared threads, each keeping its connection (kernel.blocking).
SYNC_THREADS = env.int("SYNC_THREADS", default=8)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Times with seconds, in ISO order, wherever a template shows one (the admin's lists
# and pages): flashq_project/formats/en/formats.py.
FORMAT_MODULE_PATH = ["flashq_project.formats"]

STATIC_URL = "static/"
STATIC_ROOT: Path | None = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# whitenoise serves them. Local runs and tests read them straight from the apps; production
# (settings.production) serves what ``manage.py collectstatic`` compressed and hashed.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Request and payload limits (bytes). A single job's data is capped separately from the
# whole request so one batch can carry many jobs.
MAX_REQUEST_BYTES = env.int("MAX_REQUEST_BYTES", default=limits.DEFAULT_MAX_REQUEST_BYTES)
MAX_JOB_BYTES = env.int("MAX_JOB_BYTES", default=limits.DEFAULT_MAX_JOB_BYTES)
MAX_ACK_BATCH_BYTES = env.int("MAX_ACK_BATCH_BYTES", default=limits.DEFAULT_MAX_ACK_BATCH_BYTES)
# An ack repeated by the lease that completed the job (its answer was lost) is answered
# as the first was, changing nothing, for this many seconds from the job's finished_at;
# later it is a 409 like any stale lease (queues.services.reports). 0: never.
FLASHQ_ACK_REPLAY_SECONDS = env.int("FLASHQ_ACK_REPLAY_SECONDS", default=900)

# Long polls (queues.waitslots): a waiting pull or job wait holds no thread (the API
# serves them asynchronously, queues.waiting), but each is still bounded per worker
# process: at most LONG_POLL_MAX_WAITERS in all, and a quarter of that per token family,
# so one tenant cannot take every slot. Past a cap a pull answers at once with what is
# ready; when that is nothing, with Retry-After: LONG_POLL_RETRY_AFTER_SECONDS.
LONG_POLL_MAX_WAITERS = env.int("LONG_POLL_MAX_WAITERS", default=1000)
LONG_POLL_MAX_WAITERS_PER_FAMILY = env.int(
    "LONG_POLL_MAX_WAITERS_PER_FAMILY", default=max(1, LONG_POLL_MAX_WAITERS // 4)
)
LONG_POLL_RETRY_AFTER_SECONDS = env.int("LONG_POLL_RETRY_AFTER_SECONDS", default=2)

# The job event log (queues.events.log) behind the event streams and webhooks: kept for
# this many seconds, and at most this many rows, then pruned by the scheduler. A
# subscriber away for longer is told so with a ``reset`` event.
EVENT_LOG_SECONDS = env.int("EVENT_LOG_SECONDS", default=600)
EVENT_LOG_MAX_ROWS = env.int("EVENT_LOG_MAX_ROWS", default=1_000_000)
# The per-minute rollup behind the admin's charts and history counts (queues.rollup):
# minutes older than this many days are deleted by the scheduler (the 7-day chart needs 7).
FLASHQ_STATS_DAYS = env.int("FLASHQ_STATS_DAYS", default=8)
# Event streams (GET /api/v1/queues/{pattern}/events, queues.events.pump): a comment
# line every HEARTBEAT seconds (the token is checked again then), the log read every
# POLL_MS while anyone listens, the queue list re-read every QUEUE_SECONDS, and a
# subscriber more than MAX_BEHIND events behind is sent ``reset`` instead of a backlog.
EVENT_STREAM_HEARTBEAT_SECONDS = env.float("EVENT_STREAM_HEARTBEAT_SECONDS", default=15.0)
EVENT_STREAM_POLL_MS = env.int("EVENT_STREAM_POLL_MS", default=200)
EVENT_STREAM_QUEUE_SECONDS = env.float("EVENT_STREAM_QUEUE_SECONDS", default=5.0)
EVENT_STREAM_MAX_BEHIND = env.int("EVENT_STREAM_MAX_BEHIND", default=1000)
EVENT_STREAM_RETRY_MS = env.int("EVENT_STREAM_RETRY_MS", default=3000)

# Webhooks (queues.webhooks, kernel.safehttp). Deliveries never reach loopback, private,
# link-local, CGNAT or metadata addresses, except host names and CIDRs listed here.
WEBHOOK_ALLOWED_HOSTS: list[str] = env.list("WEBHOOK_ALLOWED_HOSTS", default=[])
# A PEM file of extra CAs trusted for deliveries (an internal CA), beside the system's.
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default="")
# A webhook is disabled after this many failed deliveries in a row, once it has been
# failing for at least WEBHOOK_DISABLE_AFTER_SECONDS (a short outage disables nothing).
WEBHOOK_MAX_FAILURES = env.int("WEBHOOK_MAX_FAILURES", default=20)
WEBHOOK_DISABLE_AFTER_SECONDS = env.int("WEBHOOK_DISABLE_AFTER_SECONDS", default=3600)
# After a secret rotation, deliveries are signed with the old secret too for this long
# (a second v1= in the signature header), while receivers switch over. 0: no overlap.
WEBHOOK_SECRET_OVERLAP_SECONDS = env.int("WEBHOOK_SECRET_OVERLAP_SECONDS", default=86400)
# Each delivery is tried this many times, waiting WEBHOOK_RETRY_DELAY_MS, doubled each
# time (at most an hour), in between.
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_RETRY_DELAY_MS = env.int("WEBHOOK_RETRY_DELAY_MS", default=5000)

# Client IP: the socket address, or X-Forwarded-For only when the socket peer is one of
# these proxies (CIDRs).
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])
# Failed authentications per client IP before that IP gets 429 without any token work.
AUTH_FAILURE_RATE = env.str("AUTH_FAILURE_RATE", default="20/60s")

# Addresses (CIDRs) any API call may come from; empty: anywhere. Each token may narrow
# this further with its own list.
ALLOWED_CIDRS: list[str] = env.list("ALLOWED_CIDRS", default=[])
# Addresses that may scrape GET /metrics without a token (Prometheus in its network);
# anyone else needs a token with the metrics verb (flashq_project.metrics).
METRICS_ALLOWED_CIDRS: list[str] = env.list("METRICS_ALLOWED_CIDRS", default=[])

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["security.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["queues.api.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "queues.api.problems.problem_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "flashQ API",
    "DESCRIPTION": (
        "Push, pull and manage jobs. Every call needs `Authorization: Bearer <token>`; "
        "errors are RFC 9457 `application/problem+json`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # PATCH /jobs/{id} replaces data: its body is required, not a partial one.
    "COMPONENT_SPLIT_PATCH": False,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "queues.api.docs.strict_schema_hook",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"message": {"format": "%(message)s"}},
    "handlers": {
        "audit": {"class": "logging.StreamHandler", "formatter": "message"},
        "console": {"class": "logging.StreamHandler"},
    },
    "loggers": {
        "flashq.audit": {"handlers": ["audit"], "level": "INFO", "propagate": False},
        "django": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", "WARNING")},
        # Every refused call is already one line on flashq.audit; Django's own WARNING
        # per 4xx would double a flood of bad tokens. 5xx (ERROR) still logs here.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
