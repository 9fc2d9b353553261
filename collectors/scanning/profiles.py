"""nmap scan profiles and the exact argument list each one produces.

Arguments are built from typed, validated values only (a profile name, a port spec matching a strict
pattern, integers); operator text never becomes an nmap option.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

PORT_SPEC = re.compile(r"^(?:[TU]:)?[0-9]{1,5}(?:-[0-9]{1,5})?(?:,(?:[TU]:)?[0-9]{1,5}(?:-[0-9]{1,5})?)*$")


class ProfileError(ValueError):
    """An unknown profile or an invalid scan parameter."""


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    port_scan: bool
    top_ports: int = 0
    version_detection: bool = False
    default_scripts: bool = False
    os_detection: bool = False  # only when running as root


PROFILES: dict[str, Profile] = {p.name: p for p in [
    Profile("discovery", "host discovery only (ping scan)", port_scan=False),
    Profile("standard", "top 100 TCP ports with service and version detection", port_scan=True, top_ports=100,
            version_detection=True),
    Profile("deep", "top 1000 TCP ports, versions, default NSE scripts, OS detection when root", port_scan=True,
            top_ports=1000, version_detection=True, default_scripts=True, os_detection=True),
]}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileError(f"unknown scan profile {name!r}; choose one of {', '.join(PROFILES)}") from None


def check_ports(spec: str) -> str:
    """Validate an nmap port spec such as '22,80,8000-8100' or 'T:502'."""
    if not PORT_SPEC.match(spec):
        raise ProfileError(f"invalid port list {spec!r}: use numbers, ranges and commas, e.g. 22,80,8000-8100")
    for part in re.split(r"[,-]", re.sub(r"[TU]:", "", spec)):
        if not 0 < int(part) <= 65535:
            raise ProfileError(f"invalid port list {spec!r}: {part} is not a port number (1-65535)")
    return spec


def is_root() -> bool:
    return os.geteuid() == 0


def build_arguments(profile: str | Profile, *, ports: str | None = None, timing: int = 3, max_rate: int | None = None,
                    host_timeout_seconds: int = 900, max_retries: int = 1, root: bool | None = None,
                    version_intensity: int | None = None) -> list[str]:
    """nmap options (without targets and without -oX, which python-nmap adds)."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    root = is_root() if root is None else root
    if not 0 <= timing <= 5:
        raise ProfileError(f"timing must be 0-5, got {timing}")
    args = ["-n", f"-T{int(timing)}", "--max-retries", str(int(max_retries)),
            "--host-timeout", f"{int(host_timeout_seconds)}s"]
    if max_rate:
        args += ["--max-rate", str(int(max_rate))]
    if not prof.port_scan:
        return ["-sn", *args]
    args.insert(0, "-sS" if root else "-sT")
    args += ["-p", check_ports(ports)] if ports else ["--top-ports", str(prof.top_ports)]
    if prof.version_detection:
        args.append("-sV")
        if version_intensity is not None:
            if not 0 <= version_intensity <= 9:
                raise ProfileError(f"version intensity must be 0-9, got {version_intensity}")
            args += ["--version-intensity", str(int(version_intensity))]
    if prof.default_scripts:
        args.append("-sC")
    if prof.os_detection and root:
        args.append("-O")
    return args
