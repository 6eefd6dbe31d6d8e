"""Camera URL rules: which sources are allowed, where local files may be read from, and redaction.

Cameras from the settings file are trusted. A camera added through the API is not: it may read network
streams, but local files and devices only under `media_dir` (resolved, symlinks followed, `..` refused), so an
API client cannot make the service open /etc/passwd or an arbitrary /dev node (FFmpeg reads anything), and
network URLs only to hosts its `HostPolicy` allows (never a cloud metadata service or the service itself).

Redaction (model.redact, re-exported here): every URL shown anywhere (API, stats, logs, last_error) loses its
userinfo and its query values.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from model import redact_text as redact_text  # re-exported: the service's URL rules in one module
from model import redact_url as redact_url

NETWORK_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_WEBCAM = re.compile(r"^webcam:(\d{1,3})$")


@dataclass(frozen=True)
class SourceSpec:
    """What capture opens: a network URL, a local file, or a webcam index."""

    kind: Literal["network", "file", "webcam"]
    target: str | int  # URL, absolute path, or device index
    trusted: bool = True  # from the settings file; False: added over the API


def _split_scheme(url: str) -> str | None:
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else None


def check_scheme(url: str) -> None:
    """ValueError for anything but rtsp(s)://, http(s)://, webcam:N, file:// or a plain path. The messages never
    quote the URL (it may hold credentials) beyond its scheme."""
    if not url or not url.strip() or any(ord(c) < 32 for c in url):
        raise ValueError("camera url must be a non-empty string without control characters")
    scheme = _split_scheme(url)
    if scheme is None or scheme == "file":
        return
    if scheme == "webcam":
        if not _WEBCAM.match(url):
            raise ValueError("webcam url must be webcam:N (N = a device index, at most 3 digits)")
        return
    if scheme not in NETWORK_SCHEMES:
        # FFmpeg protocols such as concat:, pipe:, subfile:, data:, ftp:// would read arbitrary things.
        raise ValueError(f"unsupported url scheme {scheme!r}: use one of {', '.join(NETWORK_SCHEMES)}, "
                         "a file path or webcam:N")
    if not urlsplit(url).hostname:
        raise ValueError(f"{scheme} url has no host")


def resolve_source(url: str, *, trusted: bool, media_dir: Path | None) -> SourceSpec:
    """Check a camera URL and say what to open. Untrusted local paths must lie inside media_dir."""
    check_scheme(url)
    scheme = _split_scheme(url)
    if scheme in NETWORK_SCHEMES:
        return SourceSpec("network", url, trusted)
    if scheme == "webcam":
        index = int(url.split(":", 1)[1])
        if not trusted:
            _inside(Path(f"/dev/video{index}"), media_dir, what="device")
        return SourceSpec("webcam", index)
    raw = urlsplit(url).path if scheme == "file" else url
    path = Path(raw).expanduser()
    if not trusted:
        if ".." in path.parts:
            raise ValueError("camera path may not contain '..'")
        if media_dir is not None and not path.is_absolute():
            path = media_dir / path
        path = _inside(path, media_dir, what="file")
    return SourceSpec("file", str(path.resolve() if trusted else path))


def _inside(path: Path, media_dir: Path | None, *, what: str) -> Path:
    if media_dir is None:
        raise ValueError(f"local {what}s are not allowed for cameras added through the API (media_dir is unset)")
    root = media_dir.expanduser().resolve()
    real = path.resolve()  # follows symlinks: a link inside media_dir pointing out is refused
    if real != root and root not in real.parents:
        raise ValueError(f"local {what} {path} is outside media_dir")
    return real


# -- host policy for cameras added through the API ----------------------------------------------------------

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
# Never a camera: cloud metadata services (credentials live there), link-local, "this host" and multicast.
_DENIED_NETS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.0.0/16", "fe80::/10",  # link-local, which holds the AWS/GCP/Azure metadata address 169.254.169.254
    "fd00:ec2::254/128", "100.100.100.200/32", "168.63.129.16/32",  # AWS IPv6, Alibaba, Azure metadata
    "0.0.0.0/8", "::/128",  # unspecified: connecting to it reaches this host
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32"))
_DENIED_NAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data",
                           "instance-data.ec2.internal", "metadata.azure.com"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_INET_ATON_PART = re.compile(r"^(?:0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a camera added through the API may connect to.

    `allowed` (CIDRs or host names, `.example.com` for a domain and its subdomains) non-empty: only those, and
    nothing else is checked. Empty: anything but metadata, link-local, unspecified and multicast addresses, the
    service itself (`own` addresses and ports) and, when `private` is false, private and loopback addresses.
    """

    allowed: tuple[str, ...] = ()
    private: bool = True
    own: frozenset[tuple[str, int]] = frozenset()  # (host, port) the service answers on; host "" = any loopback


def parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host spelling means to the resolver, or None for a name. Besides dotted quads this
    accepts what inet_aton (and so FFmpeg's getaddrinfo) accepts: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376,
    169.254.43518. An IPv4-mapped IPv6 address is returned as its IPv4 address."""
    host = unquote(host).strip().rstrip(".").lower()
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = _inet_aton(host)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_INET_ATON_PART.match(p) for p in parts):
        return None
    nums = [int(p, 16) if p[:2] in ("0x", "0X") and len(p) > 2 else int(p, 8) if p.startswith("0") else int(p)
            for p in parts]
    # The last part fills the bits the leading bytes leave: a.b.c.d, a.b.(16 bits), a.(24 bits), (32 bits).
    last_bits = 8 * (5 - len(nums))
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 2**last_bits:
        return None
    value = 0
    for n in nums[:-1]:
        value = value << 8 | n
    return ipaddress.IPv4Address(value << last_bits | nums[-1])


def check_host(url: str, policy: HostPolicy) -> None:
    """ValueError when an API-added camera's network URL points where it may not. Names are checked as
    written, never resolved (no DNS here): a strict deployment lists its cameras in `policy.allowed`."""
    scheme = _split_scheme(url)
    if scheme not in NETWORK_SCHEMES:
        return
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("camera url has an invalid port") from None
    ip = parse_ip(host)
    if policy.allowed:
        if not any(_matches(entry, host, ip) for entry in policy.allowed):
            raise ValueError(f"camera host {host!r} is not in camera_allowed_hosts")
        return
    if ip is None:
        if host in _DENIED_NAMES:
            raise ValueError(f"camera host {host!r} is a cloud metadata service")
        if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
            ip = ipaddress.ip_address("127.0.0.1")
        elif (host, port) in policy.own:
            raise ValueError("a camera may not point at this service itself")
        else:
            return
    if any(ip in net for net in _DENIED_NETS if net.version == ip.version):
        raise ValueError(f"camera host {ip} is a link-local, metadata, unspecified or multicast address")
    if (ip.is_loopback and ("", port) in policy.own) or (str(ip), port) in policy.own:
        raise ValueError("a camera may not point at this service itself")
    if not policy.private and (ip.is_private or ip.is_loopback):
        raise ValueError(f"camera host {ip} is a private address (camera_private_hosts is off)")


def _matches(entry: str, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    entry = entry.strip().lower().rstrip(".")
    if ip is not None:
        try:
            return ip in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    if entry.startswith("."):
        return host == entry[1:] or host.endswith(entry)
    return host == entry


def check_host_entry(entry: str) -> str:
    """Settings validator: a camera_allowed_hosts entry is a CIDR, an address or a host name."""
    e = entry.strip().lower()
    try:
        ipaddress.ip_network(e, strict=False)
        return e
    except ValueError:
        pass
    if not _HOST_NAME.match(e):
        raise ValueError(f"{entry!r} is neither a CIDR, an IP address nor a host name")
    return e


_HOST_NAME = re.compile(r"^\.?[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?$")
