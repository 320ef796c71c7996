"""Where to upload and with which key: resolved the way users of the official SDK expect.

Sources, first found wins:

* API key: ``--api-key``, then ``$COMET_API_KEY``, then ``api_key`` in the ``[comet]`` section of
  the config file (``$COMET_CONFIG``, else ``./.comet.config``, else ``~/.comet.config``).
* Server root: ``--url``, then ``$COMET_URL_OVERRIDE``, then ``url_override`` in the config
  file, then the ``baseUrl`` embedded in an API key of the form ``<key>*<base64 JSON>``, then
  ``https://www.comet.com``. The SDK's ``.../clientlib/`` form is accepted and reduced to its
  root, because every request the uploader builds starts from the root.

The key is held in a :class:`Secret`, whose ``repr``/``str`` never show it, and is registered
with :func:`comet_journal.uploader.errors.redact` so no error message or log line can carry it.

Example::

    cfg = resolve(api_key=None, url="http://127.0.0.1:8080/clientlib/")
    cfg.url            # 'http://127.0.0.1:8080'
    cfg.api_key        # Secret('***')
"""

from __future__ import annotations

import base64
import configparser
import json
import os
from dataclasses import dataclass
from typing import Final, Mapping
from urllib.parse import urlsplit, urlunsplit

from comet_journal.uploader.errors import ConfigError, register_secret

DEFAULT_URL: Final = "https://www.comet.com"
CONFIG_FILE_NAME: Final = ".comet.config"


class Secret:
    """A string that never prints itself. ``reveal()`` is the only way to read it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class UploadConfig:
    """Everything the uploader needs to reach one server.

    ``workspace``/``project`` are the command line's overrides of the journal's names (None:
    keep the journal's). ``default_workspace`` is used only when the journal names none.
    """

    api_key: Secret
    url: str
    key_source: str
    workspace: str | None = None
    project: str | None = None
    default_workspace: str | None = None
    ca_bundle: str | None = None
    state_dir: str | None = None  # where upload progress is kept (None: default_state_dir())

    @property
    def identity(self) -> str:
        """The server identity progress is recorded under: a journal can be uploaded to
        several servers (or workspaces) and each keeps its own progress."""
        return f"{self.url}|ws={self.workspace or ''}|project={self.project or ''}"


def _config_files(environ: Mapping[str, str]) -> list[str]:
    explicit = environ.get("COMET_CONFIG")
    if explicit:
        return [os.path.expanduser(explicit)]
    return [os.path.join(os.getcwd(), CONFIG_FILE_NAME),
            os.path.join(os.path.expanduser("~"), CONFIG_FILE_NAME)]


def read_config_file(environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """The ``[comet]`` section of the first config file that exists, and its path."""
    environ = os.environ if environ is None else environ
    for path in _config_files(environ):
        if not os.path.isfile(path):
            continue
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the config file {path}: {type(exc).__name__}",
                              "fix its [comet] section or pass --api-key") from None
        if parser.has_section("comet"):
            return dict(parser.items("comet")), path
        return {}, path
    return {}, None


def normalise_url(url: str) -> str:
    """The server root for ``url``: scheme and host lowercased, default port, a trailing
    ``/clientlib`` (the SDK's ``COMET_URL_OVERRIDE`` form) and trailing slashes dropped."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"not a server URL: {url!r}",
                          "give the server root, e.g. --url https://www.comet.com")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port and not ((parts.scheme == "http" and port == 80)
                     or (parts.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/")
    for suffix in ("/clientlib", "/api/rest/v2", "/api"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return urlunsplit((parts.scheme.lower(), host, path.rstrip("/"), "", ""))


def url_from_api_key(key: str) -> str | None:
    """The ``baseUrl`` of an API key of the form ``<key>*<base64 JSON>``, if any."""
    if "*" not in key:
        return None
    encoded = key.split("*", 1)[1]
    try:
        data = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, TypeError):
        return None
    base = data.get("baseUrl") if isinstance(data, dict) else None
    return base if isinstance(base, str) and base else None


def resolve(api_key: str | None = None, url: str | None = None, workspace: str | None = None,
            project: str | None = None, ca_bundle: str | None = None,
            state_dir: str | None = None, environ: Mapping[str, str] | None = None) -> UploadConfig:
    """Resolve the configuration; raise :class:`ConfigError` (never showing the key).

    :param api_key: from ``--api-key``; else the environment, else the config file.
    :param url: from ``--url``; else ``COMET_URL_OVERRIDE``, the config file, the key.
    """
    environ = os.environ if environ is None else environ
    section, path = read_config_file(environ)
    if api_key:
        key, source = api_key, "--api-key"
    elif environ.get("COMET_API_KEY"):
        key, source = environ["COMET_API_KEY"], "COMET_API_KEY"
    elif section.get("api_key"):
        key, source = section["api_key"], f"config file {path}"
    else:
        raise ConfigError("no API key given",
                          "pass --api-key, set COMET_API_KEY, or put api_key in the [comet] "
                          "section of ~/.comet.config")
    key = key.strip()
    if not key or any(c.isspace() for c in key):
        raise ConfigError(f"the API key from {source} is malformed (empty or contains spaces)")
    secret = Secret(key)
    raw_url = (url or environ.get("COMET_URL_OVERRIDE") or section.get("url_override")
               or url_from_api_key(key) or DEFAULT_URL)
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise ConfigError(f"--ca-bundle {ca_bundle}: no such file")
    return UploadConfig(
        api_key=secret, url=normalise_url(raw_url), key_source=source,
        workspace=workspace or None, project=project or None,
        default_workspace=environ.get("COMET_WORKSPACE") or section.get("workspace") or None,
        ca_bundle=ca_bundle, state_dir=state_dir)
