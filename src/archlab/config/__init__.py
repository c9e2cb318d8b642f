"""Settings: the models of every section and key (`settings`), and how the layers are
loaded and validated (`loading`): defaults < archlab.toml < ARCHLAB_* environment <
command-line flags."""

from archlab.config.loading import load_settings, nested, read_config_file, stored_settings
from archlab.config.settings import (
    CONFIG_FILE_NAME,
    ENV_PREFIX,
    LLM_PRESETS,
    ROLE_OUTPUT_TOKENS,
    ExecutorSettings,
    FitnessSettings,
    LadderSettings,
    LLMProfile,
    LLMRole,
    RoleSettings,
    RunSettings,
    SandboxSettings,
    SearchSettings,
    Settings,
    default_home,
    resolve_home,
    usable_cpus,
)

__all__ = [
    "CONFIG_FILE_NAME",
    "ENV_PREFIX",
    "LLM_PRESETS",
    "ROLE_OUTPUT_TOKENS",
    "ExecutorSettings",
    "FitnessSettings",
    "LLMProfile",
    "LLMRole",
    "LadderSettings",
    "RoleSettings",
    "RunSettings",
    "SandboxSettings",
    "SearchSettings",
    "Settings",
    "default_home",
    "load_settings",
    "nested",
    "read_config_file",
    "resolve_home",
    "stored_settings",
    "usable_cpus",
]
