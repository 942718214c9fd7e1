"""The system packages the real node and the image builds need, installed from Debian's package registry.

Usage: python -m testbed.host [--check]

`make host` runs this (CI runs on a fresh machine, which has none of them). Each package is named with a file it
installs, so a machine that already has them is left alone and no apt index is fetched.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

# Debian package -> a file it installs.
PACKAGES = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "/usr/sbin/iptables",
    "conntrack": "/usr/sbin/conntrack",
    "iproute2": "/usr/sbin/ip",
    # The image builds: dockerd's classic builder (Debian has no buildx), and debootstrap for the base image.
    "docker.io": "/usr/sbin/dockerd",
    "debootstrap": "/usr/sbin/debootstrap",
    # docs/runbooks.md reads a certificate's end with `openssl x509`; its test runs the command as written.
    "openssl": "/usr/bin/openssl",
}


class HostError(RuntimeError):
    """A package the real node needs is missing, and this process cannot install it."""


def missing() -> list[str]:
    return [package for package, path in PACKAGES.items() if not pathlib.Path(path).exists()]


def require() -> None:
    """Raise with the fix when a package is missing."""
    absent = missing()
    if absent:
        raise HostError(f"the real node needs Debian packages {', '.join(absent)}: run `make host` (as root)")


def install() -> list[str]:
    """apt-get install whatever is missing; return what was installed."""
    absent = missing()
    if not absent:
        return []
    if os.geteuid() != 0:
        raise HostError(f"installing {', '.join(absent)} needs root: run `sudo make host`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *absent], check=True, env=env)
    return absent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say what is missing")
    args = parser.parse_args(argv)
    if args.check:
        absent = missing()
        print("missing: " + ", ".join(absent) if absent else "all present")
        return 1 if absent else 0
    installed = install()
    print("Installed " + ", ".join(installed) if installed else "Host packages present", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
