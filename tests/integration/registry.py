"""OCI registries for the oci:// tests, on loopback over TLS (a CA of the
test's own, given to every client as SSL_CERT_FILE):

- Registry: the real distribution registry (Debian's docker-registry),
  anonymous or with an htpasswd user;
- FakeRegistry: a registry of our own in Python that serves what a test
  hands it, right or wrong (blobs that do not match their digests, endless
  manifests, redirects of blob GETs to a second host, a Bearer token
  challenge), and records what every request carried. Named a fake: it is
  one, for what a real registry will not do.

push() writes an artifact with the distribution API (monolithic uploads),
as a ModelPack or oras-style manifest; oras itself pushes in the tests that
use it."""
import hashlib
import http.server
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from conftest import CTL, make_ca

ROOT = Path(__file__).resolve().parents[2]
ORAS = os.environ.get("ORAS", str(ROOT / ".tools" / "bin" / "oras"))
EMPTY_CONFIG = b"{}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def fill(env, url, dest, *extra, check=True, timeout=120):
    """`warmcachectl fill URL DEST --json` in 4 MiB parts."""
    return subprocess.run([str(CTL), "fill", url, str(dest), "--json", "--part-size", "4", *extra], env=env,
                          capture_output=True, text=True, check=check, timeout=timeout)


def tls_server(handler, cert, key, addr="127.0.0.1"):
    """handler's HTTPS server on addr (a free port), serving in a thread of its own."""
    srv = http.server.ThreadingHTTPServer((addr, 0), handler)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    # the handshake in each connection's own thread, not the one that accepts
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def _b64url(b):
    import base64
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class TokenServer:
    """The distribution spec's token server, our own (Debian packages the
    registry but no token issuer): it takes Basic user:password at /token,
    records what each request carried (self.seen), and hands out a JWT the
    registry verifies itself (RS256, signed with openssl by a key whose
    self-signed certificate is the registry's rootcertbundle) granting the
    actions the scope asks for. Anonymous requests are refused (401)."""

    def __init__(self, root, tls, user, service="warmcache-registry", issuer="warmcache-test-issuer"):
        root = Path(root) / "token"
        root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = root / "sign.key", root / "sign.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=warmcache token signer", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        import base64
        self.x5c = base64.b64encode(der).decode()
        self.service, self.issuer, self.user, self.seen = service, issuer, user, []
        want = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        srv = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlparse
                q = parse_qs(urlparse(self.path).query)
                srv.seen.append((self.path, dict(self.headers)))
                if self.headers.get("Authorization") != want:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                access = []
                for sc in q.get("scope", []):
                    typ, name, actions = sc.split(":")
                    access.append({"type": typ, "name": name, "actions": actions.split(",")})
                body = json.dumps({"token": srv.sign(access), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = tls_server(H, tls[1], tls[2])
        self.realm = f"https://127.0.0.1:{self.srv.server_address[1]}/token"

    def sign(self, access):
        now = int(time.time())
        head = _b64url(json.dumps({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}).encode())
        claims = _b64url(json.dumps({"iss": self.issuer, "sub": self.user[0], "aud": self.service, "exp": now + 300,
                                     "nbf": now - 10, "iat": now, "jti": os.urandom(8).hex(),
                                     "access": access}).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)], input=f"{head}.{claims}".encode(),
                             check=True, capture_output=True).stdout
        return f"{head}.{claims}.{_b64url(sig)}"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class Registry:
    """docker-registry serving https on 127.0.0.1; user=(name, password) puts it
    behind htpasswd, or with token=True behind the token flow (TokenServer)."""

    def __init__(self, root, user=None, token=False):
        root = Path(root)
        self.ca, cert, key = make_ca(root / "reg-tls")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        auth = ""
        self.tokens = None
        if token:
            self.tokens = TokenServer(root, (self.ca, cert, key), user)
            auth = (f"auth:\n  token:\n    realm: {self.tokens.realm}\n    service: {self.tokens.service}\n"
                    f"    issuer: {self.tokens.issuer}\n    rootcertbundle: {self.tokens.cert}\n")
        elif user:
            line = subprocess.run(["htpasswd", "-Bbn", user[0], user[1]], check=True, capture_output=True).stdout
            (root / "htpasswd").write_bytes(line.strip() + b"\n")
            auth = f"auth:\n  htpasswd:\n    realm: warmcache-test\n    path: {root / 'htpasswd'}\n"
        (root / "reg").mkdir()
        cfg = root / "registry.yml"
        cfg.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {root / 'reg'}\n"
                       f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{self.port}\n  tls:\n"
                       f"    certificate: {cert}\n    key: {key}\n{auth}")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        ctx = ssl.create_default_context(cafile=str(self.ca))
        for _ in range(200):
            try:
                urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401: listening, behind auth
            except Exception:  # noqa: BLE001  (not listening yet)
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start")

    def env(self):
        return dict(os.environ, SSL_CERT_FILE=str(self.ca))

    def oras(self, *args, user=None, cwd=None):
        login = ["--username", user[0], "--password", user[1]] if user else []
        return subprocess.run([ORAS, *args, *login], env=self.env(), cwd=cwd, check=True, capture_output=True,
                              text=True, timeout=120)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        if self.tokens:
            self.tokens.stop()


