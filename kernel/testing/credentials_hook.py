"""Mock credentials in a real ``kernel serve``, for ``start_test_backend(mode="process")`` only.

Never active in a normal ``kernel serve``: three locks, all needed.

1. No installed package declares this module as an entry point. ``start_test_backend`` writes a
   throw-away ``.dist-info`` naming it (``kernel.testing.process_backend``) into a temporary directory
   that only its own kernel gets on ``PYTHONPATH``.
2. That kernel's environment has ``KERNEL_TESTING_MOCK_CREDENTIALS=1``.
3. Its config has ``backend.auth.mockCredentials: true``.

Then the gateway accepts mock tokens (``kernel.testing.credentials``) besides the real ones, and logs
a warning saying so. Workers keep their real token services: only the gateway's check is mocked.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from kernel.api import ConfigReader, CredentialVerifier, RootConfig, hookimpl
from kernel.testing.credentials import MockCredentialVerifier

__all__ = ["CONFIG_KEY", "MOCK_CREDENTIALS_ENV", "kernel_credential_verifiers", "mock_credentials_enabled"]

MOCK_CREDENTIALS_ENV = "KERNEL_TESTING_MOCK_CREDENTIALS"
CONFIG_KEY = "backend.auth.mockCredentials"

log = logging.getLogger("kernel.gateway")


def mock_credentials_enabled(config: ConfigReader, environ: Mapping[str, str] = os.environ) -> bool:
    """Both the environment and the config ask for mock credentials."""
    return environ.get(MOCK_CREDENTIALS_ENV) == "1" and config.get_optional(CONFIG_KEY) is True


@hookimpl
def kernel_credential_verifiers(config: RootConfig) -> Sequence[CredentialVerifier]:
    if not mock_credentials_enabled(config):
        return []
    log.warning("mock credentials are accepted (a test kernel: %s and %s are set)", MOCK_CREDENTIALS_ENV, CONFIG_KEY)
    return [MockCredentialVerifier()]
