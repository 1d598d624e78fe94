"""The proxy and TLS section of the settings table: forwarded headers, the PROXY protocol and
corral's own TLS (docs/deploy.md, "Behind a proxy" and "TLS")."""

from __future__ import annotations

from typing import Any

from corral.http.forwarded import DEFAULT_ALLOW, TrustedProxies
from corral.http.proxyproto import ProxyMode
from corral.settings_core import ConfigError, Setting
from corral.tlsconfig import CertReqs, check_min_version


def _allow_list(v: Any) -> None:
    try:
        TrustedProxies(v)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _min_version(v: Any) -> None:
    try:
        check_min_version(v)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


SECTION = "proxy and TLS"
S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "forwarded_allow_ips",
        list,
        list(DEFAULT_ALLOW),
        "Proxies whose X-Forwarded-Proto/-For/-Host/-Port and Forwarded (RFC 7239) headers set "
        "the scheme, client address and host: IPs or networks (10.0.0.0/8), * for any "
        "(gunicorn's default and meaning; a unix-socket peer is trusted). From other peers "
        "the headers are ignored.",
        validator=_allow_list,
        section=SECTION,
        metavar="IPS",
    ),
    S(
        "proxy_protocol",
        ProxyMode,
        ProxyMode.OFF,
        "PROXY protocol header expected from an allowed proxy (HAProxy send-proxy: v1, "
        "send-proxy-v2: v2; auto: either, or none); it names the real client (REMOTE_ADDR). "
        "A connection from an allowed proxy without a valid header is closed.",
        section=SECTION,
    ),
    S(
        "proxy_allow_ips",
        list,
        list(DEFAULT_ALLOW),
        "Peers whose PROXY protocol header is read (as forwarded_allow_ips; gunicorn's "
        "default). Other peers speak plain HTTP.",
        validator=_allow_list,
        section=SECTION,
        metavar="IPS",
        aliases=("--proxy-allow-from",),
    ),
    S(
        "certfile",
        str,
        "",
        "TLS certificate (PEM, chain included); setting it serves HTTPS on every bind. Read "
        "at start and again on HUP (a new generation).",
        section=SECTION,
        metavar="FILE",
    ),
    S(
        "keyfile",
        str,
        "",
        "TLS private key (PEM); empty when certfile holds the key too.",
        section=SECTION,
        metavar="FILE",
    ),
    S(
        "ca_certs",
        str,
        "",
        "CA certificates (PEM) that client certificates are verified against.",
        section=SECTION,
        metavar="FILE",
    ),
    S(
        "cert_reqs",
        CertReqs,
        CertReqs.NONE,
        "Client certificates: none, optional (verified when sent) or required (needs "
        "ca_certs). gunicorn's 0/1/2 are accepted.",
        section=SECTION,
    ),
    S(
        "ciphers",
        str,
        "",
        "OpenSSL cipher list for TLS 1.2 (empty = Python's secure default).",
        section=SECTION,
    ),
    S(
        "ssl_min_version",
        str,
        "TLSv1_2",
        "Lowest TLS version accepted: a name of ssl.TLSVersion (TLSv1_2, TLSv1_3).",
        validator=_min_version,
        section=SECTION,
    ),
)
