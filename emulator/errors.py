"""Errors of the emulator, and Comet's error codes it answers with.

::

    ApiError          a request the emulator refuses: carries the HTTP status, the message and
                      Comet's ``sdk_error_code``; becomes a JSON error body (comet-wire.md 3.2)
    FaultSpecError    a fault specification that cannot be used (names the rule and the key)

Messages never contain the API key.
"""

from __future__ import annotations

from typing import Final

# Comet's ``sdk_error_code`` values (comet_ml/exceptions.py; comet-wire.md section 3.2).
INVALID_API_KEY: Final = 90212
EXPERIMENT_NOT_FOUND: Final = 90210  # "no write access / experiment not found"
EXPERIMENT_ALREADY_EXISTS: Final = 90999
NO_PROJECT_NAME: Final = 98219
UNKNOWN_WORKSPACE: Final = 90219
BACKEND_CUSTOM_ERROR: Final = 7777777  # the SDK shows ``msg`` to the user as is


class ApiError(Exception):
    """A refused request: ``status`` (HTTP), ``msg`` and ``sdk_error_code``."""

    def __init__(self, status: int, msg: str, sdk_error_code: int = BACKEND_CUSTOM_ERROR):
        super().__init__(msg)
        self.status = status
        self.msg = msg
        self.sdk_error_code = sdk_error_code

    def body(self) -> dict:
        """Comet's error convention: ``{"msg", "code", "sdk_error_code"}``."""
        return {"msg": self.msg, "code": self.status, "sdk_error_code": self.sdk_error_code}


def bad_request(msg: str, sdk_error_code: int = BACKEND_CUSTOM_ERROR) -> ApiError:
    return ApiError(400, msg, sdk_error_code)


def unknown_experiment(key: object) -> ApiError:
    return ApiError(400, f"unknown experiment key {key!r}", EXPERIMENT_NOT_FOUND)


def not_found(msg: str, sdk_error_code: int = BACKEND_CUSTOM_ERROR) -> ApiError:
    return ApiError(404, msg, sdk_error_code)


class FaultSpecError(ValueError):
    """A fault specification is malformed; the message names the rule and the problem."""
