"""Certificates for TLS tests, made by the ``openssl`` binary: a CA, a server certificate
for 127.0.0.1, client certificates. EC P-256 keys, unencrypted, valid two days."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

#: A new EC P-256 key, unencrypted: fast to make, and what a small broker setup uses.
NEW_KEY = ("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path


def make_ca(folder: Path, name: str) -> CertPair:
    """A self-signed CA certificate and its key, as ``folder/NAME.pem`` and ``NAME.key``."""
    pair = CertPair(folder / f"{name}.pem", folder / f"{name}.key")
    openssl(*NEW_KEY, "-x509", "-days", "2", "-keyout", pair.key, "-out", pair.cert,
            "-subj", f"/CN={name}")  # fmt: skip
    return pair


def issue(folder: Path, ca: CertPair, name: str, *, ip: str | None = None) -> CertPair:
    """A certificate signed by ``ca``: for a server at ``ip`` (its subjectAltName), or a
    client whose CN is ``name``."""
    pair = CertPair(folder / f"{name}.pem", folder / f"{name}.key")
    csr, ext = folder / f"{name}.csr", folder / f"{name}.ext"
    openssl(*NEW_KEY, "-keyout", pair.key, "-out", csr, "-subj", f"/CN={ip or name}")
    ext.write_text(f"subjectAltName=IP:{ip}\n" if ip else "basicConstraints=CA:FALSE\n")
    openssl(
        "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
        "-days", "2", "-out", pair.cert, "-extfile", ext,
    )  # fmt: skip
    return pair
