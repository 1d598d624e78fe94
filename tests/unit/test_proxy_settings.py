"""The proxy and TLS settings: gunicorn's spellings, the environment, config files, and what a
worker gets of them."""

from __future__ import annotations

import argparse
import ssl
from pathlib import Path

import pytest

from corral import cli, config
from corral.http.proxyproto import ProxyMode
from corral.master.worker_settings import worker_settings
from corral.tlsconfig import CertReqs


def _load(*argv: str, environ: dict[str, str] | None = None) -> config.Config:
    return config.load(cli._serve_parser().parse_args(list(argv)), environ=environ or {})


def test_defaults_are_gunicorns() -> None:
    cfg = config.defaults()
    assert cfg.forwarded_allow_ips == cfg.proxy_allow_ips == ["127.0.0.1", "::1"]
    assert cfg.proxy_protocol is ProxyMode.OFF and cfg.cert_reqs is CertReqs.NONE
    settings = worker_settings(cfg)
    assert "127.0.0.1" in settings.forwarded_allow and "10.0.0.1" not in settings.forwarded_allow
    assert settings.tls is None


def test_gunicorn_flags_and_the_environment() -> None:
    cfg = _load(
        *("--forwarded-allow-ips", "10.0.0.0/8,192.168.0.1", "--proxy-protocol", "v2"),
        *("--proxy-allow-from", "*", "--cert-reqs", "2", "--ssl-min-version", "TLSv1_3"),
    )
    assert cfg.forwarded_allow_ips == ["10.0.0.0/8,192.168.0.1"]  # gunicorn's comma list
    assert cfg.proxy_protocol is ProxyMode.V2 and cfg.proxy_allow_ips == ["*"]
    assert cfg.cert_reqs is CertReqs.REQUIRED and cfg.ssl_min_version == "TLSv1_3"
    settings = worker_settings(cfg)
    assert "10.9.9.9" in settings.forwarded_allow and "192.168.0.1" in settings.forwarded_allow
    assert "192.168.0.2" not in settings.forwarded_allow and "203.0.113.1" in settings.proxy_allow
    env = _load(environ={"CORRAL_FORWARDED_ALLOW_IPS": "*", "CORRAL_PROXY_PROTOCOL": "auto"})
    assert env.forwarded_allow_ips == ["*"] and env.proxy_protocol is ProxyMode.AUTO


def test_python_config_with_gunicorns_values(tmp_path: Path) -> None:
    path = tmp_path / "gunicorn.conf.py"
    path.write_text(
        "import ssl\nforwarded_allow_ips = '*'\nproxy_protocol = True\n"
        "cert_reqs = ssl.CERT_OPTIONAL\nproxy_allow_ips = ['10.1.1.1', '10.1.1.2']\n"
    )
    cfg = config.load(argparse.Namespace(config=str(path)), environ={})
    assert cfg.forwarded_allow_ips == ["*"] and cfg.proxy_protocol is ProxyMode.AUTO
    assert cfg.cert_reqs is CertReqs.OPTIONAL and cfg.cert_reqs.verify_mode == ssl.CERT_OPTIONAL
    assert cfg.proxy_allow_ips == ["10.1.1.1", "10.1.1.2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--forwarded-allow-ips", "10.0.0.1,nope"), "'nope' is not an IP address or network"),
        (("--proxy-allow-from", "1.2.3.4/40"), "not an IP address or network"),
        (("--proxy-protocol", "v3"), "must be one of off, v1, v2, auto"),
        (("--cert-reqs", "sometimes"), "must be one of none, optional, required"),
        (("--ssl-min-version", "TLS1.2"), "must be one of"),
    ],
)
def test_bad_values_are_one_line_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message) as info:
        _load(*argv)
    assert "\n" not in str(info.value)


def test_gunicorns_forwarded_allow_ips_variable_is_the_default(tmp_path: Path) -> None:
    assert _load(environ={"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == ["*"]
    both = {"FORWARDED_ALLOW_IPS": "*", "CORRAL_FORWARDED_ALLOW_IPS": "10.0.0.1"}
    assert _load(environ=both).forwarded_allow_ips == ["10.0.0.1"]
    path = tmp_path / "c.toml"
    path.write_text('forwarded_allow_ips = ["10.0.0.2"]\n')
    from_file = config.load(
        argparse.Namespace(config=str(path)), environ={"FORWARDED_ALLOW_IPS": "*"}
    )
    assert from_file.forwarded_allow_ips == ["10.0.0.2"]
    with pytest.raises(config.ConfigError, match="environment FORWARDED_ALLOW_IPS"):
        _load(environ={"FORWARDED_ALLOW_IPS": "bogus"})