def _request(method, url, body=None, headers=None, ctx=None, auth=None):
    rq = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if auth:
        import base64
        rq.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(rq, context=ctx, timeout=60) as r:
        return r.status, dict(r.headers), r.read()


def push_blob(host, repo, data, ctx, auth=None):
    _, h, _ = _request("POST", f"https://{host}/v2/{repo}/blobs/uploads/", b"", ctx=ctx, auth=auth)
    loc = h["Location"]
    if loc.startswith("/"):
        loc = f"https://{host}{loc}"
    sep = "&" if "?" in loc else "?"
    _request("PUT", f"{loc}{sep}digest={digest(data)}", data, {"Content-Type": "application/octet-stream"},
             ctx=ctx, auth=auth)
    return digest(data)


def artifact_manifest(files, modelpack):
    """The manifest JSON (bytes) of files {path: bytes}: ModelPack raw layers
    (org.cncf.model.filepath) or oras-style titled layers."""
    layers = []
    for path, data in files.items():
        if modelpack:
            mt = ("application/vnd.cncf.model.weight.v1.raw" if path.endswith(".safetensors")
                  else "application/vnd.cncf.model.weight.config.v1.raw")
            ann = {"org.cncf.model.filepath": path, "org.opencontainers.image.title": os.path.basename(path)}
        else:
            mt, ann = "application/vnd.oci.image.layer.v1.tar", {"org.opencontainers.image.title": path}
        layers.append({"mediaType": mt, "digest": digest(data), "size": len(data), "annotations": ann})
    config = {"mediaType": "application/vnd.cncf.model.config.v1+json" if modelpack
              else "application/vnd.oci.empty.v1+json", "digest": digest(EMPTY_CONFIG), "size": len(EMPTY_CONFIG)}
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "artifactType": "application/vnd.cncf.model.manifest.v1+json" if modelpack else "application/vnd.unknown.artifact.v1",
         "config": config, "layers": layers}
    return json.dumps(m).encode()


def push(reg, repo, tags, files, modelpack=True, auth=None):
    """files {path: bytes} as one artifact under every tag; its manifest digest."""
    ctx = ssl.create_default_context(cafile=str(reg.ca))
    for data in [EMPTY_CONFIG, *files.values()]:
        push_blob(reg.host, repo, data, ctx, auth)
    body = artifact_manifest(files, modelpack)
    for t in tags:
        _request("PUT", f"https://{reg.host}/v2/{repo}/manifests/{t}", body,
                 {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, ctx=ctx, auth=auth)
    return digest(body)


IMAGE_LAYER = "application/vnd.oci.image.layer.v1.tar"


def image_manifest(layers, config=b'{"architecture": "amd64", "os": "linux"}'):
    """The manifest JSON (bytes) of layers [(bytes, mediaType, annotations or None)]."""
    ls = [{"mediaType": mt, "digest": digest(b), "size": len(b), **({"annotations": a} if a else {})}
          for b, mt, a in layers]
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                                  "size": len(config)}, "layers": ls}).encode(), config


