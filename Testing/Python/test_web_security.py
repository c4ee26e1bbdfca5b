"""The browser app is driven only by its user: a per-launch token, same-origin WebSockets only,
loopback by default, and --save that never overwrites the CT or an existing file."""

import asyncio
import subprocess
import sys

import numpy as np
import pytest

from SAMIHSLib.io.volume_io import CTVolume, write_ct

from web_server import APP, REPO, WebAppProcess


def _hello(ws_url: str, secret: str, headers=None):
    """Open the app's WebSocket and say wslink's hello with ``secret``; returns (status, reply)."""
    import aiohttp
    import msgpack
    from wslink.chunking import UnChunker, generate_chunks

    async def run():
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(ws_url, headers=headers or {}) as ws:
                    hello = {"wslink": "1.0", "id": "system:c0:0", "method": "wslink.hello",
                             "args": [{"secret": secret}], "kwargs": {}}
                    for chunk in generate_chunks(msgpack.packb(hello), 0):
                        await ws.send_bytes(chunk)
                    unchunker = UnChunker()
                    while True:
                        message = await ws.receive(timeout=60)
                        if message.type != aiohttp.WSMsgType.BINARY:
                            return "closed", None
                        reply = unchunker.process_chunk(message.data)
                        if reply is not None and reply.get("id") == "system:c0:0":
                            return "reply", reply
            except aiohttp.WSServerHandshakeError as error:
                return f"http {error.status}", None

    return asyncio.run(run())


@pytest.fixture
def running_app(web_app_server):
    """The web tests' one server: (its port, its URL with the token)."""
    return web_app_server.port, web_app_server.url


def test_only_the_launch_token_opens_a_session(running_app):
    port, url = running_app
    token = url.split("secret=", 1)[1]
    assert len(token) >= 24 and url.startswith(f"http://127.0.0.1:{port}/")
    ws = f"ws://127.0.0.1:{port}/ws"
    status, reply = _hello(ws, "wslink-secret")  # wslink's public default
    assert status == "closed" or "error" in reply, reply
    status, reply = _hello(ws, token)
    assert status == "reply" and "clientID" in reply.get("result", {}), reply


def test_other_origins_and_host_names_are_refused(running_app):
    port, url = running_app
    token = url.split("secret=", 1)[1]
    ws = f"ws://127.0.0.1:{port}/ws"
    assert _hello(ws, token, {"Origin": "http://evil.example"})[0] == "http 403"  # a page of another site
    assert _hello(ws, token, {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})[0] == \
        "http 403"  # DNS rebinding: right origin for the wrong name
    assert _hello(ws, token, {"Origin": f"http://127.0.0.1:{port}"})[0] == "reply"  # its own page


def test_save_never_overwrites_the_ct_or_an_existing_file(tmp_path, small_phantom):
    ct_path = write_ct(tmp_path / "ct.seg.nrrd", CTVolume(small_phantom.volume_hu[:2], (0.9, 0.9, 5.0), (0, 0, 0),
                                                          np.eye(3)))
    existing = tmp_path / "old.seg.nrrd"
    existing.write_bytes(b"earlier result")
    for save, message in ((ct_path, "is the input CT"), (existing, "exists; add --overwrite"),
                          (tmp_path / "x.nii.gz", "must end with .seg.nrrd")):
        done = subprocess.run([sys.executable, str(APP), str(ct_path), "--save", str(save)], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    assert existing.read_bytes() == b"earlier result"


def test_a_server_on_every_interface_serves_the_network_names_it_prints(tmp_path, small_phantom):
    """``--host 0.0.0.0`` is for other machines: a request for this machine's own name or address
    is served, each URL printed is one the guard lets through, and a foreign name is still refused."""
    import importlib.util
    import socket

    spec = importlib.util.spec_from_file_location("web_security", REPO / "web" / "web_security.py")
    web_security = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web_security)  # the app's own module, as the app loads it (a sibling file)
    reachable_host_names = web_security.reachable_host_names

    names = reachable_host_names("0.0.0.0")
    assert names and socket.gethostname().lower() in names
    ct_path = write_ct(tmp_path / "ct.nrrd", CTVolume(small_phantom.volume_hu, (0.9, 0.9, 5.0), (0, 0, 0), np.eye(3)))
    app = WebAppProcess([str(ct_path), "--host", "0.0.0.0"])
    try:
        urls = app.wait_for_urls(1 + len(names))  # printed once the server listens
        port = app.port
        printed = {url.split("//", 1)[1].rsplit(":", 1)[0].strip("[]") for url in urls}
        assert printed == {"127.0.0.1"} | set(names)
        token = urls[0].split("secret=", 1)[1]
        ws = f"ws://127.0.0.1:{port}/ws"
        # a network client naming this machine
        assert _hello(ws, token, {"Host": f"{names[0]}:{port}", "Origin": f"http://{names[0]}:{port}"})[0] == "reply"
        assert _hello(ws, token, {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})[0] == \
            "http 403"
    finally:
        app.stop()
