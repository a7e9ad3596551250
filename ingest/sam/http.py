"""The SAMWeb HTTP client: what samweb_client's ``http_client_requests`` does, with bounds.

Why not samweb_client itself: it is not installable here (Python 2, not on PyPI), and its retry loop
retries 5xx and connection errors for up to six hours with one-hour socket timeouts, which would
hang a follower. This client keeps its protocol and changes the bounds:

* the same requests: ``Accept: application/json``; dimensions longer than 1,024 characters go in a
  POST body (``_callDimensions``: SAM limits the length of a GET);
* errors as samweb_client reads them: a JSON body ``{"error": ..., "message": ...}`` or the text;
  any 4xx is raised at once (never retried, like the client); 5xx, connection errors and timeouts
  are retried with exponential backoff a bounded number of times, then ``SamUnavailable``;
* SAM's "query limit" answer (POMS ``samweb_lite.count_files_list`` looks for that text, whatever the
  status) is ``SamQueryLimit``, an error the user sees, never retried;
* timeouts of seconds (connect, read) instead of an hour;
* auth as samweb_client: an X.509 proxy as the TLS client certificate (``X509_USER_PROXY``, or
  ``X509_USER_CERT`` + ``X509_USER_KEY``, or ``/tmp/x509up_u<uid>``), or a WLCG bearer token
  (``BEARER_TOKEN``, ``BEARER_TOKEN_FILE``, ``$XDG_RUNTIME_DIR/bt_u<uid>``, ``/tmp/bt_u<uid>``) sent as
  ``Authorization: Bearer``; reads need none. Files found in /tmp are used for https URLs only.

Every request is counted (``requests_made``) so a poll can report and bound its cost.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger("stagewatch.sam.http")

#: samweb_client switches from GET to POST above this many characters of dimensions.
MAX_GET_DIMS = 1024
#: A GET URL longer than this is split (bulk locations by file name).
MAX_GET_URL = 4000


class SamError(Exception):
    """A SAM failure whose message is a sentence the user can act on."""


class SamHttpError(SamError):
    """SAM refused the request (4xx): never retried; the message is SAM's."""

    def __init__(self, method: str, url: str, code: int, message: str, error_type: str | None = None) -> None:
        self.method, self.url, self.code, self.message, self.error_type = method, url, code, message, error_type
        kind = f" ({error_type})" if error_type else ""
        super().__init__(f"SAM answered {code}{kind} to {method} {url}: {message}")


class SamQueryLimit(SamError):
    """SAM refused a query as too large ("query limit"): narrow the definition or --output-dims."""


class SamUnavailable(SamError):
    """SAM did not answer (5xx, connection refused, timeout) after every retry."""


class SamBadResponse(SamError):
    """SAM answered 2xx with a body that is not what the API documents."""


def escape_component(s: str) -> str:
    """A path component as samweb_client escapes it (``escape_url_component``: nothing is safe)."""
    return quote(s, safe="")


def _is_query_limit(text: str) -> bool:
    return "query limit" in text.lower()


@dataclass
class Auth:
    """What to send: a client certificate (path, or (cert, key)) and/or a bearer token."""

    cert: str | tuple[str, str] | None = None
    token: str | None = None

    @staticmethod
    def discover(url: str, *, cert: str | None = None, key: str | None = None,
                 token_file: str | None = None, env: Mapping[str, str] | None = None) -> "Auth":
        """Options first, then the environment variables samweb_client and WLCG tools read."""
        env = os.environ if env is None else env
        secure = url.startswith("https:")
        uid = os.getuid()
        the_cert: str | tuple[str, str] | None = None
        if cert:
            the_cert = (cert, key) if key else cert
        elif env.get("X509_USER_PROXY"):
            the_cert = env["X509_USER_PROXY"]
        elif env.get("X509_USER_CERT") and env.get("X509_USER_KEY"):
            the_cert = (env["X509_USER_CERT"], env["X509_USER_KEY"])
        elif secure and os.path.exists(f"/tmp/x509up_u{uid}"):
            the_cert = f"/tmp/x509up_u{uid}"
        token: str | None = None
        if token_file:
            token = _read_token(token_file)
        elif env.get("BEARER_TOKEN"):
            token = env["BEARER_TOKEN"].strip()
        elif env.get("BEARER_TOKEN_FILE"):
            token = _read_token(env["BEARER_TOKEN_FILE"])
        elif secure:
            for candidate in (os.path.join(env.get("XDG_RUNTIME_DIR", ""), f"bt_u{uid}") if env.get("XDG_RUNTIME_DIR")
                              else None, f"/tmp/bt_u{uid}"):
                if candidate and os.path.exists(candidate):
                    token = _read_token(candidate)
                    break
        return Auth(cert=the_cert, token=token or None)


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    except OSError as exc:
        raise SamError(f"Cannot read the bearer token file {path} ({exc.strerror or exc}); pass --token-file "
                       "with a readable file or unset BEARER_TOKEN_FILE.") from None


