"""The settings' models: every section and key, its type, default and meaning (what
docs/configuration.md is generated from), and where the data directory is."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from archlab.errors import ConfigError

CONFIG_FILE_NAME = "archlab.toml"
ENV_PREFIX = "ARCHLAB_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSettings(_Section):
    task: str = Field(default="mqar", description="what candidates are judged on (archlab tasks)")
    trials: int = Field(
        default=12,
        ge=0,
        description="candidates to evaluate, baseline included; 0 (the default when minutes "
        "is set): no limit, the minutes decide",
    )
    minutes: float = Field(default=0.0, ge=0, description="wall-clock budget; 0 means none")
    seed: int = Field(
        default=0,
        description="the planner's random choices: the same seed, settings and code propose "
        "the same candidates in the same order",
    )
    proxy_seed: int = Field(
        default=0,
        description="the seed a candidate's proxy trial trains with; its confirm seeds are "
        "the next ones",
    )
    data_seed: int = Field(
        default=0,
        description="the seed the task's data is generated from; another seed is another task "
        "configuration (its own baseline and yardstick)",
    )
    brain: str = Field(
        default="heuristic",
        description="every role's brain unless [roles] says otherwise: heuristic, "
        "evolution (regularized evolution), tpe (Optuna's TPE, archlab[tpe]), "
        "llm (the [llm.default] profile), llm:PROFILE (or just PROFILE) or replay:RUN",
    )
    mode: Literal["compose", "design"] = Field(
        default="compose",
        description="compose: candidates are genomes rendered by templates; "
        "design: the coder writes free-form PyTorch",
    )
    max_repairs: int = Field(
        default=2, ge=0, description="design mode: failures sent back to the coder per idea"
    )
    max_failed_steps: int = Field(
        default=3,
        ge=1,
        description="steps in a row whose model gave no usable answer before the run stops "
        "(compose mode: the offline brain proposes such a step; design mode: it is skipped)",
    )
    max_tokens: int = Field(default=0, ge=0, description="LLM token budget; 0 means none")
    max_usd: float = Field(default=0.0, ge=0, description="LLM dollar budget; 0 means none")
    lanes: int = Field(
        default=0,
        ge=0,
        le=64,
        description="graph threads proposing and evaluating at once; 0: one per [executor] worker",
    )
    review: bool = Field(
        default=False,
        description="pause before each training until `archlab approve` or `archlab reject`",
    )

    @model_validator(mode="after")
    def _bounded(self) -> RunSettings:
        if not self.trials and not self.minutes:
            raise ValueError("trials = 0 (no limit) needs a minutes budget")
        return self


class SandboxSettings(_Section):
    level: Literal["basic", "strict"] = Field(
        default="basic",
        description="minimum isolation level; the strongest available is used, and a run "
        "refuses to start where this one cannot be had",
    )
    threads: int = Field(default=1, ge=1, le=64, description="CPU threads per trial")
    memory_gb: float = Field(
        default=8.0, gt=0, description="memory per trial (strict: cgroup; basic: address space)"
    )
    log_tail_bytes: int = Field(
        default=4000, ge=0, description="the end of each trial's log kept in the memory"
    )


class ExecutorSettings(_Section):
    """Where trials run; the CPU threads of each are [sandbox] threads."""

    kind: Literal["local", "ray"] = Field(
        default="local", description="local: this machine; ray: a Ray cluster (archlab[ray])"
    )
    workers: int = Field(
        default=0,
        ge=0,
        description="trials running at once; 0: as many as this machine's CPU cores hold "
        "([sandbox] threads each)",
    )
    ray_address: str | None = Field(
        default=None, description="HOST:PORT of a Ray head; unset starts or joins a local one"
    )
    gpus_per_trial: int = Field(default=0, ge=0, description="GPUs each trial gets")
    trials_per_gpu: int = Field(
        default=1,
        ge=1,
        description="trials sharing one GPU at once (with gpus_per_trial = 1), each capped at "
        "that share of its memory: small proxies leave a GPU mostly idle",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="forward passes in bf16 autocast (with TF32 matmuls) or fp32; auto: bf16 "
        "on a GPU that has it, fp32 on CPU",
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        default="off",
        description="torch.compile each trial's forward pass and loss in this mode "
        "(reduce-overhead adds CUDA graphs on a GPU); its compile time, left out of a timed "
        "budget, is paid by every trial: it pays for trials of minutes, not seconds",
    )

    @model_validator(mode="after")
    def _shared_gpus(self) -> ExecutorSettings:
        if self.trials_per_gpu > 1 and self.gpus_per_trial != 1:
            raise ValueError(
                f"trials_per_gpu = {self.trials_per_gpu} shares one GPU between trials: it "
                f"needs gpus_per_trial = 1, not {self.gpus_per_trial}"
            )
        return self


class SearchSettings(_Section):
    tournament_size: int = Field(
        default=3, ge=1, description="candidates drawn from the pool to pick each parent"
    )
    crossover_rate: float = Field(
        default=0.25, ge=0, le=1, description="share of proposals that combine two parents"
    )
    random_rate: float = Field(
        default=0.1, ge=0, le=1, description="share of proposals drawn at random (exploration)"
    )
    population: int = Field(
        default=16,
        ge=2,
        description="brain evolution: the most recent candidates that form the population "
        "(random draws until it is full; a tournament of tournament_size picks each parent)",
    )
    random_samples: int = Field(
        default=8,
        ge=0,
        description="architectures sampled at random per task configuration, drawn every "
        "other step until there are this many and reused by later runs: the yardstick each "
        "run's best is compared with (2 or more give an interval)",
    )


class FitnessSettings(_Section):
    """What candidates are ranked by: the task's metric unless set, minus penalties."""

    metric: str | None = Field(default=None, description="a metric the task reports")
    direction: Literal["max", "min"] | None = Field(default=None, description="task default")
    param_penalty: float = Field(default=0.0, ge=0, description="per million parameters")
    latency_penalty: float = Field(default=0.0, ge=0, description="per second of trial time")
    audit_ratio: float = Field(
        default=3.0,
        gt=0,
        description="a confirmed gain over the baseline above this ratio (3: four times its "
        "score) is audited before it is accepted or rejected ([ladder] audit_*)",
    )


