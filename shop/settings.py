"""Oncepay settings: everything that varies between machines comes from the environment.

See the README's "Configuration" section for every variable.
"""

from __future__ import annotations

import atexit
import os
import shutil
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from shop.credentials import local_credentials
from shop.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A git-ignored .env beside manage.py is read if present; real environment variables win.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Under pytest (which sets PYTEST_VERSION) the stack keeps to its own Redis database and key
# prefix, so a test run never touches a developer's running stack; rate limits are lifted so
# concurrency tests measure the system, not the throttle. Explicit variables still win.
if env("PYTEST_VERSION", default=""):
    for _name, _value in {
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        # Per run: two test runs on one machine never share locks, windows or queues.
        "REDIS_KEY_PREFIX": f"oncepay-test-{os.getpid()}",
        "RATE_LIMIT_ORDER_CREATE": "100000/min",
        "RATE_LIMIT_APPLY_PAY": "100000/min",
        "RATE_LIMIT_STATUS": "100000/min",
        "PAYMENT_POLL_SCHEDULE": "1,2,3,5,8",
        "SWEEP_INTERVAL_SECONDS": "1",
        "GATEWAY_READ_TIMEOUT": "2",
        "GATEWAY_CONNECT_TIMEOUT": "1",
        "PAYMENT_LOCK_WAIT_SECONDS": "10",
    }.items():
        os.environ.setdefault(_name, _value)

DEBUG = env.bool("DEBUG", default=False)
# PRODUCTION=1 (or the older REQUIRE_SECRET_KEY=1): every secret and gateway credential must come
# from the environment. Nothing falls back to the local sandbox merchant, and start-up stops
# with the names of what is missing (see the check at the end of the gateway section).
PRODUCTION = env.bool("PRODUCTION", default=False) or env.bool("REQUIRE_SECRET_KEY", default=False)
_LOCAL = local_credentials() if not PRODUCTION else None
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY and _LOCAL is not None:
    # Generated on first run into var/ (git-ignored), never committed.
    SECRET_KEY = _LOCAL["secret_key"]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Behind TLS in production: HTTPS=1 turns on redirects, secure cookies and HSTS.
HTTPS = env.bool("HTTPS", default=False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "shop",
    "orders",
    "payments",
    "refunds",
    "reconciliation",
]

