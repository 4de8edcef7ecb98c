"""`deploy/template.yaml`: valid for CloudFormation and SAM (cfn-lint), and consistent with what `package` builds.

cfn-lint is not a project dependency (it pulls in the SAM translator and half of boto); the lint test runs it when
it is on PATH and is skipped, saying so, only when it is not. The other checks read the template as text (no YAML
library in the project either) and compare it with `runtime.package`, so the two cannot drift apart silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from runtime import package

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "template.yaml"


@pytest.fixture(scope="module")
def text() -> str:
    return TEMPLATE.read_text()


def allowed_values(text: str, parameter: str) -> list[str]:
    block = re.search(rf"\n  {parameter}:\n((?:    .*\n)+)", text)
    assert block, parameter
    values = re.search(r"AllowedValues: \[(.*)\]", block.group(1))
    assert values, parameter
    return [v.strip().strip('"') for v in values.group(1).split(",")]


def test_cfn_lint_passes():
    cfn_lint = shutil.which("cfn-lint")
    if cfn_lint is None:
        pytest.skip("cfn-lint is not installed (not a project dependency): `pipx install cfn-lint` to run this check")
    result = subprocess.run([cfn_lint, "--include-checks", "I", "--", str(TEMPLATE)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_targets_match_what_package_builds(text: str):
    assert allowed_values(text, "PythonVersion") == list(package.PYTHONS)
    assert allowed_values(text, "Architecture") == list(package.ARCHES)
    # CodeUri is relative to the template's folder: deploy/../dist/function.zip is package's default output
    code_uri = re.search(r"CodeUri: (\S+)", text)
    assert code_uri
    assert (TEMPLATE.parent / code_uri.group(1)).resolve() == REPO / package.DEFAULT_OUT / package.FUNCTION_ZIP
    assert f"/var/task/{package.WRAPPER_NAME}" in text
    handler = re.search(r"\n  HandlerName:\n(?:    .*\n)*?    Default: (\S+)", text)
    assert handler
    module, _, function = handler.group(1).rpartition(".")
    assert f"def {function}(" in (REPO / (module.replace(".", "/") + ".py")).read_text()


def test_database_credentials_come_from_a_secret_never_from_plain_text(text: str):
    variables = re.search(r"        Variables:\n((?:          .*\n)+)", text)
    assert variables
    names = re.findall(r"^          ([A-Z_]+):", variables.group(1), re.MULTILINE)
    assert "LOGS_DATABASE_SECRET_ID" in names
    assert "LOGS_DATABASE_URL" not in names  # a URL would carry the password in the function's configuration
    assert not any("PASSWORD" in n for n in names)
    assert {"SYSLOG_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"} <= set(names)
    # the extension that serves the secret on loopback, and the permission to read that one secret only
    assert "AWS-Parameters-and-Secrets-Lambda-Extension" in text
    assert re.search(r"AWSSecretsManagerGetSecretValuePolicy:\n\s+SecretArn: !Ref LogsDatabaseSecretArn", text)
    assert not re.search(r"\n  \w*Password\w*:\n", text)  # and no password parameter at all
