"""The TLS settings and the ``ssl.SSLContext`` they make.

Theory of operation. The context is built from files on disk (``--certfile``, ``--keyfile``,
``--ca-certs``) once per code generation: the master builds one at start-up to refuse a
missing, unreadable or mismatched certificate with a one-line error before anything binds,
and each zygote builds its generation's own before forking workers, which inherit it. So
``kill -HUP`` (a new generation) picks up a renewed certificate; if the new files are broken
the new generation fails to start and the old one keeps serving. Workers never read the files.

The context is a plain server context (``ssl.PROTOCOL_TLS_SERVER``: TLS 1.2 at least by default,
Python's secure cipher list, no compression, session tickets shared by the workers of a
generation since they inherit the same keys). ``wrap`` hooks are the worker's business
(``corral.worker.tls``). Nothing here imports the rest of corral.
"""

from __future__ import annotations

import enum
import re
import ssl
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["CertReqs", "TLSConfig", "build_context", "check_min_version"]


class CertReqs(StrEnum):
    """``--cert-reqs``: whether clients must present a certificate (``ssl.CERT_*``)."""

    NONE = "none"
    OPTIONAL = "optional"
    REQUIRED = "required"

    @classmethod
    def _missing_(cls, value: object) -> CertReqs | None:
        """gunicorn's spellings: ``ssl.CERT_REQUIRED`` (the int 2), "2", "CERT_REQUIRED"."""
        words = {0: cls.NONE, 1: cls.OPTIONAL, 2: cls.REQUIRED}
        if isinstance(value, enum.IntEnum | int) and not isinstance(value, bool):
            return words.get(int(value))
        if isinstance(value, str):
            text = value.strip().lower().removeprefix("cert_")
            if text.isascii() and text.isdigit():
                return words.get(int(text))
            return next((m for m in cls if m.value == text), None)
        return None

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        return {
            CertReqs.NONE: ssl.CERT_NONE,
            CertReqs.OPTIONAL: ssl.CERT_OPTIONAL,
            CertReqs.REQUIRED: ssl.CERT_REQUIRED,
        }[self]


class TLSConfig(Protocol):
    """The settings the context is made of (``corral.config.Config`` has them all)."""

    @property
    def certfile(self) -> str: ...
    @property
    def keyfile(self) -> str: ...
    @property
    def ca_certs(self) -> str: ...
    @property
    def cert_reqs(self) -> CertReqs: ...
    @property
    def ciphers(self) -> str: ...
    @property
    def ssl_min_version(self) -> str: ...


def check_min_version(name: Any) -> None:
    """A name of ``ssl.TLSVersion`` (``TLSv1_2``, ``TLSv1_3``, ...), or ValueError."""
    if name not in ssl.TLSVersion.__members__:
        raise ValueError(f"must be one of {', '.join(ssl.TLSVersion.__members__)}")


def build_context(cfg: TLSConfig) -> ssl.SSLContext | None:
    """The server context for ``cfg``, None when TLS is off (no certfile); ``ValueError``
    with a one-line message naming the file when a file is missing, unreadable or wrong."""
    if not cfg.certfile:
        if cfg.keyfile or cfg.ca_certs:
            raise ValueError("keyfile/ca_certs given without certfile: TLS needs a certificate")
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    check_min_version(cfg.ssl_min_version)
    ctx.minimum_version = ssl.TLSVersion[cfg.ssl_min_version]
    _load_chain(ctx, cfg.certfile, cfg.keyfile or None)
    if cfg.ciphers:
        try:
            ctx.set_ciphers(cfg.ciphers)
        except ssl.SSLError:
            raise ValueError(f"ciphers {cfg.ciphers!r}: OpenSSL knows none of them") from None
    if cfg.ca_certs:
        try:
            ctx.load_verify_locations(cafile=cfg.ca_certs)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load ca_certs {cfg.ca_certs}: {_why(exc)}") from None
    elif cfg.cert_reqs is not CertReqs.NONE:
        raise ValueError(f"cert_reqs={cfg.cert_reqs.value} needs ca_certs to verify clients with")
    ctx.verify_mode = cfg.cert_reqs.verify_mode
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _load_chain(ctx: ssl.SSLContext, certfile: str, keyfile: str | None) -> None:
    for label, path in (("certfile", certfile), ("keyfile", keyfile)):
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {label} {path}: {exc.strerror}") from None
    try:
        ctx.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        where = f"{certfile} and {keyfile}" if keyfile else certfile
        raise ValueError(f"cannot use the certificate in {where}: {_why(exc)}") from None


_REASONS = {
    "KEY_VALUES_MISMATCH": "the key does not match the certificate",
    "PEM_LIB": "not a PEM certificate and key (is the key missing?)",
    "NO_START_LINE": "not a PEM file",
}


def _why(exc: BaseException) -> str:
    """OpenSSL's complaint in words, without its source-file suffix."""
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ("PEM_LIB" if "PEM lib" in str(exc) else None)
        if reason:
            return _REASONS.get(reason, reason.lower().replace("_", " "))
    text = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    return re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