MIDDLEWARE = [
    "shop.logs.RequestIdMiddleware",
    "shop.middleware.RequestGuardMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "shop.login_throttle.AdminLoginThrottleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shop.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"

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
                "shop.context_processors.cart_summary",
                "shop.context_processors.shop_identity",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/oncepay"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
# Persistent connections, checked before reuse: a request or task must not pay a new
# PostgreSQL connection each time (Celery's per-task close is lifted by CELERY_DB_REUSE_MAX).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# No network call happens inside a transaction, so one left idle this long is a bug (a thread
# that died mid-transaction); PostgreSQL ends it rather than let its locks stall every writer.
DB_IDLE_IN_TRANSACTION_SECONDS = env.int("DB_IDLE_IN_TRANSACTION_SECONDS", default=60)
if DB_IDLE_IN_TRANSACTION_SECONDS > 0:
    _db_options = DATABASES["default"].setdefault("OPTIONS", {})
    _db_options["options"] = (
        _db_options.get("options", "")
        + f" -c idle_in_transaction_session_timeout={DB_IDLE_IN_TRANSACTION_SECONDS * 1000}"
    ).strip()
DATABASES["default"].setdefault("TEST", {})
if env("PYTEST_VERSION", default=""):
    # Per run as well, so concurrent test runs on one machine keep to their own database.
    DATABASES["default"]["TEST"]["NAME"] = f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Every key this stack writes carries the prefix, so two stacks on one Redis never meet.
REDIS_KEY_PREFIX = env("REDIS_KEY_PREFIX", default="oncepay")
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX,
        "OPTIONS": {
            "CLIENT_CLASS": "django_redis.client.DefaultClient",
            "SOCKET_CONNECT_TIMEOUT": 2,
            "SOCKET_TIMEOUT": 2,
        },
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Pages in English and Simplified Chinese, chosen by the language switch (a cookie), else by
# Accept-Language; a browser that states neither gets SHOP_LANGUAGE.
LANGUAGE_CODE = env("SHOP_LANGUAGE", default="en")
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
# Times are stored in UTC and shown in the shop's time zone (a CNY shop: Beijing time).
SHOP_TIME_ZONE = env("SHOP_TIME_ZONE", default="Asia/Shanghai")
TIME_ZONE = SHOP_TIME_ZONE
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024  # callbacks and API bodies above 64 KiB are refused

# How many reverse proxies in front of us append to X-Forwarded-For (shop.clientip).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Failed logins (refund API Basic auth, admin login) per client address and per user name
# within the window before further attempts are refused with 429 until it passes.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=900)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "shop.errors.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["shop.parsers.SafeJSONParser"],
    "UNAUTHENTICATED_USER": None,
    # Throttles key on the client address the trusted proxies report (shop.clientip); with 0,
    # REMOTE_ADDR alone, so a forged X-Forwarded-For cannot reset a limit.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "order_create": env("RATE_LIMIT_ORDER_CREATE", default="120/min"),
        "apply_pay": env("RATE_LIMIT_APPLY_PAY", default="240/min"),
        "status": env("RATE_LIMIT_STATUS", default="1200/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Oncepay API",
    "DESCRIPTION": "Checkout that charges once per order.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
# Celery's Django fixup closes the database connection after every task unless told to reuse
# it; tasks check it before use instead (shop.celery), as requests do.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=10000)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 120
CELERY_TASK_SOFT_TIME_LIMIT = 100
# A countdown longer than the visibility timeout would be redelivered early; the longest we
# use is one poll step (default 300 s), well inside this.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
}
CELERY_TASK_DEFAULT_QUEUE = f"{REDIS_KEY_PREFIX}"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
# /healthz: the worker and beat mark themselves alive this often; a mark older than
# HEALTH_STALE_SECONDS does not count (shop.health).
HEALTH_HEARTBEAT_SECONDS = env.float("HEALTH_HEARTBEAT_SECONDS", default=2.0)
HEALTH_STALE_SECONDS = env.float("HEALTH_STALE_SECONDS", default=10.0)
CELERY_BEAT_SCHEDULER = "shop.celery:LivenessScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = HEALTH_HEARTBEAT_SECONDS

# --- Time settings (product.md) ---------------------------------------------------------------
ORDER_TTL_SECONDS = env.int("ORDER_TTL_SECONDS", default=1800)
PAYMENT_POLL_SCHEDULE = [
    int(step)
    for step in env.list("PAYMENT_POLL_SCHEDULE", default=["10", "20", "30", "60", "120", "300"])
]
# After the schedule, an open and unpaid trade is asked about at this interval until the
# order's deadline (it stays payable; expiry closes it at the gateway).
PAYMENT_POLL_LONG_INTERVAL_SECONDS = env.int("PAYMENT_POLL_LONG_INTERVAL_SECONDS", default=600)
SWEEP_INTERVAL_SECONDS = env.int("SWEEP_INTERVAL_SECONDS", default=10)
# Apply-pay schedules its first poll, and a recorded refund or outbox event goes to the worker,
# as soon as it commits; 0 leaves them to the beat sweeps (tests that drive services by hand).
TASK_FOLLOW_UPS_ENABLED = env.bool("TASK_FOLLOW_UPS_ENABLED", default=True)
SWEEP_BATCH_SIZE = env.int("SWEEP_BATCH_SIZE", default=100)
PAYMENT_LOCK_ENABLED = env.bool("PAYMENT_LOCK_ENABLED", default=True)
PAYMENT_LOCK_TTL_SECONDS = env.float("PAYMENT_LOCK_TTL_SECONDS", default=30.0)
PAYMENT_LOCK_WAIT_SECONDS = env.float("PAYMENT_LOCK_WAIT_SECONDS", default=5.0)
PAID_CACHE_TTL_SECONDS = env.int("PAID_CACHE_TTL_SECONDS", default=3600)
ORDER_DEDUPE_WINDOW_SECONDS = env.int("ORDER_DEDUPE_WINDOW_SECONDS", default=10)
IDEMPOTENCY_KEY_TTL_HOURS = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=24)
LATE_PAYMENT_GRACE_SECONDS = env.int("LATE_PAYMENT_GRACE_SECONDS", default=300)
ORDER_MAX_QUANTITY = env.int("ORDER_MAX_QUANTITY", default=99)
ORDER_MAX_LINES = env.int("ORDER_MAX_LINES", default=50)
REFUND_APPROVAL_THRESHOLD = env.int("REFUND_APPROVAL_THRESHOLD", default=100000)
# Reconciliation: both gateways publish day D's statement on the morning of D+1, China time.
RECONCILE_HOUR = env.int("RECONCILE_HOUR", default=11)
RECONCILE_RETRY_SECONDS = env.int("RECONCILE_RETRY_SECONDS", default=1800)
RECONCILE_MAX_RETRIES = env.int("RECONCILE_MAX_RETRIES", default=24)
STATEMENT_TMP_DIR = env("STATEMENT_TMP_DIR", default="")
# Event streams (SSE) held open per web process; past that a stream answers once (the page
# polls), so open pages never take the threads callbacks and health checks need.
EVENT_STREAMS_PER_PROCESS = env.int("EVENT_STREAMS_PER_PROCESS", default=2)
# Gateway events that failed verification come from anyone: keep a bounded prefix of their body
# and purge them after the retention period (verified events are kept).
UNVERIFIED_EVENT_BODY_CHARS = env.int("UNVERIFIED_EVENT_BODY_CHARS", default=2048)
UNVERIFIED_EVENT_RETENTION_HOURS = env.int("UNVERIFIED_EVENT_RETENTION_HOURS", default=72)

