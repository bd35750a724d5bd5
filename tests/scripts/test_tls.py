"""A node serves HTTPS when given a certificate, and clients verify it."""

from __future__ import annotations

import datetime
import ipaddress
import time

import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scripts.node_process import MirrorProcess, NodeProcess, run_cli


def self_signed(folder):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "idnode test node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "node.crt", folder / "node.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


def test_https_node_with_verified_clients(tmp_path):
    cert, key = self_signed(tmp_path)
    data = tmp_path / "node"
    assert run_cli("init", "--data", str(data), "--prefix", "88.118.2").returncode == 0
    with NodeProcess(data, tls=(cert, key)) as node:
        assert node.url.startswith("https://")
        common = ["--server", node.url, "--credentials", str(data / "admin.json")]
        put = run_cli("put", "88.118.2/TLS-1", "--url", "https://e.example/1", *common, "--cacert", str(cert))
        assert put.returncode == 0, put.stderr
        got = run_cli("get", "88.118.2/TLS-1", *common, "--cacert", str(cert))
        assert orjson.loads(got.stdout)["values"][0]["data"]["value"] == "https://e.example/1"
        untrusted = run_cli("get", "88.118.2/TLS-1", *common)
        assert untrusted.returncode == 3 and b"certificate" in untrusted.stderr.lower()


def test_a_mirror_follows_an_https_primary_and_serves_https(tmp_path):
    cert, key = self_signed(tmp_path)
    primary_dir, mirror_dir = tmp_path / "primary", tmp_path / "mirror"
    assert run_cli("init", "--data", str(primary_dir), "--prefix", "88.118.2").returncode == 0
    with NodeProcess(primary_dir, tls=(cert, key)) as primary:
        common = ["--server", primary.url, "--credentials", str(primary_dir / "admin.json"), "--cacert", str(cert)]
        for i in range(3):
            put = run_cli("put", f"88.118.2/TLS-M{i}", "--url", f"https://e.example/{i}", *common)
            assert put.returncode == 0, put.stderr
        with MirrorProcess(mirror_dir, primary.url, tls=(cert, key), cacert=cert) as mirror:
            assert mirror.url.startswith("https://")
            deadline = time.monotonic() + 30
            while (status := mirror.status())["lagEntries"] != 0 or status["appliedSeq"] == 0:
                assert time.monotonic() < deadline, status
                time.sleep(0.05)
            got = run_cli("get", "88.118.2/TLS-M2", "--server", mirror.url, "--cacert", str(cert))
            assert got.returncode == 0, got.stderr
            assert orjson.loads(got.stdout)["values"][0]["data"]["value"] == "https://e.example/2"

        # without --cacert the mirror does not trust the primary: it says so and applies nothing
        untrusting = MirrorProcess(tmp_path / "untrusting", primary.url)
        with untrusting:
            time.sleep(1.0)
            assert untrusting.status()["appliedSeq"] == 0
        log = next((tmp_path / "untrusting").glob("mirror-*.log")).read_text()
        assert "certificate" in log.lower()


def test_tls_settings_go_together(tmp_path):
    cert, _ = self_signed(tmp_path)
    alone = run_cli("serve", "--data", str(tmp_path), "--tls-cert", str(cert))
    assert alone.returncode == 4 and b"go together" in alone.stderr
