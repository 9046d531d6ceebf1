# Read by gunicorn from the working directory (scripts/run and the chaos stack start it here):
# the multiprocess metrics hooks (shop/gunicorn_conf.py) and the redacting access log.
from shop.gunicorn_conf import child_exit, on_starting

__all__ = ["child_exit", "logger_class", "on_starting", "pre_request"]

# The access log must never record a signature, token or nonce from a query string.
logger_class = "shop.gunicorn_support.RedactingLogger"


def pre_request(worker, req):  # type: ignore[no-untyped-def]
    """A body over the upload limit is refused unread (413, shop.middleware); gunicorn drops a
    Connection header set by the application, so close the connection here, where it counts."""
    from shop.gunicorn_support import close_if_oversized

    worker.log.debug("%s %s", req.method, req.path)
    close_if_oversized(req)
