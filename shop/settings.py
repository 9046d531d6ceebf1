"""Oncepay settings: everything that varies between machines comes from the environment.

See the README's "Configuration" section for every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from shop.credentials import local_credentials

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
_LOCAL = local_credentials()
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if env.bool("REQUIRE_SECRET_KEY", default=False):
        raise ImproperlyConfigured("SECRET_KEY must be set in production.")
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
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/oncepay"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False  # services own their transactions
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=0)
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
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

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "shop.errors.api_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": None,
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
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
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

# --- Time settings (product.md) ---------------------------------------------------------------
ORDER_TTL_SECONDS = env.int("ORDER_TTL_SECONDS", default=1800)
PAYMENT_POLL_SCHEDULE = [
    int(step)
    for step in env.list("PAYMENT_POLL_SCHEDULE", default=["10", "20", "30", "60", "120", "300"])
]
SWEEP_INTERVAL_SECONDS = env.int("SWEEP_INTERVAL_SECONDS", default=10)
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

# --- Gateways ---------------------------------------------------------------------------------
SHOP_PORT = env.int("SHOP_PORT", default=8000)
SANDBOX_PORT = env.int("SANDBOX_PORT", default=8001)
SHOP_BASE_URL = env("SHOP_BASE_URL", default=f"http://127.0.0.1:{SHOP_PORT}").rstrip("/")
SANDBOX_BASE_URL = env("SANDBOX_BASE_URL", default=f"http://127.0.0.1:{SANDBOX_PORT}").rstrip("/")
GATEWAY_CONNECT_TIMEOUT = env.float("GATEWAY_CONNECT_TIMEOUT", default=3.0)
GATEWAY_READ_TIMEOUT = env.float("GATEWAY_READ_TIMEOUT", default=10.0)
NOTIFY_TIMESTAMP_WINDOW_SECONDS = env.int("NOTIFY_TIMESTAMP_WINDOW_SECONDS", default=300)

_ali = _LOCAL["alipay"]
_wx = _LOCAL["wechat"]
PAYMENT_GATEWAYS = {
    "alipay": {
        "APP_ID": env("ALIPAY_APP_ID", default=_ali["app_id"]),
        "SELLER_ID": env("ALIPAY_SELLER_ID", default=_ali["seller_id"]),
        "APP_PRIVATE_KEY": env("ALIPAY_APP_PRIVATE_KEY", default=_ali["app_private_key_pem"]),
        "ALIPAY_PUBLIC_KEY": env("ALIPAY_PUBLIC_KEY", default=_ali["alipay_public_key_pem"]),
        "GATEWAY_URL": env("ALIPAY_GATEWAY_URL", default=f"{SANDBOX_BASE_URL}/gateway.do"),
    },
    "wechat": {
        "APPID": env("WECHAT_APPID", default=_wx["appid"]),
        "MCHID": env("WECHAT_MCHID", default=_wx["mchid"]),
        "MERCHANT_PRIVATE_KEY": env(
            "WECHAT_MERCHANT_PRIVATE_KEY", default=_wx["merchant_private_key_pem"]
        ),
        "MERCHANT_SERIAL_NO": env("WECHAT_MERCHANT_SERIAL_NO", default=_wx["merchant_serial_no"]),
        "APIV3_KEY": env("WECHAT_APIV3_KEY", default=_wx["apiv3_key"]),
        "PLATFORM_PUBLIC_KEY": env(
            "WECHAT_PLATFORM_PUBLIC_KEY", default=_wx["platform_public_key_pem"]
        ),
        "PLATFORM_PUBLIC_KEY_ID": env(
            "WECHAT_PLATFORM_PUBLIC_KEY_ID", default=_wx["platform_public_key_id"]
        ),
        "BASE_URL": env("WECHAT_BASE_URL", default=SANDBOX_BASE_URL).rstrip("/"),
    },
}

# --- Downstream notifications (outbox) --------------------------------------------------------
OUTBOX_WEBHOOK_URL = env("OUTBOX_WEBHOOK_URL", default="")
OUTBOX_WEBHOOK_SECRET = env("OUTBOX_WEBHOOK_SECRET", default=_LOCAL["webhook_secret"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
