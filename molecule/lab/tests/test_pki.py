"""pki: the cluster CA on the controller, host certificates whose keys never leave their hosts, every host trusting
the CA through common, TensorBoard's nginx serving a cluster certificate, and a renewal that pki-check asks for and
pki-renew does with a reload of nginx only: no request fails while it runs."""

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from labtest import lab_address, lab_host, refused_output, run_playbook  # noqa: E402

testinfra_hosts = ["ansible://head", "ansible://cpu1", "ansible://cpu2"]

PKI = Path(os.environ["DL_LAB_STATE_DIR"]) / os.environ["DL_LAB_NAME"] / "pki"
CA_CERT = PKI / "dlcluster-cluster-ca.crt"
CA_KEY = PKI / "dlcluster-cluster-ca.key"
TRUSTED = "/usr/local/share/ca-certificates/dlcluster/dlcluster-cluster-ca.crt"
HOST_DIR = "/etc/dlcluster/pki"


def openssl(*args: str, stdin: str | None = None) -> str:
    """OpenSSL on the controller."""
    run = subprocess.run(["openssl", *args], input=stdin, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout


def served_certificate(source, address: str, port: int) -> str:
    """The certificate a TLS server presents to `source`, as PEM."""
    out = source.run(f"openssl s_client -connect {address}:{port} -servername {address} </dev/null 2>/dev/null "
                     "| openssl x509").stdout
    assert "BEGIN CERTIFICATE" in out, f"no certificate from {address}:{port}"
    return out


def not_after(pem: str) -> float:
    """Seconds from now until the certificate expires."""
    end = openssl("x509", "-noout", "-enddate", stdin=pem).strip().split("=", 1)[1]
    return time.mktime(time.strptime(end, "%b %d %H:%M:%S %Y GMT")) - time.mktime(time.gmtime())


def days_served(source, address: str, port: int, wanted, timeout: float = 20) -> float:
    """Days left of the certificate served, once `wanted(days)` holds (nginx's reload takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        days = not_after(served_certificate(source, address, port)) / 86400
        if wanted(days) or time.monotonic() > deadline:
            return days
        time.sleep(1)


def test_the_ca_is_made_on_the_controller_and_kept_private():
    assert PKI.stat().st_mode & 0o777 == 0o700
    assert CA_KEY.stat().st_mode & 0o777 == 0o600
    text = openssl("x509", "-in", str(CA_CERT), "-noout", "-text")
    assert re.search(r"Basic Constraints: critical\s+CA:TRUE, pathlen:0", text), text
    assert re.search(r"Key Usage: critical\s+Certificate Sign, CRL Sign", text), text
    # The lab's CA lives in the git-ignored lab state, never in the working tree.
    assert not subprocess.run(["git", "ls-files", "--error-unmatch", str(CA_KEY)], capture_output=True,
                              cwd=Path(__file__).resolve().parents[3], check=False).returncode == 0


def test_every_host_trusts_the_cluster_ca_through_common(host):
    trusted = host.file(TRUSTED)
    assert trusted.exists and trusted.content_string == CA_CERT.read_text()
    # In the system bundle that curl, Python and pip read.
    assert CA_CERT.read_text().strip().splitlines()[1] in host.file("/etc/ssl/certs/ca-certificates.crt").content_string


def test_tensorboard_certificate_key_was_made_on_the_host_and_never_left_it(host):
    name = host.ansible.get_variables()["inventory_hostname"]
    with host.sudo():
        key = host.file(f"{HOST_DIR}/tensorboard.key")
        assert (key.user, key.group, key.mode) == ("root", "root", 0o640)
        key_pem = key.content_string
        public = host.run(f"openssl pkey -in {HOST_DIR}/tensorboard.key -pubout").stdout
    cert = host.file(f"{HOST_DIR}/tensorboard.crt").content_string
    assert openssl("x509", "-noout", "-pubkey", stdin=cert) == public
    # Signed by the cluster CA, for the host's address and name, for servers and clients.
    assert openssl("verify", "-CAfile", str(CA_CERT), stdin=cert).strip() == "stdin: OK"
    text = openssl("x509", "-noout", "-text", stdin=cert)
    assert f"IP Address:{lab_address(name)}" in text and f"DNS:{name}" in text
    assert "TLS Web Server Authentication" in text
    # The private key is nowhere on the controller: not in the CA's directory, not in the lab's state.
    secret_line = key_pem.strip().splitlines()[1]
    state = PKI.parent
    hits = [path for path in state.rglob("*") if path.is_file() and path.stat().st_size < 1 << 20
            and secret_line in path.read_text(errors="ignore")]
    assert hits == []


def test_tensorboard_serves_the_cluster_certificate_to_other_hosts(host):
    """cpu1 reaches every host's TensorBoard over HTTPS with nothing but its system trust store."""
    name = host.ansible.get_variables()["inventory_hostname"]
    client = lab_host("cpu2" if name == "cpu1" else "cpu1")
    address = lab_address(name)
    status = client.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 https://{address}:6006/").stdout
    assert status == "401"  # the TLS handshake verified; nginx asks for the login
    plain = client.run(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 10 http://{address}:6006/").stdout
    assert plain == "400"  # nginx: plain HTTP sent to an HTTPS port


def test_the_preflight_refuses_a_missing_ca_and_a_lifetime_below_the_threshold():
    output = refused_output("site.yml", "--limit", "cpu1", "--tags", "preflight", "-e",
                            '{"pki_ca_create": false, "dl_pki_ca_cert": "/nonexistent/ca.crt", "pki_cert_lifetime_days": 20}')
    assert "Host cpu1: with pki_ca_create false the CA must already exist on the controller, but /nonexistent/ca.crt" \
        " does not" in output
    assert "pki_cert_lifetime_days (20) must be longer than pki_renew_days (30" in output


# HTTPS requests to TensorBoard and Jupyter every 100 ms until the stop file appears (at most 5 minutes), one
# "port:status" per line; without a login both answer 401/403 once the TLS handshake has verified.
PROBE = ("end=$((SECONDS+300)); while [ ! -e {log}.stop ] && [ $SECONDS -lt $end ]; do "
         "for port in 6006 8888; do "
         "echo $port:$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 https://{address}:$port/api/status); "
         "done >> {log}; sleep 0.1; done")


def unit_pid(host, unit: str) -> str:
    return host.run(f"systemctl show --property MainPID --value {unit}").stdout.strip()


def test_certificates_close_to_expiry_fail_the_check_and_renewal_reloads_nginx_without_an_outage():
    """Both of head's nginx certificates forced to 10 days: pki-check fails naming them; pki-renew signs them
    again and reloads nginx (same master PID, Jupyter and its kernels untouched) while HTTPS requests from cpu1
    never fail; then pki-check passes."""
    host = lab_host("head")
    address = lab_address("head")
    client = lab_host("cpu1")
    # Force head's certificates close to expiry: new ones with 10 days, from the renewal play itself.
    with host.sudo():
        host.run_expect([0], f"rm -f {HOST_DIR}/tensorboard.crt {HOST_DIR}/jupyter.crt")
    short = run_playbook("playbooks/pki-renew.yml", "--limit", "head",
                         "-e", '{"pki_cert_lifetime_days": 10, "pki_renew_days": 5}')
    assert short.returncode == 0, short.stdout[-3000:]
    for port in (6006, 8888):
        days = days_served(client, address, port, lambda days: days <= 10)
        assert 9 < days <= 10, f"port {port}: {days} days"

    check = run_playbook("playbooks/pki-check.yml")
    assert check.returncode != 0
    for name in ("tensorboard", "jupyter"):
        assert re.search(rf"head\s+{name}\s+nginx\s+\d+\.\d\s+RENEW", check.stdout), check.stdout[-3000:]
    message = " ".join((check.stdout + check.stderr).split())  # the YAML callback wraps long messages
    assert "have fewer than 30 days left: head/jupyter, head/tensorboard. Renew them with ansible-playbook " \
        "playbooks/pki-renew.yml" in message
    nginx_pid = host.run("cat /run/nginx.pid").stdout.strip()
    jupyter_pid = unit_pid(host, "dlcluster-jupyter")

    log = "/tmp/pki-renewal-probe.log"
    client.run_expect([0], f"rm -f {log} {log}.stop; setsid nohup bash -c "
                           f"{shlex.quote(PROBE.format(address=address, log=log))} >/dev/null 2>&1 &")
    time.sleep(2)
    started = time.monotonic()
    renew = run_playbook("playbooks/pki-renew.yml")
    renew_seconds = time.monotonic() - started
    time.sleep(2)
    client.run_expect([0], f"touch {log}.stop")
    assert renew.returncode == 0, renew.stdout[-3000:]
    assert re.search(r"changed: \[head\]", renew.stdout) and not re.search(r"changed: \[cpu[12]\]", renew.stdout)
    statuses = client.file(log).content_string.split()
    assert len(statuses) > 40, statuses
    assert set(statuses) == {"6006:401", "8888:403"}, f"requests failed during the renewal: {sorted(set(statuses))}"
    print(f"pki renewal: pki-renew.yml took {renew_seconds:.0f} s; {len(statuses)} HTTPS requests from cpu1 during it, "
          f"{sum(1 for status in statuses if status not in ('6006:401', '8888:403'))} failed")
    # Renewed and served; nginx reloaded, not restarted; Jupyter (and so its kernels) not restarted.
    for port in (6006, 8888):
        assert days_served(client, address, port, lambda days: days > 85) > 85
    assert host.run("cat /run/nginx.pid").stdout.strip() == nginx_pid
    assert unit_pid(host, "dlcluster-jupyter") == jupyter_pid
    check = run_playbook("playbooks/pki-check.yml")
    assert check.returncode == 0, check.stdout[-3000:]
    rows = re.findall(r"- (head|cpu1|cpu2)\s+(jupyter|tensorboard)\s+nginx\s+([\d.]+)\s+(ok|RENEW)", check.stdout)
    assert len(rows) == 6 and all(state == "ok" and float(days) > 85 for *_, days, state in rows), rows
