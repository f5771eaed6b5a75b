"""Jupyter and TensorBoard on head (deployed by site.yml) as another lab host sees them: real HTTP requests from cpu1."""

import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_host, probe, refused_output, run_playbook, site_address  # noqa: E402

testinfra_hosts = ["ansible://head"]

OPS_USER = "ubuntu"
ENV = f"/home/{OPS_USER}/workspaces/py3"
JUPYTER_CONFIG = "/etc/dlcluster/jupyter/jupyter_server_config.json"
HTPASSWD = "/etc/nginx/dlcluster-tensorboard.htpasswd"
NGINX_SITE = "/etc/nginx/conf.d/dlcluster-tensorboard.conf"



@pytest.fixture(scope="module")
def head_address(host):
    return host.ansible.get_variables()["ansible_host"]


@pytest.fixture(scope="module")
def secrets():
    """The lab's credentials, made on first use in the lab's state (inventories/lab/group_vars/all/notebooks.yml)."""
    state = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"]
    return {"token": (state / "jupyter-token").read_text().split()[0], "user": "tensorboard",
            "password": (state / "tensorboard-password").read_text().split()[0]}


@pytest.fixture(scope="module")
def client():
    return lab_host("cpu1")


def http(source, url, *curl_args):
    """(status, body) of a GET (or what curl_args make it) sent from `source`."""
    argv = ["curl", "-s", "--max-time", "20", "-w", r"\n%{http_code}", *curl_args, url]
    out = source.run(" ".join(shlex.quote(a) for a in argv)).stdout
    body, _, status = out.rpartition("\n")
    return int(status or 0), body


