"""Specification of `telemetry.config.TelemetryConfig.from_env`: every telemetry setting, read once from a mapping."""

from __future__ import annotations

import logging

import pytest

from telemetry.config import DEFAULT_REDACT_KEYS, TelemetryConfig, TelemetryConfigError


def test_an_empty_environment_gives_the_documented_defaults():
    # GIVEN an environment with no telemetry variable at all
    # WHEN the config is read
    cfg = TelemetryConfig.from_env({})

    # THEN every field has its documented default
    assert cfg == TelemetryConfig()
    assert cfg.function_name == ""
    assert cfg.function_version == "$LATEST"
    assert cfg.log_level == logging.INFO
    assert cfg.log_format == "JSON"
    assert cfg.stdout_enabled is True
    assert cfg.stdout_lifecycle is False
    assert cfg.capture_print is True
    assert cfg.lifecycle is None
    assert cfg.redact_keys == DEFAULT_REDACT_KEYS
    assert cfg.event_max_bytes == 2048
    assert cfg.policy == "default"
    assert cfg.strict is False
    assert cfg.buffer_max_records == 10_000
    assert cfg.spill_dir == "/tmp/flightrec-spill"
    assert cfg.spill_max_bytes == 64 * 1024 * 1024
    assert cfg.flush_budget_ms == 1000
    assert cfg.deadline_margin_ms == 300
    assert cfg.flush_interval_ms == 1000
    assert cfg.syslog_url is None
    assert cfg.syslog_facility == 1
    assert cfg.syslog_tls_verify is True
    assert cfg.syslog_sd_id == "lambda@32473"
    assert cfg.syslog_udp_max_bytes == 8192
    assert cfg.syslog_level == logging.NOTSET
    assert cfg.database_url is None
    assert cfg.database_secret_id is None
    assert cfg.table == "logs"
    assert cfg.auto_migrate is False
    assert cfg.database_connect_timeout_s == 3
    assert cfg.database_level == logging.NOTSET
    assert cfg.batch_size == 1000
    # AND with no remote sink there are no lifecycle records
    assert cfg.remote_sinks is False
    assert cfg.lifecycle_records is False


