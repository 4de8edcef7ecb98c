"""Specification of `runtime.config.RuntimeConfig.from_env`: one snapshot of the environment, read once."""

from __future__ import annotations

import os

import pytest

from runtime.config import ConfigError, RuntimeConfig

MINIMAL = {"AWS_LAMBDA_RUNTIME_API": "127.0.0.1:9001"}


def test_defaults_from_a_minimal_environment():
    # GIVEN an environment with only the Runtime API address
    # WHEN the config is read
    config = RuntimeConfig.from_env(MINIMAL)

    # THEN everything else has Lambda's defaults
    assert config == RuntimeConfig(
        api_address="127.0.0.1:9001",
        handler="",
        task_root="/var/task",
        function_name="",
        function_version="$LATEST",
        memory_limit_in_mb=None,
        log_group_name=None,
        log_stream_name=None,
        region=None,
        initialization_type="on-demand",
        max_concurrency=1,
    )


def test_every_variable_is_read(tmp_path):
    # GIVEN an environment as Lambda sets it
    env = {
        "AWS_LAMBDA_RUNTIME_API": " 169.254.100.1:9001 ",
        "_HANDLER": " app.handler ",
        "LAMBDA_TASK_ROOT": str(tmp_path / "task" / ".." / "task"),
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_VERSION": "7",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[7]abc",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "provisioned-concurrency",
        "AWS_LAMBDA_MAX_CONCURRENCY": " 4 ",
    }

    # WHEN the config is read
    config = RuntimeConfig.from_env(env)

    # THEN each variable lands in its field; the address and handler are stripped, the task root made absolute
    assert config == RuntimeConfig(
        api_address="169.254.100.1:9001",
        handler="app.handler",
        task_root=os.path.abspath(tmp_path / "task"),
        function_name="orders",
        function_version="7",
        memory_limit_in_mb="512",
        log_group_name="/aws/lambda/orders",
        log_stream_name="2024/01/01/[7]abc",
        region="eu-west-1",
        initialization_type="provisioned-concurrency",
        max_concurrency=4,
    )


def test_memory_size_stays_a_string():
    # awslambdaric's context.memory_limit_in_mb is the raw environment string
    config = RuntimeConfig.from_env({**MINIMAL, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"})
    assert config.memory_limit_in_mb == "128"


def test_region_falls_back_to_default_region():
    config = RuntimeConfig.from_env({**MINIMAL, "AWS_DEFAULT_REGION": "ap-south-1"})
    assert config.region == "ap-south-1"


def test_relative_task_root_is_made_absolute():
    config = RuntimeConfig.from_env({**MINIMAL, "LAMBDA_TASK_ROOT": "rel/dir"})
    assert config.task_root == os.path.abspath("rel/dir")


@pytest.mark.parametrize("address", [None, "", "   "])
def test_missing_runtime_api_address_is_a_config_error(address):
    # GIVEN an environment without AWS_LAMBDA_RUNTIME_API (the program was not started by Lambda)
    env = {"_HANDLER": "app.handler"}
    if address is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = address

    # WHEN / THEN ConfigError names the variable
    with pytest.raises(ConfigError, match="AWS_LAMBDA_RUNTIME_API is not set"):
        RuntimeConfig.from_env(env)


@pytest.mark.parametrize("value", ["abc", "1.5", "four", "0x2"])
def test_bad_max_concurrency_is_a_config_error(value):
    # GIVEN a max concurrency that is not an integer
    # WHEN / THEN ConfigError quotes the value
    with pytest.raises(ConfigError, match=f"AWS_LAMBDA_MAX_CONCURRENCY must be a positive integer, got '{value}'"):
        RuntimeConfig.from_env({**MINIMAL, "AWS_LAMBDA_MAX_CONCURRENCY": value})


@pytest.mark.parametrize(("value", "expected"), [("", 1), ("1", 1), ("16", 16)])
def test_max_concurrency_values(value, expected):
    assert RuntimeConfig.from_env({**MINIMAL, "AWS_LAMBDA_MAX_CONCURRENCY": value}).max_concurrency == expected


def test_config_is_immutable_and_slotted():
    # GIVEN a config
    config = RuntimeConfig.from_env(MINIMAL)

    # WHEN / THEN it cannot be changed, nor grow new attributes
    with pytest.raises(AttributeError):
        config.handler = "other.handler"  # type: ignore[misc]
    assert not hasattr(config, "__dict__")


def test_from_env_does_not_read_os_environ(monkeypatch):
    # GIVEN a process environment that differs from the mapping passed in
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "from-os-environ")

    # WHEN the config is read from the mapping
    config = RuntimeConfig.from_env(MINIMAL)

    # THEN only the mapping counts
    assert config.function_name == ""
