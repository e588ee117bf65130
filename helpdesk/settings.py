"""Settings: the ``HELPDESK_*`` keys, read once by the caller and passed down.

Precedence, highest first: the process environment, a ``.env`` file in the
working directory, ``instance/config.toml``, then the defaults below. Nothing
here runs at import time; ``Settings.load()`` is called by the CLI and by the
app factory, and everything else receives the resulting object.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from helpdesk.instance import create_private_file, private_dir

PREFIX = "HELPDESK_"
MIB = 1024 * 1024


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which."""


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults of DESIGN.md's contract."""

    instance_path: Path = Path("instance")
    database_url: str = "sqlite:///instance/helpdesk.db"
    secret_key: str = ""
    mail_domain: str = "example.com"
    smtp_relay: str = "127.0.0.1:25"
    smtp_relay_starttls: bool = False
    smtp_relay_tls: bool = False
    smtp_relay_user: str = ""
    smtp_relay_password: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    require_tls: bool = False
    timezone: str = "UTC"
    # Optional DKIM signing of outgoing mail (dkimpy); domain defaults to mail_domain.
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    # Gateway limits.
    max_message_size: int = 25 * MIB
    max_recipients: int = 100
    max_connections: int = 200
    # One client address (an IPv6 client by its /64) may hold this many sessions.
    max_connections_per_ip: int = 20
    max_commands_per_session: int = 10_000
    # Seconds a session may last from its start, whatever it does (421 then).
    smtp_session_lifetime: float = 600.0
    # A bare LF in DATA is refused (554 5.5.2) unless allowed; then the parser
    # reads it as it reads Unix line endings.
    smtp_allow_bare_lf: bool = False
    smtp_timeout: float = 300.0
    smtp_hostname: str = ""
    intake_timeout: float = 30.0
    # Bytes of DATA held in memory across all SMTP sessions; beyond it, 451 4.3.1.
    max_spool_memory: int = 256 * MIB
    # Parsing: caps checked on the raw bytes, and a bound on the parse itself.
    max_mime_parts: int = 1000
    max_mime_depth: int = 30
    max_header_size: int = 100 * 1024
    parse_timeout: float = 2.0
    parse_workers: int = 2
    database_timeout: float = 5.0
    # Mail behaviour.
    subject_tag_prefix: str = "HD#"
    # The authserv-id of the MX in front of us: its Authentication-Results are believed.
    trusted_authserv_id: str = ""
    # Characters of a message's text, and of its HTML, that a page shows (beyond: a link
    # to the original).
    max_display_body: int = 256 * 1024
    # CCs a ticket takes from mail (the rest are recorded on the message, not mailed).
    max_mail_ccs: int = 10
    ack_window_minutes: int = 60
    # Acknowledgements per clock hour, in all and to one recipient domain (backscatter caps).
    ack_max_per_hour: int = 200
    ack_max_per_domain_per_hour: int = 30
    sender_name: str = "Support"
    # Optional Reply-To on outgoing mail (default: none, replies go to the queue address).
    reply_to: str = ""
    # The site's address, for links in mail; https:// here also makes cookies Secure.
    base_url: str = "http://127.0.0.1:8080"
    # Set when the web app is served over HTTPS (behind a TLS proxy).
    secure_cookies: bool = False
    # Proxies (addresses or CIDRs, comma-separated) whose X-Forwarded-For is believed.
    trusted_proxies: str = ""
    # Requests one API token may make, per web process (``limits`` notation).
    api_rate_limit: str = "600/minute"

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        instance_path: str | Path | None = None,
        dotenv_path: str | Path | None = ".env",
        **overrides: object,
    ) -> Settings:
        """Read settings from config.toml, .env and the environment, in that order."""
        environ = os.environ if environ is None else environ
        raw: dict[str, str] = {}
        instance = Path(instance_path or environ.get(PREFIX + "INSTANCE_PATH") or cls.instance_path)
        config_file = instance / "config.toml"
        if config_file.is_file():
            with config_file.open("rb") as fh:
                data = tomllib.load(fh)
            for key, value in data.items():
                name = key.upper()
                if name.startswith(PREFIX):
                    name = name[len(PREFIX) :]
                raw[name] = str(value).lower() if isinstance(value, bool) else str(value)
        if dotenv_path and Path(dotenv_path).is_file():
            for key, value in dotenv_values(dotenv_path).items():
                if key.startswith(PREFIX) and value is not None:
                    raw[key[len(PREFIX) :]] = value
        for key, value in environ.items():
            if key.startswith(PREFIX):
                raw[key[len(PREFIX) :]] = value

        values: dict[str, Any] = {"instance_path": instance}  # each converted to its field type
        known = {f.name: f for f in fields(cls)}
        for name, value in raw.items():
            attr = name.lower()
            if attr == "instance_path" or attr not in known:
                continue
            default = getattr(cls, attr, None)
            try:
                if isinstance(default, bool):
                    values[attr] = _bool(value)
                elif isinstance(default, int):
                    values[attr] = int(value)
                elif isinstance(default, float):
                    values[attr] = float(value)
                else:
                    values[attr] = value
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name}: {exc}") from exc
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise SettingsError with a clear message for a malformed value."""
        if "@" in self.mail_domain or not self.mail_domain.strip():
            raise SettingsError(
                f"{PREFIX}MAIL_DOMAIN must be a bare domain, got {self.mail_domain!r}"
            )
        host, _, port = self.smtp_relay.rpartition(":")
        if not host or not port.isdigit():
            raise SettingsError(f"{PREFIX}SMTP_RELAY must be host:port, got {self.smtp_relay!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY must be set together")
        if bool(self.dkim_key_file) != bool(self.dkim_selector):
            raise SettingsError(
                f"{PREFIX}DKIM_KEY_FILE and {PREFIX}DKIM_SELECTOR must be set together"
            )
        if self.require_tls and not self.tls_cert:
            raise SettingsError(f"{PREFIX}REQUIRE_TLS needs {PREFIX}TLS_CERT and {PREFIX}TLS_KEY")
        if not self.base_url.startswith(("http://", "https://")):
            raise SettingsError(f"{PREFIX}BASE_URL must start with http:// or https://")
        _ = self.trusted_proxy_networks  # raises SettingsError when malformed
        try:
            from limits import parse_many

            parse_many(self.api_rate_limit) if self.api_rate_limit.strip() else None
        except ValueError as exc:
            raise SettingsError(
                f"{PREFIX}API_RATE_LIMIT must look like 600/minute, got {self.api_rate_limit!r}"
            ) from exc

    @property
    def https(self) -> bool:
        """The site is served over HTTPS: its cookies are Secure (and ``__Host-``)."""
        return self.secure_cookies or self.base_url.lower().startswith("https://")

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        networks = []
        for item in self.trusted_proxies.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError as exc:
                raise SettingsError(
                    f"{PREFIX}TRUSTED_PROXIES: {item!r} is not an address or network"
                ) from exc
        return tuple(networks)

    @property
    def relay_address(self) -> tuple[str, int]:
        host, _, port = self.smtp_relay.rpartition(":")
        return host.strip("[]"), int(port)

    def with_secret_key(self) -> Settings:
        """Return settings whose secret key is set, generating it once into the instance."""
        if self.secret_key:
            return self
        key_file = self.instance_path / "secret_key"
        if not key_file.is_file():
            private_dir(self.instance_path)
            # Write (0600 from the start) then link: two processes starting at once
            # agree on one key.
            tmp = key_file.with_name(f".secret_key.{os.getpid()}")
            tmp.unlink(missing_ok=True)
            create_private_file(tmp, secrets.token_urlsafe(48).encode())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, key_file)
            tmp.unlink()
        key = key_file.read_text().strip()
        return replace(self, secret_key=key)