class LadderSettings(_Section):
    """The verification ladder's costlier stages."""

    confirm_seeds: int = Field(default=3, ge=1, description="seeds for the confirm stage")
    scale_top: int = Field(
        default=1,
        ge=0,
        description="best accepted candidates trained at the scale stage; 0 skips it",
    )
    causality_pairs: int = Field(default=8, ge=1, description="probe pairs per candidate")
    early_stop: bool = Field(
        default=True,
        description="stop a proposal's proxy trial once its held-out curve cannot reach the "
        "score it must beat, learning twice as fast as any curve of the task so far",
    )
    keep_weights: bool = Field(
        default=True,
        description="keep the trained weights (proxy seed) of each candidate promoted to the "
        "confirm stage, as safetensors under HOME/weights (archlab export writes them out)",
    )
    audit_keep: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="audit: the share of its confirmed gain over the baseline a candidate "
        "must keep on fresh data (or reach its lowest confirmed seed)",
    )
    audit_control_margin: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="audit: the share of its gain over chance a candidate trained on "
        "shuffled targets may still show",
    )
    audit_causality_pairs: int = Field(
        default=32, ge=1, description="audit: causality probe pairs on the trained model"
    )


class RoleSettings(_Section):
    """A brain per role; a role left out uses [run] brain."""

    planner: str | None = Field(
        default=None, description="heuristic, evolution, tpe, llm:PROFILE or replay:RUN"
    )
    coder: str | None = Field(default=None, description="heuristic, llm:PROFILE or replay:RUN")
    critic: str | None = Field(default=None, description="heuristic, llm:PROFILE or replay:RUN")


#: output limits per role: a plan and a critique are short, a module may be long
LLMRole = Literal["planner", "coder", "critic", "check"]
ROLE_OUTPUT_TOKENS: dict[LLMRole, int] = {
    "planner": 2048,
    "coder": 8192,
    "critic": 1024,
    "check": 256,
}

Preset = Literal["openai", "openrouter", "anthropic", "ollama", "vllm", "llamacpp", "lmstudio"]


class LLMProfile(_Section):
    """One OpenAI-compatible endpoint and how to talk to it. The key itself is never
    stored: only the name of the environment variable that holds it."""

    preset: Preset | None = Field(default=None, description="fill unset keys from a preset")
    base_url: str = Field(description="the OpenAI-compatible endpoint, e.g. http://HOST:PORT/v1")
    model: str = Field(description="the model name the endpoint knows")
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY", description="environment variable holding the API key"
    )
    token_limit_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens", description="the request field that limits the answer's length"
    )
    structured_output: Literal["json_schema", "json_object", "prompt"] = Field(
        default="json_schema",
        description="json_schema: the schema in response_format; json_object: JSON mode and "
        "the schema in the prompt; prompt: the schema in the prompt only",
    )
    reasoning: Literal["auto", "reasoning_content", "reasoning", "think_tags", "none"] = Field(
        default="auto", description="where the model's reasoning arrives, to keep it apart"
    )
    max_output_tokens: int = Field(
        default=8192, ge=16, description="per answer: the cap over every role's limit"
    )
    role_output_tokens: dict[LLMRole, int] = Field(
        default_factory=lambda: dict(ROLE_OUTPUT_TOKENS),
        description="output limit per role (check: `archlab llm check`), under "
        "max_output_tokens and the room the server's context leaves",
    )
    context_tokens: int | None = Field(
        default=None,
        ge=64,
        description="the server's context length; unset: asked from the server (llama.cpp's "
        "/props, vLLM's max_model_len), else learnt from its first overflow",
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="unset: the server's default"
    )
    stream: bool = Field(
        default=True,
        description="stream answers, so that timeout_s is on silence between tokens, not on "
        "the whole answer (falls back to one response where the server sends no stream)",
    )
    timeout_s: float = Field(
        default=180.0, gt=0, description="seconds without a token (or an answer) before retrying"
    )
    max_retries: int = Field(default=4, ge=0, description="on rate limits, 5xx and timeouts")
    max_attempts: int = Field(default=3, ge=1, description="answers re-asked when unusable")
    usd_per_m_input: float = Field(default=0.0, ge=0, description="price per million tokens")
    usd_per_m_output: float = Field(default=0.0, ge=0, description="price per million tokens")
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="provider-specific request fields"
    )


