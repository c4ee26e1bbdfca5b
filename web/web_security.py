"""Who may drive the browser app: loopback by default, same-origin WebSockets and downloads only,
and a ``--save`` path that never replaces the input CT or an existing file."""

import ipaddress
from pathlib import Path
from typing import Iterable
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
