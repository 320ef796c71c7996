"""Environment capture: system details, git metadata and patch, and the script's source.

What the official SDK records by itself at start (``write-endpoints.md``, Set System Details,
Set Git Metadata, Upload Git Patch, Set Code), gathered once by a daemon thread
``recorder.environment`` so that the training loop does not wait for it, then journaled
through the experiment's own calls.

* System details: command and arguments, executable, hostname, IP, OS, OS type, Python
  version (short and verbose), pid, user, network interface IPs (the "host" part) and the
  installed packages. Environment variables only when asked (``log_env_variables``), as
  ``logAdditionalSystemInfoList`` entries ``{"key": "env.NAME", "value": ...}``; names that
  look secret (KEY, TOKEN, SECRET, PASSWORD, ...) always have their value replaced by
  ``"***"``, and passwords inside URLs (``scheme://user:pw@host``) are masked everywhere.
* Git: the ``git`` binary, run with a short timeout, in ``$COMET_GIT_DIRECTORY`` or the
  current directory (as the SDK). Metadata as the SDK records it: user (``user.name``), root
  (the first commit), branch (``refs/heads/...``; empty when detached), parent (``HEAD``) and
  origin (credentials masked); fields git cannot tell are empty strings. The patch is
  ``git diff HEAD`` (staged and unstaged changes to tracked files). No git binary, no
  repository, or a repository git refuses: skipped silently.
* Code: the file that created the experiment (the first caller outside ``recorder``).

The experiment's API key (the ``api_key`` argument, ``$COMET_API_KEY``) is never stored: the
code and the patch are searched for it, by fingerprint (:class:`SecretFilter`), and it is
replaced by ``"***"`` where it appears as a word of its own (:mod:`.secrets`).
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import platform
import re
import socket
import subprocess
import sys
import threading
from typing import Any, Final, Iterable

from comet_journal.recorder.reporting import report_problem
from comet_journal.recorder.secrets import REDACTED, SecretFilter

logger = logging.getLogger(__name__)

GIT_TIMEOUT_S: Final = 5.0  # per git command
GIT_PATCH_MAX_BYTES: Final = 20 * 1024 * 1024  # a bigger diff is skipped, with a warning

# Environment variable names whose values are never recorded.
SECRET_NAME: Final = re.compile(
    r"KEY|TOKEN|SECRET|PASSW|PWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE|"
    r"SIGNATURE|SALT|CERT", re.IGNORECASE)
_URL_PASSWORD: Final = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^/@\s]+@")


def redact_url(value: str) -> str:
    """``https://user:pw@host/x`` -> ``https://user:***@host/x``."""
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED + "@", value)


def environment_variables(which: bool | Iterable[str] = True,
                          environ: dict | None = None) -> list[dict]:
    """``logAdditionalSystemInfoList`` entries for the environment variables.

    :param which: True for all of them, or the names to record.
    """
    environ = os.environ if environ is None else environ
    names = sorted(environ) if which is True else [n for n in which if n in environ]
    entries = []
    for name in names:
        value = environ[name]
        value = REDACTED if SECRET_NAME.search(name) else redact_url(value)
        entries.append({"key": f"env.{name}", "value": value})
    return entries


def system_details(host: bool = True, packages: bool = True,
                   env_variables: bool | Iterable[str] = False) -> dict:
    """The ``system_details`` payload (wire field names)."""
    details: dict[str, Any] = {}
    if host:
        details.update(
            command=[str(a) for a in sys.argv], executable=sys.executable or "",
            hostname=socket.gethostname(), ip=_ip(), os=platform.platform(aliased=True),
            osType=platform.system(), pid=os.getpid(),
            pythonVersion=platform.python_version(), pythonVersionVerbose=sys.version,
            user=_user(), networkInterfaceIps=_interface_ips())
    if packages:
        details["installedPackages"] = list(installed_packages())
    if env_variables:
        details["logAdditionalSystemInfoList"] = environment_variables(env_variables)
    return {k: v for k, v in details.items() if v is not None}


@functools.lru_cache(maxsize=1)
def installed_packages() -> tuple[str, ...]:
    """``name==version`` of every installed distribution (read once per process)."""
    from importlib import metadata

    found = set()
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
            if name:
                found.add(f"{name}=={dist.version}")
        except Exception:  # a broken dist-info must not hide the others
            continue
    return tuple(sorted(found, key=str.lower))


def _ip() -> str | None:
    """This host's address on its default route: a UDP "connect" sends nothing."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.254.254.254", 1))
            return s.getsockname()[0]
    except OSError:
        pass
    for address in _interface_ips() or []:
        if "." in address and not address.startswith("127."):
            return address
    return None


def _interface_ips() -> list[str] | None:
    try:
        import psutil

        addresses = []
        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6):
                    address = addr.address.split("%")[0]
                    if address not in addresses:
                        addresses.append(address)
        return addresses
    except Exception:
        return None


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (containers)
        return "unknown"


# --- git ------------------------------------------------------------------------------------

def _git(args: list[str], cwd: str) -> bytes | None:
    """stdout of a git command, or None when git is missing, fails or takes too long."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        done = subprocess.run(["git", "-c", "core.fsmonitor=false", *args], cwd=cwd, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_text(args: list[str], cwd: str) -> str:
    out = _git(args, cwd)
    return out.decode("utf-8", "replace").strip() if out else ""