def until(check, timeout=90, what="condition"):
    """Poll `check` until it returns a true value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.5)


def unit_show(host, unit, prop):
    return host.run(f"systemctl show --property {prop} --value {unit}").stdout.strip()


def listeners(host, port):
    """Local addresses listening on TCP `port`."""
    rows = host.run(f"ss -Hltn 'sport = :{port}'").stdout.splitlines()
    return sorted(row.split()[3] for row in rows)


# --- services -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit", ["dlcluster-jupyter", "dlcluster-tensorboard"])
def test_service_runs_as_the_ops_user_and_restarts_on_failure(host, unit):
    service = host.service(unit)
    assert service.is_running and service.is_enabled
    pid = unit_show(host, unit, "MainPID")
    assert host.run(f"ps -o user= -p {pid}").stdout.strip() == OPS_USER
    assert unit_show(host, unit, "Restart") == "on-failure"


def test_jupyter_runs_from_the_ops_users_environment(host):
    pid = unit_show(host, "dlcluster-jupyter", "MainPID")
    with host.sudo():
        cmdline = host.run(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert f"{ENV}/bin/" in cmdline and f"--config={JUPYTER_CONFIG}" in cmdline


def test_tensorboard_reads_the_configured_logdir(host):
    pid = unit_show(host, "dlcluster-tensorboard", "MainPID")
    with host.sudo():
        cmdline = host.run(f"tr '\\0' '\\n' < /proc/{pid}/cmdline").stdout.splitlines()
    assert cmdline[cmdline.index("--logdir") + 1] == f"/home/{OPS_USER}/runs"
    with host.sudo():  # the ops user's home is 0750
        assert host.file(f"/home/{OPS_USER}/runs").user == OPS_USER


def test_listening_only_on_the_private_address(host, head_address):
    """The cluster address, and the site address where people on the VPN reach it (roles/vpn)."""
    site = site_address("head")
    assert listeners(host, 8888) == sorted([f"{head_address}:8888", f"{site}:8888"])
    assert listeners(host, 18888) == ["127.0.0.1:18888"]
    assert listeners(host, 6006) == sorted([f"{head_address}:6006", f"{site}:6006"])
    assert listeners(host, 16006) == ["127.0.0.1:16006"]
    assert listeners(host, 80) == []  # nginx's default site is off


def test_files_with_secrets_are_not_world_readable(host):
    with host.sudo():
        config = host.file(JUPYTER_CONFIG)
        assert (config.user, config.group, config.mode) == ("root", OPS_USER, 0o640)
        logins = host.file(HTPASSWD)
        assert (logins.user, logins.group, logins.mode) == ("root", "www-data", 0o640)
        # SHA-512 crypt, never the password itself.
        entries = [line for line in logins.content_string.splitlines() if not line.startswith("#")]
        assert len(entries) == 1 and entries[0].startswith("tensorboard:$6$")
        assert host.run("nginx -t").rc == 0


# --- Jupyter over the network ---------------------------------------------------------------------------------------

def test_jupyter_answers_the_token(client, head_address, secrets):
    status, body = http(client, f"https://{head_address}:8888/api/status",
                        "-H", f"Authorization: token {secrets['token']}")
    assert status == 200
    assert "started" in json.loads(body)


@pytest.mark.parametrize("headers", [[], ["-H", "Authorization: token wrong-token-0123456789abcdef"]],
                         ids=["no-token", "wrong-token"])
def test_jupyter_refuses_requests_without_the_token(client, head_address, headers):
    status, body = http(client, f"https://{head_address}:8888/api/status", *headers)
    assert status == 403
    assert "started" not in body


def test_jupyter_lab_page_sends_strangers_to_the_login(client, head_address):
    out = client.run(f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' https://{head_address}:8888/lab")
    status, location = out.stdout.split(" ", 1)
    assert status == "302" and "/login" in location


# --- TensorBoard behind nginx ---------------------------------------------------------------------------------------

def test_tensorboard_answers_the_login(client, head_address, secrets):
    login = f"{secrets['user']}:{secrets['password']}"
    status, body = http(client, f"https://{head_address}:6006/", "-u", login)
    assert status == 200 and "tb-relative-root" in body
    status, body = http(client, f"https://{head_address}:6006/data/runs", "-u", login)
    assert status == 200 and isinstance(json.loads(body), list)


@pytest.mark.parametrize("auth", [[], ["-u", "tensorboard:wrong-password"], ["-u", "admin:wrong-password"]],
                         ids=["no-login", "wrong-password", "wrong-user"])
def test_tensorboard_refuses_requests_without_the_login(client, head_address, auth):
    status, body = http(client, f"https://{head_address}:6006/data/runs", *auth)
    assert status == 401
    assert "tb-relative-root" not in body


def test_tensorboard_itself_is_not_reachable_from_other_hosts(client, head_address):
    assert probe(client, "tcp", head_address, 16006) == "refused"


def test_tensorboard_shows_a_run_written_to_the_logdir(host, client, head_address, secrets):
    writer = (
        "import time\n"
        "from tensorboard.compat.proto import event_pb2, summary_pb2\n"
        "from tensorboard.summary.writer.event_file_writer import EventFileWriter\n"
        f"w = EventFileWriter('/home/{OPS_USER}/runs/verify-run')\n"
        "v = summary_pb2.Summary.Value(tag='loss', simple_value=0.25)\n"
        "w.add_event(event_pb2.Event(wall_time=time.time(), step=1, summary=summary_pb2.Summary(value=[v])))\n"
        "w.close()\n"
    )
    with host.sudo(OPS_USER):
        host.run_expect([0], f"{ENV}/bin/python -c {shlex.quote(writer)}")
    login = f"{secrets['user']}:{secrets['password']}"
    try:
        until(lambda: "verify-run" in http(client, f"https://{head_address}:6006/data/runs", "-u", login)[1],
              what="the run showing up in TensorBoard")
        status, body = http(client, f"https://{head_address}:6006/data/plugin/scalars/scalars?run=verify-run&tag=loss",
                            "-u", login)
        assert status == 200 and json.loads(body)[0][1:] == [1, 0.25]
    finally:
        with host.sudo(OPS_USER):
            host.run(f"rm -rf /home/{OPS_USER}/runs/verify-run")


# --- supervision ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("unit,port", [("dlcluster-jupyter", 18888), ("dlcluster-tensorboard", 16006)])
def test_killed_service_is_started_again_by_systemd(host, client, head_address, secrets, unit, port):
    with host.sudo():
        before = unit_show(host, unit, "MainPID")
        restarts = int(unit_show(host, unit, "NRestarts"))
        host.run_expect([0], f"kill -9 {before}")
        until(lambda: unit_show(host, unit, "ActiveState") == "active"
              and unit_show(host, unit, "MainPID") not in ("0", before), what=f"{unit} active with a new PID")
        assert int(unit_show(host, unit, "NRestarts")) > restarts
    until(lambda: probe(host, "tcp", "127.0.0.1", port) == "open", what=f"{unit} listening again")
    if unit == "dlcluster-jupyter":
        assert http(client, f"https://{head_address}:8888/api/status",
                    "-H", f"Authorization: token {secrets['token']}")[0] == 200
    else:
        login = f"{secrets['user']}:{secrets['password']}"
        until(lambda: http(client, f"https://{head_address}:6006/data/runs", "-u", login)[0] == 200,
              what="TensorBoard answering through nginx again")


# --- refusals and secrets -------------------------------------------------------------------------------------------

def settings_state(host):
    with host.sudo():
        return [host.file(path).sha256sum for path in (JUPYTER_CONFIG, HTPASSWD, NGINX_SITE)]


@pytest.mark.parametrize("extra_vars,expected", [
    ('{"jupyter_token": ""}', ["jupyter_token", "ansible-vault encrypt_string"]),
    ('{"jupyter_bind_address": "0.0.0.0"}', ["jupyter_bind_address", "jupyter_allow_all_addresses"]),
    ('{"tensorboard_password": ""}', ["tensorboard_password", "ansible-vault encrypt_string"]),
    ('{"tensorboard_bind_address": "::"}', ["tensorboard_bind_address", "tensorboard_allow_all_addresses"]),
    ('{"jupyter_env": "no-such-env"}', ["no-such-env", "python_envs"]),
], ids=["no-jupyter-token", "jupyter-everywhere", "no-tensorboard-password", "tensorboard-everywhere", "no-env"])
def test_bad_settings_are_refused_before_anything_changes(host, secrets, extra_vars, expected):
    before = settings_state(host)
    output = refused_output("playbooks/notebooks.yml", "--limit", "head", "-e", extra_vars)
    for text in expected:
        assert text in output
    assert "Nothing was changed" in output
    assert secrets["token"] not in output and secrets["password"] not in output
    assert settings_state(host) == before


def test_own_tls_files_and_a_password_login(host, client, head_address, secrets):
    """One run with both (one apply, one restore): certificate files of one's own instead of the cluster CA's,
    served by both nginx sites, and a password hash instead of Jupyter's token, whose login form lets the password
    in while the old token no longer works. TensorBoard's login still holds. Without them again, both are back on
    cluster certificates (verified by the system trust store) and the token."""
    password = "verify-password-31c7"
    with host.sudo(OPS_USER):
        hashed = host.check_output(
            f"{ENV}/bin/python -c {shlex.quote(f'from jupyter_server.auth import passwd; print(passwd({password!r}))')}")
    assert hashed.startswith("argon2:")
    tls_dir = "/etc/dlcluster/test-tls"
    with host.sudo():
        host.run_expect([0], f"mkdir -p {tls_dir} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=head "
                             f"-addext subjectAltName=IP:{head_address} -keyout {tls_dir}/key.pem -out {tls_dir}/cert.pem"
                             f" && chgrp {OPS_USER} {tls_dir}/key.pem && chmod 0640 {tls_dir}/key.pem")
        certificate = host.file(f"{tls_dir}/cert.pem").content_string
    client.run_expect([0], f"printf %s {shlex.quote(certificate)} > /tmp/notebooks-ca.pem")
    settings = {"jupyter_tls_cert": f"{tls_dir}/cert.pem", "jupyter_tls_key": f"{tls_dir}/key.pem",
                "tensorboard_tls_cert": f"{tls_dir}/cert.pem", "tensorboard_tls_key": f"{tls_dir}/key.pem",
                "jupyter_password_hash": hashed, "jupyter_token": ""}
    ca = ["--cacert", "/tmp/notebooks-ca.pem"]
    login = (
        'jar=$(mktemp); url="$1"\n'
        'curl -s --cacert /tmp/notebooks-ca.pem -c "$jar" -o /dev/null "$url/login"\n'
        "xsrf=$(awk '$6 == \"_xsrf\" {print $7}' \"$jar\")\n"
        'curl -s --cacert /tmp/notebooks-ca.pem -b "$jar" -c "$jar" -o /dev/null --data-urlencode "_xsrf=$xsrf" '
        '--data-urlencode "password=$2" "$url/login"\n'
        'curl -s --cacert /tmp/notebooks-ca.pem -b "$jar" -o /dev/null -w "%{http_code}" "$url/api/status"; '
        'rm -f "$jar"\n'
    )
    url = f"https://{head_address}:8888"
    try:
        run = run_playbook("playbooks/notebooks.yml", "--limit", "head", "-e", json.dumps(settings))
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        assert password not in run.stdout
        assert client.run(f"bash -c {shlex.quote(login)} login {url} {password}").stdout == "200"
        assert client.run(f"bash -c {shlex.quote(login)} login {url} wrong-password").stdout == "403"
        assert http(client, f"{url}/api/status", *ca, "-H", f"Authorization: token {secrets['token']}")[0] == 403
        assert http(client, f"{url}/api/status", *ca)[0] == 403
        assert http(client, f"http://{head_address}:8888/api/status")[0] != 200  # no plain HTTP any more
        assert http(client, f"https://{head_address}:6006/data/runs", *ca,
                    "-u", f"{secrets['user']}:{secrets['password']}")[0] == 200
        assert http(client, f"https://{head_address}:6006/data/runs", *ca)[0] == 401
    finally:
        run = run_playbook("playbooks/notebooks.yml", "--limit", "head")
        assert run.returncode == 0, (run.stdout + run.stderr)[-3000:]
        with host.sudo():
            host.run(f"rm -rf {tls_dir}")
        client.run("rm -f /tmp/notebooks-ca.pem")
    assert http(client, f"https://{head_address}:6006/data/runs", "-u", f"{secrets['user']}:{secrets['password']}")[0] == 200
    assert http(client, f"{url}/api/status", "-H", f"Authorization: token {secrets['token']}")[0] == 200
