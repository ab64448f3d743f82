"""HTTP model endpoints speaking the SageMaker container contract (POST raw tile bytes, GeoJSON back)."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import requests
from airflow.sdk import BaseHook
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from airflow_provider_osml.hooks.invocation_counts import InvocationCounts

# A model answer larger than this is refused: a FeatureCollection for one tile is kilobytes, rarely megabytes.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class ModelInvocationError(RuntimeError):
    """A model endpoint call failed after its retries."""


class EndpointNotAllowed(ValueError):
    """The endpoint URL is refused by the allow-list (checked before any connection is made)."""


def check_endpoint_url(
    url: str, *, allowed_hosts: Sequence[str] = (), allow_link_local: bool = False, resolve: bool = True
) -> None:
    """Refuse URLs whose host is not allowed: not in ``allowed_hosts`` (when given), or link-local / cloud
    metadata (unless ``allow_link_local``), including names that *resolve* to such addresses.

    The request parser already rejects literal metadata hosts; resolving here also catches DNS names
    pointing at 169.254.169.254 (an SSRF classic).
    """
    from airflow_provider_osml.request import _METADATA_HOSTS, _is_metadata_address

    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise EndpointNotAllowed(f"model endpoint {url!r} is not an http(s) URL with a host")
    if allowed_hosts and host not in {h.lower() for h in allowed_hosts}:
        raise EndpointNotAllowed(f"model endpoint host {host!r} is not in the allowed hosts ({', '.join(allowed_hosts)})")
    if allow_link_local:
        return
    if host in _METADATA_HOSTS or _is_metadata_address(host):
        raise EndpointNotAllowed(f"model endpoint host {host!r} is a link-local or cloud metadata address")
    if not resolve or _is_ip(host):
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        return  # unresolvable here: the connection attempt reports it
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        if _is_metadata_address(address):
            raise EndpointNotAllowed(
                f"model endpoint host {host!r} resolves to {address}, a link-local or cloud metadata address"
            )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HttpEndpointHook(BaseHook):
    """POSTs encoded tiles to an HTTP endpoint with pooling, timeouts, TLS verification and retries.

    osml-model-runner disables TLS verification and sets no timeout (spec 11 Q15); we verify by default
    and bound every call.

    :param endpoint_url: the full URL, e.g. ``https://models.example.com/invocations``.
    :param pool_size: connections kept open, normally the number of tile threads.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait for the answer (the container contract allows 60 s).
    :param retries: retries on connection errors, 429 and 5xx, with exponential backoff and jitter.
    :param verify: TLS verification: True, False, or a CA bundle path.
    :param allowed_hosts: when given, the only hosts the hook may call.
    :param allow_link_local: permit link-local / cloud metadata addresses (off: SSRF guard).
    """

    hook_name = "OSML HTTP model endpoint"

    def __init__(
        self,
        *,
        endpoint_url: str,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retries: int = 3,
        backoff_factor: float = 0.5,
        verify: bool | str = True,
        allowed_hosts: Sequence[str] = (),
        allow_link_local: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        check_endpoint_url(endpoint_url, allowed_hosts=allowed_hosts, allow_link_local=allow_link_local)
        self.endpoint_url = endpoint_url
        self.timeout = (connect_timeout, read_timeout)
        self.verify = verify
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_factor,
            backoff_jitter=backoff_factor,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self.retries = retries
        self.counts = InvocationCounts()
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def invoke(self, payload: bytes, *, content_type: str | None = None) -> dict:
        """Send one encoded tile; return the parsed JSON answer."""
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            response = self.session.post(
                self.endpoint_url,
                data=payload,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                stream=True,
            )
        except requests.RequestException as exc:
            # urllib3 gives up only after its retries: all of them were spent
            self.counts.add(calls=1, retries=self.retries, errors=1)
            raise ModelInvocationError(f"{type(exc).__name__}: {exc}") from exc
        history = getattr(getattr(response.raw, "retries", None), "history", ()) or ()
        self.counts.add(
            calls=1,
            retries=len(history),
            throttles=sum(1 for h in history if h.status == 429) + (response.status_code == 429),
            errors=response.status_code != 200,
        )
        with response:
            body = _read_limited(response)
            if response.status_code != 200:
                snippet = body[:200].decode("utf-8", "replace")
                raise ModelInvocationError(f"HTTP {response.status_code} from model endpoint: {snippet}")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ModelInvocationError(f"model answer is not JSON: {exc}") from exc

    def close(self) -> None:
        self.session.close()


def _read_limited(response: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ModelInvocationError(f"model answer exceeds {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
