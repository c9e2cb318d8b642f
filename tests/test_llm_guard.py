"""The guard that keeps every test off real models: only loopback connections, in the
test process and in Python subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from archlab.config import LLM_PRESETS, LLMProfile
from archlab.llm.client import LLM, LLMError, Question
from archlab.prompts import Prompts
from archlab.roles.critic import Critique
from support import netguard


def test_remote_connections_are_blocked() -> None:
    with pytest.raises(netguard.NetworkBlocked):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(netguard.NetworkBlocked):
        socket.getaddrinfo("api.openai.com", 443)


def test_loopback_connections_are_allowed() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("localhost", port), timeout=1):
            pass


@pytest.mark.parametrize("preset", ["openai", "openrouter", "anthropic"])
def test_a_hosted_model_is_out_of_reach(preset: str) -> None:
    profile = LLMProfile(**{**LLM_PRESETS[preset], "model": "m", "max_retries": 0})
    question = Question(
        role="critic",
        purpose="critique",
        messages=[{"role": "user", "content": "hello"}],
        answer=Critique,
    )
    with pytest.raises(LLMError, match="test network guard"):
        LLM(preset, profile, Prompts()).ask(question)


def test_python_subprocesses_are_guarded_too() -> None:
    probe = "import socket; socket.create_connection(('192.0.2.1', 443), timeout=1)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert proc.returncode != 0 and "NetworkBlocked" in proc.stderr