def push_image(reg, repo, tag, layers):
    """An image (or any manifest of layers [(bytes, mediaType, annotations)]) under tag; its digest."""
    ctx = ssl.create_default_context(cafile=str(reg.ca))
    body, config = image_manifest(layers)
    for data in [config, *(b for b, _, _ in layers)]:
        push_blob(reg.host, repo, data, ctx)
    _request("PUT", f"https://{reg.host}/v2/{repo}/manifests/{tag}", body,
             {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, ctx=ctx)
    return digest(body)


class FakeRegistry:
    """A registry of our own over TLS on 127.0.0.1 (a fake, for what real
    registries do not do). manifests {reference: bytes}, blobs {digest: bytes}.
    bearer: answer 401 with a Bearer challenge whose realm is this server's
    /token, and take only the token it hands out. redirect_to: another
    FakeRegistry that blob GETs are sent to (307), as ECR sends them to S3.
    endless: a manifest reference whose body never ends. Every request's
    path and headers land in self.seen."""

    def __init__(self, root, name="fake", ca=None, addr="127.0.0.1"):
        root = Path(root)
        self.ca, cert, key = ca if ca else make_ca(root / f"{name}-tls")
        self.cert, self.key = cert, key
        self.manifests, self.blobs, self.seen = {}, {}, []
        self.bearer, self.redirect_to, self.endless = False, None, set()
        self.basic = None          # "Basic …": the Authorization the registry wants, with a Basic challenge
        self.redirect_scheme = "https"
        self.ignore_range = False  # answer ranged GETs with the whole blob (200), as a cache that ignores Range
        self.error_forever = False  # answer manifests 500 with a body that never ends
        self.token = "tok-" + os.urandom(8).hex()
        self.user = None
        self.realm = None          # with bearer: the realm the challenge names (default: this server's /token)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                fake.seen.append((self.path, dict(self.headers)))
                path = self.path.split("?")[0]
                if path == "/token":
                    if fake.user and self.headers.get("Authorization") != fake.user:
                        return self.send(401)
                    return self.send(200, json.dumps({"token": fake.token}).encode())
                if fake.basic and not path.startswith("/storage/") and self.headers.get("Authorization") != fake.basic:
                    return self.send(401, b"", [("WWW-Authenticate", 'Basic realm="fake"')])
                if fake.bearer and self.headers.get("Authorization") != f"Bearer {fake.token}":
                    realm = fake.realm or f"https://127.0.0.1:{fake.port}/token"
                    return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [(
                        "WWW-Authenticate", f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"')])
                parts = path.split("/")
                if "/manifests/" in path and fake.error_forever:
                    self.send_response(500)
                    self.end_headers()  # no length: the body ends with the connection, which it never does
                    try:
                        while True:
                            self.wfile.write(b"E" * 4096)
                            time.sleep(0.01)
                    except OSError:
                        return
                if "/manifests/" in path:
                    ref = parts[-1]
                    if ref in fake.endless:
                        self.send_response(200)
                        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                        self.end_headers()
                        try:
                            while True:
                                self.wfile.write(b'{"layers":[' * 4096)
                        except OSError:
                            return
                    body = fake.manifests.get(ref)
                    if body is None:
                        return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                    return self.send(200, body, [("Content-Type", "application/vnd.oci.image.manifest.v1+json")])
                if "/blobs/" in path:
                    d = parts[-1]
                    if fake.redirect_to is not None:
                        return self.send(307, b"", [("Location", f"{fake.redirect_scheme}://127.0.0.1:"
                                                                 f"{fake.redirect_to.port}/storage/{d}?X-Amz-Signature=abc")])
                    body = fake.blobs.get(d)
                    if body is None:
                        return self.send(404)
                    return self.blob(body)
                if path.startswith("/storage/"):
                    body = fake.blobs.get(parts[-1])
                    return self.send(404) if body is None else self.blob(body)
                return self.send(404)

            def blob(self, body):
                rng = self.headers.get("Range")
                if rng and not fake.ignore_range:
                    a, b = rng.split("=")[1].split("-")
                    a, b = int(a), min(int(b), len(body) - 1)
                    return self.send(206, body[a:b + 1], [("Content-Range", f"bytes {a}-{b}/{len(body)}")])
                return self.send(200, body)

        self.srv = tls_server(Handler, cert, key, addr)
        self.port = self.srv.server_address[1]
        self.host = f"{addr}:{self.port}"

    def serve(self, ref, files, modelpack=False, blobs=None):
        """files as one artifact at reference ref (a tag); blobs overrides
        what a digest serves. Its manifest digest."""
        body = artifact_manifest(files, modelpack)
        for data in files.values():
            self.blobs[digest(data)] = data
        self.blobs.update(blobs or {})
        self.manifests[ref] = body
        self.manifests[digest(body)] = body
        return digest(body)

    def serve_image(self, ref, layers):
        """layers [(bytes, mediaType, annotations)] as one manifest at ref; its digest."""
        body, config = image_manifest(layers)
        for data in [config, *(b for b, _, _ in layers)]:
            self.blobs[digest(data)] = data
        self.manifests[ref] = body
        self.manifests[digest(body)] = body
        return digest(body)

    def env(self):
        return dict(os.environ, SSL_CERT_FILE=str(self.ca))

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class FakeEcrApi:
    """ECR's GetAuthorizationToken on 127.0.0.1 over TLS (a fake: ECR's API
    is not something to run here). It checks what ECR checks: the target,
    and the SigV4 signature (recomputed with botocore, service "ecr") with
    the keys it knows; it answers with a token "AWS:<password>" or, with
    deny set, AccessDeniedException."""

    def __init__(self, tls, key, secret, password):
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        self.calls, self.bad, self.deny, self.password = 0, [], False, password
        api = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, code, body):
                self.send_response(code)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                try:
                    cred = auth.split("Credential=")[1].split(",")[0]
                    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
                    sig = auth.split("Signature=")[1]
                    akid, _, region, service, _ = cred.split("/")
                except (IndexError, ValueError):
                    api.bad.append("unsigned")
                    return self.reply(403, b'{"__type":"MissingAuthenticationTokenException"}')
                rq = AWSRequest(method="POST", url=f"https://{self.headers['Host']}{self.path}", data=body,
                                headers={k: self.headers[k] for k in signed})
                rq.context["timestamp"] = self.headers["x-amz-date"]
                signer = SigV4Auth(Credentials(key, secret), "ecr", region)
                want = signer.signature(signer.string_to_sign(rq, signer.canonical_request(rq)), rq)
                if akid != key or service != "ecr" or want != sig or self.headers.get("X-Amz-Target") != \
                        "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken":
                    api.bad.append(f"{akid} {service} {self.headers.get('X-Amz-Target')}")
                    return self.reply(403, b'{"__type":"InvalidSignatureException","message":"bad signature"}')
                if region != "us-east-1" or self.headers.get("Host") != self.server_name:
                    api.bad.append(f"region {region}, host {self.headers.get('Host')}")
                api.calls += 1
                if api.deny:
                    return self.reply(400, b'{"__type":"AccessDeniedException","message":"User: arn:aws:sts::1:'
                                           b'assumed-role/node is not authorized to perform: ecr:GetAuthorizationToken"}')
                import base64
                tok = base64.b64encode(f"AWS:{api.password}".encode()).decode()
                self.reply(200, json.dumps({"authorizationData": [{"authorizationToken": tok,
                                                                   "expiresAt": time.time() + 43200}]}).encode())

        self.srv = tls_server(H, tls[1], tls[2])
        self.endpoint = f"https://127.0.0.1:{self.srv.server_address[1]}"
        H.server_name = f"127.0.0.1:{self.srv.server_address[1]}"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