def test_every_variable_is_read():
    # GIVEN an environment setting every variable, with the stray spaces a console paste leaves
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": " orders ",
        "AWS_LAMBDA_FUNCTION_VERSION": "7",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/11/30/[7]abcdef",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_LEVEL": "warn",
        "AWS_LAMBDA_LOG_FORMAT": "text",
        "LOGS_STDOUT": "off",
        "LOGS_STDOUT_LIFECYCLE": "yes",
        "LOGS_CAPTURE_PRINT": "0",
        "LOGS_LIFECYCLE": "false",
        "LOGS_REDACT_KEYS": " PIN , Card_Number ,, ",
        "LOGS_EVENT_MAX_BYTES": "4096",
        "LOGS_POLICY": "STRICT",
        "LOGS_BUFFER_MAX_RECORDS": "50",
        "LOGS_SPILL_DIR": "/tmp/other",
        "LOGS_SPILL_MAX_BYTES": "1024",
        "TELEMETRY_FLUSH_BUDGET_MS": "250",
        "TELEMETRY_DEADLINE_MARGIN_MS": "0",
        "TELEMETRY_FLUSH_INTERVAL_MS": "10",
        "SYSLOG_URL": "tls://logs.example:6514",
        "SYSLOG_FACILITY": "local3",
        "SYSLOG_CA_FILE": "/opt/ca.pem",
        "SYSLOG_TLS_VERIFY": "0",
        "SYSLOG_SD_ID": "acme@99999",
        "SYSLOG_APP_NAME": "orders-app",
        "SYSLOG_HOSTNAME": "host-1",
        "SYSLOG_UDP_MAX_BYTES": "480",
        "SYSLOG_TIMEOUT_MS": "200",
        "SYSLOG_LEVEL": "error",
        "LOGS_DATABASE_URL": "postgresql://writer@db/logs",
        "LOGS_DATABASE_SECRET_ID": "prod/logs",
        "LOGS_TABLE": "audit.logs",
        "LOGS_AUTO_MIGRATE": "1",
        "LOGS_DATABASE_CONNECT_TIMEOUT": "9",
        "LOGS_DATABASE_LEVEL": "critical",
        "LOGS_BATCH_SIZE": "25",
    }

    # WHEN the config is read
    cfg = TelemetryConfig.from_env(env)

    # THEN each variable lands in its field, parsed and normalised
    expected = dict(
        function_name="orders",
        function_version="7",
        log_stream_name="2026/11/30/[7]abcdef",
        region="eu-west-1",
        memory_mb=512,
        log_level=logging.WARNING,
        log_format="Text",
        stdout_enabled=False,
        stdout_lifecycle=True,
        capture_print=False,
        lifecycle=False,
        redact_keys=("pin", "card_number"),
        event_max_bytes=4096,
        policy="strict",
        buffer_max_records=50,
        spill_dir="/tmp/other",
        spill_max_bytes=1024,
        flush_budget_ms=250,
        deadline_margin_ms=0,
        flush_interval_ms=10,
        syslog_url="tls://logs.example:6514",
        syslog_facility=19,
        syslog_ca_file="/opt/ca.pem",
        syslog_tls_verify=False,
        syslog_sd_id="acme@99999",
        syslog_app_name="orders-app",
        syslog_hostname="host-1",
        syslog_udp_max_bytes=480,
        syslog_timeout_ms=200,
        syslog_level=logging.ERROR,
        database_url="postgresql://writer@db/logs",
        database_secret_id="prod/logs",
        table="audit.logs",
        auto_migrate=True,
        database_connect_timeout_s=9,
        database_level=logging.CRITICAL,
        batch_size=25,
    )
    assert {name: getattr(cfg, name) for name in expected} == expected
    assert cfg.strict is True