# --- Gateways ---------------------------------------------------------------------------------
SHOP_PORT = env.int("SHOP_PORT", default=8000)
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8001)
# Named in the subject the shopper sees at the gateway.
SHOP_NAME = env("SHOP_NAME", default="Oncepay Demo Shop")
SHOP_BASE_URL = env("SHOP_BASE_URL", default=f"http://127.0.0.1:{SHOP_PORT}").rstrip("/")
SANDBOX_BASE_URL = env("SANDBOX_BASE_URL", default=f"http://127.0.0.1:{SANDBOX_PORT}").rstrip("/")
GATEWAY_CONNECT_TIMEOUT = env.float("GATEWAY_CONNECT_TIMEOUT", default=3.0)
GATEWAY_READ_TIMEOUT = env.float("GATEWAY_READ_TIMEOUT", default=10.0)
NOTIFY_TIMESTAMP_WINDOW_SECONDS = env.int("NOTIFY_TIMESTAMP_WINDOW_SECONDS", default=300)

# (setting, environment variable, key in the local sandbox merchant's credentials). Outside
# production a missing variable falls back to the local sandbox merchant; in production it is
# an error, and so is a value equal to the sandbox's own (var/credentials.json, if present).
_GATEWAY_VARIABLES = {
    "alipay": [
        ("APP_ID", "ALIPAY_APP_ID", "app_id"),
        ("SELLER_ID", "ALIPAY_SELLER_ID", "seller_id"),
        ("APP_PRIVATE_KEY", "ALIPAY_APP_PRIVATE_KEY", "app_private_key_pem"),
        ("ALIPAY_PUBLIC_KEY", "ALIPAY_PUBLIC_KEY", "alipay_public_key_pem"),
    ],
    "wechat": [
        ("APPID", "WECHAT_APPID", "appid"),
        ("MCHID", "WECHAT_MCHID", "mchid"),
        ("MERCHANT_PRIVATE_KEY", "WECHAT_MERCHANT_PRIVATE_KEY", "merchant_private_key_pem"),
        ("MERCHANT_SERIAL_NO", "WECHAT_MERCHANT_SERIAL_NO", "merchant_serial_no"),
        ("APIV3_KEY", "WECHAT_APIV3_KEY", "apiv3_key"),
        ("PLATFORM_PUBLIC_KEY", "WECHAT_PLATFORM_PUBLIC_KEY", "platform_public_key_pem"),
        ("PLATFORM_PUBLIC_KEY_ID", "WECHAT_PLATFORM_PUBLIC_KEY_ID", "platform_public_key_id"),
    ],
}
PAYMENT_GATEWAYS: dict[str, dict[str, str]] = {
    channel: {
        name: env(variable, default=_LOCAL[channel][local] if _LOCAL is not None else "")
        for name, variable, local in variables
    }
    for channel, variables in _GATEWAY_VARIABLES.items()
}
PAYMENT_GATEWAYS["alipay"]["GATEWAY_URL"] = env(
    "ALIPAY_GATEWAY_URL", default=f"{SANDBOX_BASE_URL}/gateway.do"
)
PAYMENT_GATEWAYS["wechat"]["BASE_URL"] = env("WECHAT_BASE_URL", default=SANDBOX_BASE_URL).rstrip(
    "/"
)

