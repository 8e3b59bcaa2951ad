"""The image's entrypoint runs each process by argument, and the image fits the chart.

No Docker engine here: the entrypoint runs as a plain script with stand-ins
for uvicorn, celery and python on PATH that record their arguments, and the
Dockerfile is read for the facts the chart relies on (user, var directory,
static files).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.processes import ROOT
from tests.test_helm_rendering import container, env_of, pod_spec, render, workloads

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
DOCKERFILE = ROOT / "Dockerfile"


@pytest.fixture
def recorded(tmp_path: Path):
    """Run the entrypoint; return the commands it ran, one argv per line."""
    log = tmp_path / "commands.log"
    for program in ("uvicorn", "celery", "python"):
        stub = tmp_path / program
        stub.write_text(f'#!/bin/sh\necho "{program} $*" >> "{log}"\n')
        stub.chmod(0o755)

    def run(*args: str, **env: str) -> list[str]:
        log.unlink(missing_ok=True)
        base = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)}
        result = subprocess.run(
            ["sh", str(ENTRYPOINT), *args],
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return log.read_text().splitlines() if log.exists() else []

    return run


def test_web_runs_the_draining_server_with_workers_from_the_environment(recorded):
    (command,) = recorded(
        "web", WEB_CONCURRENCY="4", FORWARDED_ALLOW_IPS="10.0.0.0/8", LOG_LEVEL="WARNING"
    )
    assert command.startswith("python -m gateway_project.serve ")
    for option in (
        "--workers 4",
        "--host 0.0.0.0",
        "--port 8000",
        "--proxy-headers --forwarded-allow-ips 10.0.0.0/8",
        "--log-level warning",
    ):
        assert option in command


def test_web_is_the_default_and_takes_extra_arguments(recorded):
    (command,) = recorded()
    assert "--workers 1" in command
    (command,) = recorded("web", "--timeout-keep-alive", "75")
    assert command.endswith("--timeout-keep-alive 75")


def test_worker_and_beat_run_celery_with_the_gateway_app(recorded):
    assert recorded("worker", "--concurrency", "3") == [
        "celery -A gateway_project worker --loglevel info --concurrency 3"
    ]
    assert recorded("beat", GATEWAY_VAR_DIR="/app/var") == [
        "celery -A gateway_project beat --loglevel info --schedule /app/var/celerybeat-schedule"
    ]


def test_migrate_applies_the_named_configuration_between_migrations_and_prices(recorded):
    assert recorded("migrate", GATEWAY_CONFIG="/etc/ai-gateway/gateway.yaml") == [
        "python manage.py migrate --noinput",
        "python manage.py apply_config /etc/ai-gateway/gateway.yaml",
        "python manage.py load_prices",
    ]
    assert recorded("migrate") == [
        "python manage.py migrate --noinput",
        "python manage.py load_prices",
    ]


def test_manage_runs_any_management_command(recorded):
    assert recorded("manage", "createsuperuser") == ["python manage.py createsuperuser"]


def test_migrate_stops_at_the_first_failure(tmp_path, recorded):
    (tmp_path / "python").write_text('#!/bin/sh\necho "python $*" >> "$LOG"\nexit 3\n')
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "migrate"],
        env={
            "PATH": f"{tmp_path}:/usr/bin:/bin",
            "LOG": str(tmp_path / "log"),
            "GATEWAY_CONFIG": "x",
        },
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 3
    assert (tmp_path / "log").read_text().splitlines() == ["python manage.py migrate --noinput"]


def test_the_entrypoint_is_an_executable_posix_shell_script():
    assert os.access(ENTRYPOINT, os.X_OK)
    assert ENTRYPOINT.read_text().startswith("#!/bin/sh\n")
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], timeout=30).returncode == 0


def final_stage() -> str:
    text = DOCKERFILE.read_text()
    return text[text.rindex("\nFROM ") :]


def test_the_final_stage_runs_as_the_chart_s_user_without_build_tools():
    stage = final_stage()
    user = re.search(r"^USER (\d+):(\d+)$", stage, re.MULTILINE)
    assert user, "the final stage runs as a numeric user, so runAsNonRoot can verify it"
    for workload in workloads(render()):
        security = pod_spec(workload)["securityContext"]
        assert (int(user[1]), int(user[2])) == (security["runAsUser"], security["runAsGroup"])
    assert not re.search(r"build-essential|gcc|\bmake\b|-dev\b", stage)
    assert "COPY --from=build /opt/venv /opt/venv" in stage
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]' in stage


def test_the_image_s_var_and_static_directories_match_the_chart():
    text = DOCKERFILE.read_text()
    stage = final_stage()
    assert "GATEWAY_STATIC_ROOT=/app/static" in stage
    # Static files are collected at build time into the same directory.
    assert re.search(r"GATEWAY_STATIC_ROOT=/app/static\s+\\\s+python manage.py collectstatic", text)
    assert "GATEWAY_VAR_DIR=/app/var" in stage
    docs = render()
    for workload in workloads(docs):
        assert env_of(docs, workload)["GATEWAY_VAR_DIR"] == "/app/var"
        mounts = {mount["mountPath"] for mount in container(workload)["volumeMounts"]}
        assert {"/tmp", "/app/var"} <= mounts


def test_the_build_context_leaves_out_local_state_and_tools():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".tools", "var", "tests", "helm"} <= ignored