@pytest.mark.parametrize(
    ("env", "field", "expected"),
    [
        ({"AWS_DEFAULT_REGION": "us-east-1"}, "region", "us-east-1"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "fn"}, "syslog_app_name", "fn"),
        ({"SYSLOG_FACILITY": "23"}, "syslog_facility", 23),
        ({"SYSLOG_FACILITY": "0"}, "syslog_facility", 0),
        ({"SYSLOG_FACILITY": "AuthPriv"}, "syslog_facility", 10),
        ({"AWS_LAMBDA_LOG_LEVEL": "TRACE"}, "log_level", logging.DEBUG),
        ({"AWS_LAMBDA_LOG_LEVEL": "fatal"}, "log_level", logging.CRITICAL),
        ({"AWS_LAMBDA_LOG_FORMAT": "json"}, "log_format", "JSON"),
        ({"LOGS_STDOUT": " ON "}, "stdout_enabled", True),
        ({"LOGS_STDOUT": ""}, "stdout_enabled", False),
        ({"LOGS_EVENT_MAX_BYTES": "  "}, "event_max_bytes", 2048),
        ({"LOGS_SPILL_DIR": "   "}, "spill_dir", "/tmp/flightrec-spill"),
        ({"LOGS_REDACT_KEYS": ""}, "redact_keys", DEFAULT_REDACT_KEYS),
        ({"LOGS_LIFECYCLE": "  "}, "lifecycle", None),
        ({"LOGS_LIFECYCLE": "On"}, "lifecycle", True),
    ],
)
def test_fallbacks_and_spellings(env, field, expected):
    # GIVEN one variable spelled in an accepted way (or blank, or absent with a fallback)
    # WHEN the config is read
    cfg = TelemetryConfig.from_env(env)

    # THEN the field has the parsed value
    assert getattr(cfg, field) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "lots"),
        ("AWS_LAMBDA_LOG_LEVEL", "VERBOSE"),
        ("AWS_LAMBDA_LOG_FORMAT", "xml"),
        ("LOGS_STDOUT", "maybe"),
        ("LOGS_STDOUT_LIFECYCLE", "2"),
        ("LOGS_CAPTURE_PRINT", "nope"),
        ("LOGS_LIFECYCLE", "sometimes"),
        ("LOGS_EVENT_MAX_BYTES", "-1"),
        ("LOGS_EVENT_MAX_BYTES", "2k"),
        ("LOGS_POLICY", "lenient"),
        ("LOGS_BUFFER_MAX_RECORDS", "0"),
        ("LOGS_SPILL_MAX_BYTES", "1.5"),
        ("TELEMETRY_FLUSH_BUDGET_MS", "0"),
        ("TELEMETRY_DEADLINE_MARGIN_MS", "-5"),
        ("TELEMETRY_FLUSH_INTERVAL_MS", "9"),
        ("SYSLOG_FACILITY", "24"),
        ("SYSLOG_FACILITY", "local8"),
        ("SYSLOG_TLS_VERIFY", "insecure"),
        ("SYSLOG_UDP_MAX_BYTES", "479"),
        ("SYSLOG_TIMEOUT_MS", "0"),
        ("SYSLOG_LEVEL", "loud"),
        ("LOGS_AUTO_MIGRATE", "please"),
        ("LOGS_DATABASE_CONNECT_TIMEOUT", "0"),
        ("LOGS_DATABASE_LEVEL", "5"),
        ("LOGS_BATCH_SIZE", "ten"),
    ],
)
def test_a_bad_value_raises_an_error_naming_the_variable(name, value):
    # GIVEN one variable with a value the runtime cannot use
    env = {name: value}

    # WHEN the config is read
    with pytest.raises(TelemetryConfigError) as raised:
        TelemetryConfig.from_env(env)

    # THEN the error names the variable (so the init error tells the user what to fix)
    assert name in str(raised.value)
    # AND it is a ValueError, as configuration errors are
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"SYSLOG_URL": "udp://127.0.0.1:514"}, True),
        ({"LOGS_DATABASE_URL": "postgresql://db/logs"}, True),
        ({"LOGS_DATABASE_SECRET_ID": "prod/logs"}, True),
        ({"LOGS_STDOUT_LIFECYCLE": "1"}, True),
        ({"SYSLOG_URL": "udp://127.0.0.1:514", "LOGS_LIFECYCLE": "0"}, False),
        ({"LOGS_DATABASE_URL": "postgresql://db/logs", "LOGS_LIFECYCLE": "off"}, False),
        ({"LOGS_LIFECYCLE": "1"}, True),
        ({"LOGS_LIFECYCLE": ""}, False),
        ({"SYSLOG_URL": "udp://127.0.0.1:514", "LOGS_LIFECYCLE": ""}, True),
    ],
)
def test_lifecycle_records_default_to_on_with_a_remote_sink_and_follow_an_explicit_setting(env, expected):
    # GIVEN a combination of sinks and LOGS_LIFECYCLE
    # WHEN the config is read
    cfg = TelemetryConfig.from_env(env)

    # THEN start/end/report records are written exactly when the rule says so
    assert cfg.lifecycle_records is expected


def test_a_config_is_immutable():
    # GIVEN a config read from the environment
    cfg = TelemetryConfig.from_env({"LOGS_POLICY": "strict"})

    # WHEN code tries to change a field or add one
    # THEN both are refused
    with pytest.raises(AttributeError):
        cfg.policy = "default"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        cfg.extra = 1  # type: ignore[attr-defined]
    # AND the list-valued setting is an immutable tuple, so it can be shared between threads
    assert isinstance(cfg.redact_keys, tuple)
    # AND the config is hashable (a value, not a bag of state)
    assert hash(cfg) == hash(TelemetryConfig.from_env({"LOGS_POLICY": "strict"}))
    # AND the original value is unchanged
    assert cfg.policy == "strict"
