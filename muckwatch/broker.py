"""Provisioning a production Mosquitto: credentials, the ACL and a TLS certificate.

``muckwatch broker init DIR`` writes ``deploy/mosquitto.production.conf`` (paths pointed at
DIR), a password file with the ingest and gateway users, the ACL and — unless certificates
are given — a private CA with a server certificate. ``muckwatch devices add`` / ``revoke``
manage one terminal's credentials; Mosquitto re-reads the files on SIGHUP.

The ACL gives every device write access to ``muck/v1/{its user name}/#`` only (a ``pattern``
rule: the user name *is* the device id) and no read access at all; the ingest user reads
``muck/v1/#``; the gateway user writes ``muck/v1/#`` (it authenticates its terminals itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from muckwatch.locations import BROKER_TEMPLATE as TEMPLATE

TEMPLATE_DIR = "/etc/mosquitto/muckwatch/"
INGEST_USER = "muckwatch-ingest"
GATEWAY_USER = "muckwatch-gateway"
DEVICE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class BrokerSetupError(RuntimeError):
    """A provisioning step failed; says which and why."""


@dataclass
class BrokerFiles:
    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def passwd(self) -> Path:
        return self.directory / "passwd"

    @property
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"


ACL = f"""# muckwatch broker ACL (muckwatch broker init). Mosquitto re-reads it on SIGHUP.
# The ingest reads all telemetry and device status.
user {INGEST_USER}
topic read muck/v1/#

# The JT/T 808 gateway publishes for the terminals it authenticated itself.
user {GATEWAY_USER}
topic write muck/v1/#

# Every other user is a device whose user name is its device id: it may publish under its
# own id only, and read nothing.
pattern write muck/v1/%u/#
"""


def _run(args: list[str], what: str, stdin: str | None = None) -> str:
    if shutil.which(args[0]) is None:
        raise BrokerSetupError(f"{what}: {args[0]} is not installed")
    out = subprocess.run(args, capture_output=True, text=True, input=stdin, timeout=60)
    if out.returncode != 0:
        raise BrokerSetupError(f"{what} failed: {(out.stderr or out.stdout).strip()[-400:]}")
    return out.stdout


def new_password() -> str:
    return secrets.token_urlsafe(18)


def init(directory: Path, hostnames: list[str], *, ingest_password: str | None = None,
         gateway_password: str | None = None) -> dict[str, str]:
    """Write config, password file, ACL and certificates; returns the service passwords."""
    files = BrokerFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if files.passwd.exists():
        raise BrokerSetupError(f"{files.passwd} exists: this broker is already set up "
                               "(use muckwatch devices add/revoke)")
    if not TEMPLATE.is_file():
        raise BrokerSetupError(f"the broker template {TEMPLATE} is missing (it ships in the "
                               "muckwatch source checkout, deploy/)")
    conf = TEMPLATE.read_text(encoding="utf-8").replace(TEMPLATE_DIR, f"{directory}/")
    files.conf.write_text(conf, encoding="utf-8")
    files.acl.write_text(ACL, encoding="utf-8")
    passwords = {INGEST_USER: ingest_password or new_password(),
                 GATEWAY_USER: gateway_password or new_password()}
    files.passwd.touch(mode=0o600)
    for user, password in passwords.items():
        _run(["mosquitto_passwd", "-b", str(files.passwd), user, password],
             f"adding {user} to {files.passwd}")
    _certificates(directory, hostnames)
    return passwords


def _certificates(directory: Path, hostnames: list[str]) -> None:
    """A private CA and a server certificate for ``hostnames`` (IPs allowed), 825 days."""
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
          "-out", str(ca_crt), "-days", "3650", "-subj", "/CN=muckwatch broker CA"],
         "creating the CA")
    _run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
          str(csr), "-subj", f"/CN={hostnames[0]}"], "creating the server key")
    san = ",".join(f"IP:{h}" if re.fullmatch(r"[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:]*", h)
                   else f"DNS:{h}" for h in hostnames)
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n", encoding="utf-8")
    _run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey",
          str(ca_key), "-CAcreateserial", "-out", str(crt), "-days", "825", "-extfile",
          str(ext)], "signing the server certificate")
    csr.unlink()
    ext.unlink()
    for private in (ca_key, key):
        private.chmod(0o600)


def add_device(directory: Path, device: str, password: str | None = None) -> str:
    """Create (or reset) a device's credentials; returns its password."""
    if not DEVICE_ID.fullmatch(device) or device in (INGEST_USER, GATEWAY_USER):
        raise BrokerSetupError(f"{device!r} is not a usable device id (1–64 of A–Z a–z 0–9 "
                               "_ . : -, not a service user)")
    files = BrokerFiles(directory)
    if not files.passwd.exists():
        raise BrokerSetupError(f"{files.passwd} does not exist: run muckwatch broker init")
    password = password or new_password()
    with _keeping_owner(files.passwd):
        _run(["mosquitto_passwd", "-b", str(files.passwd), device, password],
             f"adding {device}")
    return password


def revoke_device(directory: Path, device: str) -> bool:
    files = BrokerFiles(directory)
    users = [line.split(":", 1)[0] for line in files.passwd.read_text().splitlines() if line]
    if device not in users or device in (INGEST_USER, GATEWAY_USER):
        return False
    with _keeping_owner(files.passwd):
        _run(["mosquitto_passwd", "-D", str(files.passwd), device], f"revoking {device}")
    return True


@contextlib.contextmanager
def _keeping_owner(path: Path):
    """mosquitto_passwd rewrites the file; the broker's user must still be able to read it
    after a SIGHUP, so owner and mode are put back."""
    st = path.stat()
    yield
    os.chown(path, st.st_uid, st.st_gid)
    path.chmod(st.st_mode & 0o777)
