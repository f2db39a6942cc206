"""HTTP health probes of the components, as readiness checks for ``process.wait_for``.

Probes go straight to 127.0.0.1, never through a proxy from the environment.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.testenv.pki import Pki

Check = Callable[[], "str | None"]


def http(url: str, context: ssl.SSLContext | None = None) -> Check:
    """Ready when ``url`` answers 200."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)

    def check() -> str | None:
        try:
            with opener.open(url, timeout=2) as response:
                return None if response.status == 200 else f"{url} answered {response.status}"
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")[-300:]
            return f"{url} answered {error.code}: {body}"
        except (urllib.error.URLError, OSError) as error:
            return f"{url}: {getattr(error, 'reason', error)}"

    return check


def trusted(pki: Pki, client_cert: bool = False) -> ssl.SSLContext:
    """Trusts our CA; with ``client_cert``, authenticates as the admin."""
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    if client_cert:
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return context


def self_signed() -> ssl.SSLContext:
    """For the controller manager and scheduler, which serve certificates they made themselves."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