# --- Downstream notifications (outbox) --------------------------------------------------------
OUTBOX_WEBHOOK_URL = env("OUTBOX_WEBHOOK_URL", default="")
OUTBOX_WEBHOOK_SECRET = env(
    "OUTBOX_WEBHOOK_SECRET", default=_LOCAL["webhook_secret"] if _LOCAL is not None else ""
)

if PRODUCTION:
    from shop.credentials import production_problems

    _problems = production_problems(
        env=os.environ,
        required=[
            "SECRET_KEY",
            "ALIPAY_GATEWAY_URL",
            "WECHAT_BASE_URL",
            *(variable for group in _GATEWAY_VARIABLES.values() for _, variable, _ in group),
        ],
        sandbox_values={
            variable: (channel, local)
            for channel, group in _GATEWAY_VARIABLES.items()
            for _, variable, local in group
        },
    )
    if _problems:
        raise ImproperlyConfigured(
            "Refusing to start in production (PRODUCTION=1 or REQUIRE_SECRET_KEY=1): "
            + "; ".join(_problems)
        )

# --- Observability (README: Configuration) ------------------------------------------------------
# JSON lines (one object per line, with request id, order id and out_trade_no) in production;
# ``text`` is the readable development format with the same fields.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = logging_config(fmt=LOG_FORMAT, level=env("LOG_LEVEL", default="INFO"))
# /metrics: with a token, only ``Authorization: Bearer <token>``; without one, loopback only.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
# Prometheus multiprocess mode: every web and worker process writes its samples here and
# /metrics adds them up. One directory per stack (per SHOP_PORT; per run under pytest), set
# before prometheus_client is first imported and inherited by the worker and beat processes.
if not env("PROMETHEUS_MULTIPROC_DIR", default=""):
    if env("PYTEST_VERSION", default=""):
        # A test run's own directory, fresh, and gone when the run ends.
        _metrics_dir = BASE_DIR / "var" / "metrics" / f"test-{os.getpid()}"
        shutil.rmtree(_metrics_dir, ignore_errors=True)
        atexit.register(shutil.rmtree, _metrics_dir, ignore_errors=True)
    else:
        _metrics_dir = BASE_DIR / "var" / "metrics" / str(SHOP_PORT)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR")
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
