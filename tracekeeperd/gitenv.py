"""The environment git runs in: nothing inherited may point it at another repository.

Standard library only, and only `os`: the agent hook (client/tracekeeper/hookcmd.py) imports
it on its start-up budget, and the git runner (git.py) does too, so there is one list.
"""

from __future__ import annotations

import os

# imported for the type checker only (mypy treats any `TYPE_CHECKING` name as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

#: `git rev-parse --local-env-vars` (git 2.39 - 2.55), plus the numbered config overrides.
LOCAL_ENV_VARS = frozenset(
    {
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_CONFIG",
        "GIT_CONFIG_PARAMETERS",
        "GIT_CONFIG_COUNT",
        "GIT_OBJECT_DIRECTORY",
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_IMPLICIT_WORK_TREE",
        "GIT_GRAFT_FILE",
        "GIT_INDEX_FILE",
        "GIT_NO_REPLACE_OBJECTS",
        "GIT_REPLACE_REF_BASE",
        "GIT_PREFIX",
        "GIT_INTERNAL_SUPER_PREFIX",
        "GIT_SHALLOW_FILE",
        "GIT_COMMON_DIR",
        "GIT_QUARANTINE_PATH",
    }
)


def clean_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus anything that would point git at a particular repository."""
    env = os.environ if env is None else env
    return {
        key: value
        for key, value in env.items()
        if key not in LOCAL_ENV_VARS and not key.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))
    }