class SamHttp:
    """One SAMWeb experiment API root (``https://samweb.fnal.gov:8483/sam/nova/api``), thread-safe."""

    def __init__(self, base_url: str, *, auth: Auth | None = None, connect_timeout_s: float = 5.0,
                 read_timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 1.0, max_backoff_s: float = 30.0,
                 pool_size: int = 4, verify: bool | str = True, sleep: Callable[[float], None] = time.sleep) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise SamError(f"--url {base_url!r} is not an http(s) URL; give the SAMWeb API root, e.g. "
                           "https://samweb.fnal.gov:8483/sam/nova/api")
        self.base_url = base_url.rstrip("/")
        self.auth = auth or Auth()
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sleep = sleep
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.verify = verify
        if self.auth.cert:
            self.session.cert = self.auth.cert
        self.session.headers.update({"Accept": "application/json", "User-Agent": "stagewatch-sam/1"})
        if self.auth.token:
            self.session.headers["Authorization"] = f"Bearer {self.auth.token}"
        self._lock = threading.Lock()
        self.requests_made = 0
        self.retried = 0

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------------------------------ calls
    def get(self, path: str, params: Any = None) -> requests.Response:
        return self._do("GET", path, params=params)

    def post(self, path: str, data: Any = None, params: Any = None) -> requests.Response:
        return self._do("POST", path, params=params, data=data if data else None)

    def dims(self, path: str, dimensions: str, params: dict[str, Any] | None = None) -> requests.Response:
        """samweb_client's ``_callDimensions``: GET with ``dims=``, POST once the dimensions are long."""
        params = dict(params or {})
        if len(dimensions) > MAX_GET_DIMS:
            return self.post(path, data={"dims": dimensions}, params=params)
        params["dims"] = dimensions
        return self.get(path, params=params)

    def url(self, path: str) -> str:
        return self.base_url + path

    def _do(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.url(path)
        delay = self.backoff_s
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self.requests_made += 1
            try:
                resp = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise SamError(f"TLS error talking to {url}: {exc}; check the proxy/certificate (--cert, "
                               "X509_USER_PROXY) and the CA directory (X509_CERT_DIR).") from None
            except requests.exceptions.Timeout:
                problem = f"no answer within {self.timeout[1]:g} s"
            except requests.exceptions.ConnectionError as exc:
                problem = f"cannot connect ({_short(exc)})"
            else:
                code = resp.status_code
                if 200 <= code < 300:
                    if _is_query_limit(resp.text[:2000]) and _looks_like_error_text(resp):
                        raise SamQueryLimit(_query_limit_sentence(method, url, resp.text))
                    return resp
                message, error_type = _error_message(resp)
                if _is_query_limit(message):
                    raise SamQueryLimit(_query_limit_sentence(method, url, message))
                if 400 <= code < 500:
                    log.warning("sam.refused method=%s url=%s code=%d message=%s", method, url, code, message)
                    raise SamHttpError(method, url, code, message, error_type)
                problem = f"HTTP {code}: {message}"
            if attempt > self.retries:
                raise SamUnavailable(f"SAM at {self.base_url} did not answer {method} {path}: {problem}, after "
                                     f"{attempt} attempts; check the URL and SAM's status, then retry.")
            with self._lock:
                self.retried += 1
            log.warning("sam.retry method=%s path=%s attempt=%d problem=%s wait_s=%g", method, path, attempt,
                        problem, delay)
            self.sleep(delay)
            delay = min(delay * 2, self.max_backoff_s)


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _looks_like_error_text(resp: requests.Response) -> bool:
    """A 2xx plain-text body that is SAM's query-limit message rather than a file list (names hold no
    spaces). JSON answers are data: a metadata value may well contain the words."""
    if "json" in resp.headers.get("Content-Type", ""):
        return False
    text = resp.text.strip()
    if "\n" not in text:
        return True
    return any(" " in line and _is_query_limit(line) for line in text.splitlines()[:5])


def _error_message(resp: requests.Response) -> tuple[str, str | None]:
    """What samweb_client shows for a failed request: the JSON error's message, else the body text."""
    ctype = resp.headers.get("Content-Type", "")
    if "application/json" in ctype:
        try:
            body = resp.json()
            return str(body.get("message", body))[:1000], (str(body["error"]) if "error" in body else None)
        except (ValueError, AttributeError):
            pass
    text = resp.text.strip()
    if resp.status_code >= 500 and not _is_query_limit(text):
        return f"{resp.reason or ''}".strip() or "server error", None
    return (text[:1000] or (resp.reason or "no message")), None


def _query_limit_sentence(method: str, url: str, message: str) -> str:
    return (f"SAM refused {method} {url} because of its query limit ({message.strip()[:300]}); narrow the "
            "definition or --output-dims (for example add a version or a create_date range) and poll again.")
