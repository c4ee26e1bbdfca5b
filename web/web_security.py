"""Who may drive the browser app: loopback by default, same-origin WebSockets and downloads only,
and a ``--save`` path that never replaces the input CT or an existing file."""

import ipaddress
from pathlib import Path
from typing import Iterable, List
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def reachable_host_names(bind_host: str) -> List[str]:
    """The names and addresses by which other machines reach a server bound to ``bind_host``:
    that host itself, or for a wildcard bind (0.0.0.0, ::) this machine's host name, its fully
    qualified name and its addresses. A request for any other Host is refused (DNS rebinding)."""
    import socket

    if bind_host not in WILDCARD_HOSTS:
        return [bind_host.lower()]
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            names |= {info[4][0].lower() for info in socket.getaddrinfo(name, None)}
        except OSError:
            pass  # a host name that does not resolve: the other names still serve
    try:  # the address of the default route (no packet is sent for a UDP connect)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            names.add(probe.getsockname()[0])
    except OSError:
        pass
    return sorted(name for name in names if name and not is_loopback(name))


def same_origin_guard(allowed_hosts: Iterable[str]):
    """aiohttp middleware: a request whose Host is not one of ours (DNS rebinding), or that comes
    from a page of another origin (a browser sends Origin), is refused with 403."""
    from aiohttp import web

    allowed = {h.lower() for h in allowed_hosts}

    @web.middleware
    async def guard(request, handler):
        host = (request.url.host or "").lower().strip("[]")
        origin = request.headers.get("Origin")
        origin_ok = origin is None or (urlsplit(origin).netloc.lower() == request.host.lower())
        if host not in allowed or not origin_ok:
            return web.Response(status=403, text="SAMIHS: connections from other hosts or pages are refused.")
        return await handler(request)

    return guard


def check_save_path(save_path: Path, ct_path: Path, overwrite: bool) -> Path:
    """Refuse to save over the input CT, or over an existing file unless ``overwrite``."""
    save_path = Path(save_path)
    if not save_path.name.lower().endswith(".seg.nrrd"):
        raise ValueError(f"--save writes a Slicer segmentation: the name must end with .seg.nrrd, not {save_path.name}.")
    if save_path.exists() and save_path.resolve() == Path(ct_path).resolve():
        raise ValueError(f"--save {save_path} is the input CT; choose another file.")
    if save_path.exists() and not overwrite:
        raise ValueError(f"--save {save_path} exists; add --overwrite to replace it.")
    return save_path