def git_directory() -> str:
    return os.environ.get("COMET_GIT_DIRECTORY") or os.getcwd()


def git_metadata(directory: str | None = None) -> dict | None:
    """``git_metadata`` payload, or None outside a repository (or without git)."""
    directory = directory or git_directory()
    if _git(["rev-parse", "--show-toplevel"], directory) is None:
        return None
    parent = _git_text(["rev-parse", "-q", "--verify", "HEAD"], directory)
    roots = _git_text(["rev-list", "--max-parents=0", "HEAD"], directory) if parent else ""
    return {"user": _git_text(["config", "user.name"], directory),
            "root": roots.splitlines()[-1] if roots else "",
            "branch": _git_text(["symbolic-ref", "-q", "HEAD"], directory),
            "parent": parent,
            "origin": redact_url(_git_text(["config", "--get", "remote.origin.url"],
                                           directory))}


def git_patch(directory: str | None = None) -> bytes | None:
    """The uncommitted changes to tracked files (``git diff HEAD``), or None when there are
    none (or no repository, no commit, no git)."""
    directory = directory or git_directory()
    if _git(["rev-parse", "-q", "--verify", "HEAD"], directory) is None:
        return None
    patch = _git(["diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", "--no-textconv"],
                 directory)
    return patch or None


# --- code ---------------------------------------------------------------------------------

def caller_file(skip: int = 1) -> str | None:
    """The source file of the first caller outside the ``comet_journal`` package."""
    try:
        frame = sys._getframe(skip)
    except ValueError:
        return None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module != "comet_journal" and not module.startswith("comet_journal."):
            path = frame.f_code.co_filename
            return path if path.endswith(".py") and os.path.isfile(path) else None
        frame = frame.f_back
    return None


# --- the capture thread ---------------------------------------------------------------------

class EnvironmentCapture:
    """Gathers and journals the environment once, from a daemon thread.

    :param what: the parts to capture: ``details`` (bool), ``host`` (bool), ``env_variables``
        (False, True or names), ``git_metadata``, ``git_patch`` (bools), ``code_file`` (a
        path or None).
    """

    def __init__(self, experiment: Any, *, details: bool = True, host: bool = True,
                 env_variables: bool | Iterable[str] = False, git_metadata: bool = True,
                 git_patch: bool = True, code_file: str | None = None,
                 secrets: SecretFilter | None = None):
        self._exp = experiment
        self._secrets = secrets or SecretFilter()
        self._what = dict(details=details, host=host, env_variables=env_variables,
                          git_metadata=git_metadata, git_patch=git_patch, code_file=code_file)
        self._thread: threading.Thread | None = None
        self._abandoned = False
        self.failures: dict[str, str] = {}

    @property
    def wanted(self) -> bool:
        w = self._what
        return bool(w["details"] or w["host"] or w["env_variables"] or w["git_metadata"]
                    or w["git_patch"] or w["code_file"])

    def start(self) -> None:
        if self.wanted and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recorder.environment",
                                            daemon=True)
            self._thread.start()

    def wait(self, timeout: float) -> bool:
        """Wait for the capture to finish; after ``timeout`` it is abandoned (nothing more
        is journaled). True when it finished."""
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._abandoned = True
                logger.warning("comet-journal: environment capture did not finish within "
                               "%.1f s; the rest of it is skipped", timeout)
                return False
        return True

    def _run(self) -> None:
        w = self._what
        self._step("system details", self._details)
        if w["git_metadata"] or w["git_patch"]:
            directory = git_directory()
            if w["git_metadata"]:
                self._step("git metadata", lambda: self._git_metadata(directory))
            if w["git_patch"]:
                self._step("git patch", lambda: self._git_patch(directory))
        if w["code_file"]:
            self._step("code", self._code)

    def _step(self, name: str, run) -> None:
        if self._abandoned or self._exp.ended:
            return
        try:
            run()
        except Exception as exc:
            self.failures[name] = f"{type(exc).__name__}: {exc}"
            report_problem(f"could not record the {name} ({type(exc).__name__}: {exc})")

    def _journal(self, method: str, *args, **kwargs) -> None:
        if not self._abandoned and not self._exp.ended:
            getattr(self._exp, method)(*args, **kwargs)

    def _details(self) -> None:
        w = self._what
        details = system_details(host=w["host"], packages=w["details"],
                                 env_variables=w["env_variables"])
        if details:
            self._journal("log_system_details", **details)

    def _git_metadata(self, directory: str) -> None:
        metadata = git_metadata(directory)
        if metadata is not None:
            self._journal("log_git_metadata", **metadata)

    def _git_patch(self, directory: str) -> None:
        patch = git_patch(directory)
        if patch is None:
            return
        patch = self._secrets.mask(patch)
        if len(patch) > GIT_PATCH_MAX_BYTES:
            logger.warning("comet-journal: the git patch is %d bytes (over %d); not recorded",
                           len(patch), GIT_PATCH_MAX_BYTES)
            return
        self._journal("log_git_patch", patch)

    def _code(self) -> None:
        path = self._what["code_file"]
        try:
            with open(path, "rb") as fh:
                data = fh.read()
            code = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):  # gone, unreadable or not text: nothing to keep
            logger.debug("comet-journal: not recording %s as code", path, exc_info=True)
            return
        self._journal("set_code", self._secrets.mask_text(code))
