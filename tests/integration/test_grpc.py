"""The gRPC surface itself, with raw bytes on a generic channel (grpcio from
PyPI as a test tool): bounded messages, malformed requests, unknown methods,
and concurrency: a long fill must not stop Probe from being answered."""
import time

import grpc
import pytest

from conftest import Driver, wait_for, partial_dir_of

PROBE_READY = b"\x0a\x02\x08\x01"  # ProbeResponse{ready: BoolValue{value: true}}


def raw(sock, method, payload, timeout=10):
    with grpc.insecure_channel(f"unix:{sock}", options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        return call(payload, timeout=timeout)


def code_of(sock, method, payload):
    with pytest.raises(grpc.RpcError) as ei:
        raw(sock, method, payload)
    return ei.value.code(), ei.value.details()


def test_probe_and_plugin_info(driver):
    assert raw(driver.sock, "/csi.v1.Identity/Probe", b"") == PROBE_READY
    info = raw(driver.sock, "/csi.v1.Identity/GetPluginInfo", b"")
    assert b"warmcache.csi.dev" in info


def test_malformed_request_is_invalid_argument(driver):
    code, details = code_of(driver.sock, "/csi.v1.Node/NodeStageVolume", b"\xff\xff\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid" in details


def test_oversized_request_is_refused(driver):
    code, _ = code_of(driver.sock, "/csi.v1.Controller/CreateVolume", b"\x0a" + b"\x80\x80\x80\x03" + b"x" * (6 << 20))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert raw(driver.sock, "/csi.v1.Identity/Probe", b"") == PROBE_READY  # and the plugin is fine


def test_unknown_and_unoffered_methods_are_unimplemented(driver):
    assert code_of(driver.sock, "/csi.v1.Node/NodeFly", b"")[0] == grpc.StatusCode.UNIMPLEMENTED
    for m in ("/csi.v1.Controller/ListVolumes", "/csi.v1.Controller/CreateSnapshot",
              "/csi.v1.Controller/ControllerPublishVolume", "/csi.v1.Node/NodeExpandVolume"):
        assert code_of(driver.sock, m, b"")[0] == grpc.StatusCode.UNIMPLEMENTED, m


def test_probe_is_answered_during_a_long_fill(driver, big, work):
    vol = driver.create("big", f"file://{big}")
    fill = driver.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir_of(driver.store) is not None)
    t0 = time.time()
    assert raw(driver.sock, "/csi.v1.Identity/Probe", b"") == PROBE_READY
    assert time.time() - t0 < 0.5
    assert fill.poll() is None, "the fill should still be running"
    assert fill.wait(timeout=120) == 0


def test_calls_beyond_the_bound_are_refused_not_queued(work, big):
    d = Driver(work).start("--max-calls=1")
    vol = d.create("big", f"file://{big}")
    fill = d.ctl_async("stage", "-f", vol, work / "s")
    assert wait_for(lambda: partial_dir_of(d.store) is not None)
    code, details = code_of(d.sock, "/csi.v1.Node/NodeGetCapabilities", b"")
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many calls" in details
    # Identity calls have slots of their own: the liveness probe still passes
    assert raw(d.sock, "/csi.v1.Identity/Probe", b"") == PROBE_READY
    assert fill.wait(timeout=120) == 0
    assert raw(d.sock, "/csi.v1.Node/NodeGetCapabilities", b"")
    assert d.stop() == 0


def test_the_node_plugin_registers_with_kubelet_itself(work):
    """Kubelet's side of plugin registration, played by grpcio on the socket
    kubelet would find in its plugins_registry (the real kubelet does it in
    the cluster tests): GetInfo names the driver and the CSI socket as
    kubelet sees it; the socket goes when the plugin stops."""
    reg = work / "plugins_registry"
    reg.mkdir()
    d = Driver(work).start(f"--kubelet-registration-dir={reg}",
                           "--kubelet-registration-path=/var/lib/kubelet/plugins/warmcache.csi.dev/csi.sock")
    sock = reg / "warmcache.csi.dev-reg.sock"
    info = raw(sock, "/pluginregistration.Registration/GetInfo", b"")
    assert b"CSIPlugin" in info and b"warmcache.csi.dev" in info and b"1.0.0" in info
    assert b"/var/lib/kubelet/plugins/warmcache.csi.dev/csi.sock" in info
    raw(sock, "/pluginregistration.Registration/NotifyRegistrationStatus", b"\x08\x01")
    assert any(l.get("msg") == "registered with kubelet" for l in d.log_lines())
    # the registration socket lies where other node agents look: it answers
    # registration and nothing else; the CSI socket answers no registration
    for m in ("/csi.v1.Node/NodeGetInfo", "/csi.v1.Identity/Probe", "/warmcache.admin.v1.Admin/Evict"):
        code, details = code_of(sock, m, b"")
        assert code == grpc.StatusCode.UNIMPLEMENTED and "not served" in details, m
    assert code_of(d.sock, "/pluginregistration.Registration/GetInfo", b"")[0] == grpc.StatusCode.UNIMPLEMENTED
    assert raw(d.sock, "/csi.v1.Identity/Probe", b"") == PROBE_READY
    assert d.stop() == 0
    assert not sock.exists()


def test_healthz_answers_for_the_liveness_probe(work):
    import socket
    import threading
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = Driver(work).start(f"--metrics-address=127.0.0.1:{port}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    # clients that trickle a byte a second (each read well inside any
    # per-read timeout), more of them than the port serves at once (8), must
    # not keep the probe from its answer
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.7):
            for s in slow:
                try:
                    s.send(b"G")
                except OSError:
                    pass
    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.5)
        t0 = time.time()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        assert time.time() - t0 < 1.0
        # and each is cut when its 2 s are up (or sooner, by a newer one), answered or not
        slow[-1].settimeout(5)
        assert slow[-1].recv(100) == b""
        assert time.time() - t0 < 3.5
    finally:
        stop.set()
        t.join()
        for s in slow:
            s.close()
    assert d.stop() == 0
