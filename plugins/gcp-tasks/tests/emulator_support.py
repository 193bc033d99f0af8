"""The Cloud Tasks emulator and test OIDC keys for the plugin's tests and its benchmark
(``bench/gcp_tasks.py``): no pytest here, so the benchmark runs where lssm-jobs is installed as users
install it. The fixtures that use them are in ``conftest.py``."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
EMULATOR_ENV = "LSSM_JOBS_TASKS_EMULATOR_PYTHON"
PROJECT, LOCATION = "lssm-test", "europe-west1"
SERVICE_ACCOUNT = "tasks-invoker@lssm-test.iam.gserviceaccount.com"
KEY_ID = "lssm-test-key"


def emulator_python() -> str | None:
    configured = os.environ.get(EMULATOR_ENV)
    if configured:
        return configured
    default = ROOT / ".nox" / "gcloud-tasks-emulator" / "bin" / "python"
    return str(default) if default.exists() else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class OidcKeys:
    """An RSA key pair with a self-signed certificate, and a local URL serving ``{kid: certificate PEM}`` the
    way ``https://www.googleapis.com/oauth2/v1/certs`` does."""

    def __init__(self, directory: Path, kid: str = KEY_ID) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lssm-jobs test OIDC")])
        now = datetime.datetime.now(datetime.timezone.utc)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(self.key, hashes.SHA256())
        )
        self.key_pem = self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        self.key_path = directory / "oidc-key.pem"
        self.key_path.write_text(self.key_pem)
        self.fetches = 0
        body = json.dumps({kid: self.certificate_pem}).encode()
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                keys.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/v1/certs"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def token(self, **overrides: Any) -> str:
        """A token like Cloud Tasks sends, signed with this key; ``overrides`` change claims (None drops one)."""
        from google.auth import crypt, jwt

        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": "https://accounts.google.com",
            "aud": "http://127.0.0.1/",
            "email": SERVICE_ACCOUNT,
            "email_verified": True,
            "sub": "1234567890",
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        claims = {key: value for key, value in claims.items() if value is not None}
        signer = crypt.RSASigner.from_string(self.key_pem, key_id=self.kid)
        token: bytes = jwt.encode(signer, claims)
        return token.decode()

    def forged_token(self, audience: str) -> str:
        """A token with every right claim and this key id, signed by another key (a forgery)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from google.auth import crypt, jwt

        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "email": SERVICE_ACCOUNT,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        token: bytes = jwt.encode(crypt.RSASigner.from_string(other.decode(), key_id=self.kid), claims)
        return token.decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class TasksEmulator:
    """``gcloud-tasks-emulator`` behind the loopback wrapper, as a subprocess."""

    def __init__(self, python: str, keys: OidcKeys) -> None:
        self.process = subprocess.Popen(
            [
                python,
                str(HERE / "tasks_emulator.py"),
                "--port",
                "0",
                "-q",
                "--oidc-key",
                str(keys.key_path),
                "--oidc-kid",
                keys.kid,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        line = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if line.startswith("READY ") or not line:
                break
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"the Cloud Tasks emulator did not start (last line {line!r})")
        self.address = line.split()[1]
        channel = grpc.insecure_channel(self.address)
        self.client = tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))

    def delete_queues(self, prefix: str) -> None:
        parent = f"projects/{PROJECT}/locations/{LOCATION}"
        for queue in self.client.list_queues(parent=parent):
            if queue.name.rsplit("/", 1)[-1].startswith(prefix):
                self.client.delete_queue(name=queue.name)

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