_LOCAL: dict[str, Any] = {"api_key_env": None, "max_output_tokens": 4096}

#: Profiles users recognise; `[llm.NAME]` with a preset's name (or `preset = NAME`) starts
#: from it, so `[llm.ollama] model = "qwen3:8b"` is a complete profile.
LLM_PRESETS: dict[Preset, dict[str, Any]] = {
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "api_key_env": "OPENAI_API_KEY",
        "token_limit_field": "max_completion_tokens",
        "reasoning": "none",
    },
    "openrouter": {
        "base_url": "https://openrouter.ai/api/v1",
        "api_key_env": "OPENROUTER_API_KEY",
        "reasoning": "reasoning",
    },
    # Anthropic's OpenAI-compatible API ignores response_format: the schema goes in the prompt.
    "anthropic": {
        "base_url": "https://api.anthropic.com/v1/",
        "api_key_env": "ANTHROPIC_API_KEY",
        "structured_output": "prompt",
        "reasoning": "none",
    },
    # local servers need no key; their small contexts and slow models want shorter answers
    "ollama": {"base_url": "http://localhost:11434/v1", **_LOCAL},
    "vllm": {"base_url": "http://localhost:8000/v1", **_LOCAL},
    "llamacpp": {"base_url": "http://localhost:8080/v1", **_LOCAL},
    "lmstudio": {"base_url": "http://localhost:1234/v1", **_LOCAL},
}


class Settings(_Section):
    home: Path | None = Field(
        default=None,
        description="where the memory, checkpoints and trials live; unset: "
        "$XDG_DATA_HOME/archlab (~/.local/share/archlab)",
    )
    prompts_dir: Path | None = Field(
        default=None, description="templates here override the built-in prompts of the same name"
    )
    run: RunSettings = RunSettings()
    sandbox: SandboxSettings = SandboxSettings()
    executor: ExecutorSettings = ExecutorSettings()
    search: SearchSettings = SearchSettings()
    fitness: FitnessSettings = FitnessSettings()
    ladder: LadderSettings = LadderSettings()
    roles: RoleSettings = RoleSettings()
    llm: dict[str, LLMProfile] = Field(default_factory=dict)
    #: per-task options, e.g. [tasks.mqar] num_kv_pairs = 16; each task validates its own
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_presets(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("llm"), dict):
            return data
        profiles = {}
        for name, table in data["llm"].items():
            if isinstance(table, dict):
                # an unknown preset name is left for the `preset` field to reject
                preset = LLM_PRESETS.get(table.get("preset", name), {})
                table = {**preset, **table}
            profiles[name] = table
        return {**data, "llm": profiles}

    @model_validator(mode="before")
    @classmethod
    def _use_every_core(cls, data: Any) -> Any:
        """Workers and lanes left at 0 are filled in: a trial per CPU core's worth of
        threads, a lane per worker; and a minutes budget without a trial budget runs until
        the minutes are spent. Values that are not whole numbers are left to the fields'
        validation to report."""
        if not isinstance(data, dict):
            return data
        run, executor, sandbox = (data.get(k, {}) for k in ("run", "executor", "sandbox"))
        if not all(isinstance(section, Mapping) for section in (run, executor, sandbox)):
            return data
        threads = _whole(sandbox.get("threads", 1))
        workers = _whole(executor.get("workers", 0))
        lanes = _whole(run.get("lanes", 0))
        if threads is None or workers is None or lanes is None or threads < 1:
            return data
        workers = workers or max(1, usable_cpus() // threads)
        run = {**run, "lanes": lanes or min(workers, 64)}
        if "trials" not in run and _positive(run.get("minutes")):  # the time budget decides
            run["trials"] = 0
        return {**data, "executor": {**executor, "workers": workers}, "run": run}

    @property
    def home_dir(self) -> Path:
        return resolve_home(self.home)


def usable_cpus() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _positive(value: Any) -> bool:
    """Whether `value` (from TOML, a flag or the environment's text) is a number above 0."""
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False


def _whole(value: Any) -> int | None:
    """`value` as a whole number (from TOML, a flag or the environment's text), or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def default_home() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "archlab"


def resolve_home(home: Path | str | None) -> Path:
    """The data directory, created on first use."""
    path = Path(home).expanduser() if home else default_home()
    path = path.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create archlab home {path}: {e.strerror}") from e
    return path
