"""S3 Express One Zone directory buckets, against a fake zonal endpoint on
loopback: no S3-compatible server here implements CreateSession, so the fake
does what S3 Express does and checks what it checks. It verifies every
request's SigV4 signature (recomputed with botocore, service "s3express"):
CreateSession signed with the caller's own keys and asking for a ReadOnly
session; every other request signed with the session's keys and carrying its
token in x-amz-s3session-token; virtual-hosted addressing. Sessions here
are shorter than the plugin's one-minute renewal margin (S3's last five
minutes), so it must create new ones while the fill runs on four connections."""
import hashlib
import json
import os
import subprocess
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import sha256_tree

BUCKET = "models--use1-az4--x-s3"
KEY, SECRET = "AKIDEXPRESSTEST", "express-base-secret"


class FakeExpress:
    def __init__(self, objects, session_seconds=300, bucket=BUCKET):
        self.objects = objects  # key -> bytes
        self.bucket = bucket
        self.session_seconds = session_seconds
        self.sessions = {}      # token -> (akid, secret, expiry)
        self.created = 0
        self.bad = []
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self):
                fake.handle(self)

            do_HEAD = do_GET

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.endpoint = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()

    def signature_ok(self, h, akid, secret):
        auth = h.headers.get("Authorization", "")
        try:
            cred = auth.split("Credential=")[1].split(",")[0]
            signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
            sig = auth.split("Signature=")[1]
        except IndexError:
            return False
        akid_got, date, region, service, _ = cred.split("/")
        if akid_got != akid or service != "s3express":
            return False
        host = h.headers["Host"]
        req = AWSRequest(method=h.command, url=f"http://{host}{h.path}",
                         headers={k: h.headers[k] for k in signed})
        req.context["timestamp"] = h.headers["x-amz-date"]
        signer = S3SigV4Auth(Credentials(akid, secret), "s3express", region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        return want == sig

    def handle(self, h):
        u = urlsplit(h.path)
        q = parse_qs(u.query, keep_blank_values=True)
        if not h.headers.get("Host", "").startswith(self.bucket + "."):
            self.bad.append("not virtual-hosted: " + h.headers.get("Host", ""))
            return h.reply(400)
        if "session" in q:
            if not self.signature_ok(h, KEY, SECRET) or h.headers.get("x-amz-create-session-mode") != "ReadOnly":
                self.bad.append("CreateSession: " + h.headers.get("Authorization", ""))
                return h.reply(403, b"<Error><Code>AccessDenied</Code><Message>bad CreateSession</Message></Error>")
            self.created += 1
            token = f"session-token-{self.created}"
            exp = datetime.now(timezone.utc) + timedelta(seconds=self.session_seconds)
            self.sessions[token] = (f"ASIAEXPRESS{self.created}", f"session-secret-{self.created}", exp)
            body = (f"<CreateSessionResult><Credentials><SessionToken>{token}</SessionToken>"
                    f"<SecretAccessKey>session-secret-{self.created}</SecretAccessKey>"
                    f"<AccessKeyId>ASIAEXPRESS{self.created}</AccessKeyId>"
                    f"<Expiration>{exp.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration></Credentials>"
                    f"</CreateSessionResult>").encode()
            return h.reply(200, body)
        token = h.headers.get("x-amz-s3session-token")
        s = self.sessions.get(token)
        if not s or s[2] < datetime.now(timezone.utc) or "x-amz-security-token" in h.headers or \
                not self.signature_ok(h, s[0], s[1]):
            self.bad.append(f"request {h.path}: token {token}")
            return h.reply(403, b"<Error><Code>AccessDenied</Code><Message>bad session</Message></Error>")
        if q.get("list-type") == ["2"]:
            prefix = q.get("prefix", [""])[0]
            items = "".join(f"<Contents><Key>{escape(k)}</Key><Size>{len(v)}</Size>"
                            f"<ETag>\"{hashlib.md5(v).hexdigest()}\"</ETag></Contents>"
                            for k, v in sorted(self.objects.items()) if k.startswith(prefix))
            return h.reply(200, f"<ListBucketResult><IsTruncated>false</IsTruncated>{items}"
                                f"</ListBucketResult>".encode())
        key = unquote(u.path.lstrip("/"))
        data = self.objects.get(key)
        if data is None:
            return h.reply(404, b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>")
        if h.headers.get("If-Match") and h.headers["If-Match"] != f"\"{hashlib.md5(data).hexdigest()}\"":
            return h.reply(412, b"<Error><Code>PreconditionFailed</Code><Message>etag</Message></Error>")
        rng = h.headers.get("Range")
        if rng:
            a, b = rng.split("=")[1].split("-")
            part = data[int(a):int(b) + 1]
            return h.reply(206, part, [("Content-Range", f"bytes {a}-{b}/{len(data)}")])
        return h.reply(200, data)


def load(model):
    objs = {}
    for p in sorted(model.rglob("*")):
        if p.is_file():
            objs["llm/" + str(p.relative_to(model))] = p.read_bytes()
    objs["llm/shards/big.bin"] = os.urandom(6 << 20 | 99)
    return objs


def test_directory_bucket_fill_with_sessions(work, model):
    # sessions of 30 s: under the plugin's 60 s margin from the start, so it
    # creates a new one for every request, from several threads at once
    fake = FakeExpress(load(model), session_seconds=30)
    try:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="us-east-1")
        ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
        r = subprocess.run([ctl, "fill", f"s3://{BUCKET}/llm/", str(work / "copy"), "-p", f"endpoint={fake.endpoint}",
                            "--part-size", "1", "--connections", "4", "--json"], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr + "\n".join(fake.bad)
        assert fake.bad == []
        assert fake.created >= 10  # renewed, never used past its margin
        got = sha256_tree(work / "copy")
        assert got["shards/big.bin"] == hashlib.sha256(fake.objects["llm/shards/big.bin"]).hexdigest()
        assert {k: v for k, v in got.items() if k != "shards/big.bin"} == sha256_tree(model)
        assert json.loads(r.stdout)["files"] == len(fake.objects)
    finally:
        fake.close()


def test_directory_bucket_names_are_checked(work):
    ctl = os.path.join(os.environ["WC_BUILD"], "warmcachectl")
    r = subprocess.run([ctl, "fill", "s3://models--x-s3/llm/", str(work / "c")], capture_output=True, text=True,
                       env=dict(os.environ, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET))
    assert r.returncode == 1 and "<base>--<zone id>--x-s3" in r.stderr, r.stderr
