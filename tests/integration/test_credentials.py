"""The credentials chain, end to end: the plugin signs its requests to S3 with
credentials from IRSA, EKS Pod Identity or the instance profile. STS, the Pod
Identity agent and IMDS cannot run on this machine, so each is a small fake on
loopback (named in the test), checking what a real one checks: the web
identity token, the Authorization token, the IMDSv2 session token. The plugin
gets no node-stage Secret and no AWS_ACCESS_KEY_ID in these tests.

What the plugin then sends is checked twice: a recording proxy sees every S3
request signed with the provider's access key and carrying its session token,
and the real S3 server (versitygw) answers InvalidToken: it received the
token and, having no STS of its own here, cannot accept it. That answer must
reach the user as an error that points at IRSA / Pod Identity."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from conftest import CtlError, Driver
from faultproxy import FaultProxy

NO_KEYS = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}


class Fake:
    """A loopback HTTP server; handler(method, path, headers, body) -> (status, body)."""

    def __init__(self, handler):
        self.calls = []
        fake = self

        class H(BaseHTTPRequestHandler):
            def _do(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode() if n else ""
                fake.calls.append((self.command, self.path, dict(self.headers), body))
                status, out = handler(self.command, self.path, self.headers, body)
                data = out.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _do

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()


@pytest.fixture
def bucket(s3server, model):  # noqa: D103
    s3server.s3.create_bucket(Bucket="models")
    s3server.upload_tree("models", "tiny-llm/", model)
    return "models"


def signed_with(work, env, s3server, token):
    """Creates a volume through a recording proxy; returns the request heads."""
    with FaultProxy(s3server.endpoint, rate=0.0) as rec:
        d = Driver(work)
        d.start(env={**NO_KEYS, **env})
        try:
            with pytest.raises(CtlError) as ei:
                d.ctl("create", "v", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={rec.endpoint}", "-p", "allowPlainHTTP=true")
        finally:
            assert d.stop() == 0
        heads = list(rec.heads)
    assert ei.value.code == "PERMISSION_DENIED" and "InvalidToken" in ei.value.message, ei.value.message
    assert "IRSA / Pod Identity" in ei.value.message
    assert heads and all(f"Credential={s3server.key}/" in h and f"x-amz-security-token: {token}" in h.lower()
                         for h in heads), heads
    return heads


EXPIRY = "2099-01-01T00:00:00Z"


def test_credentials_close_to_expiry_are_fetched_again(work, s3server, bucket):
    """Expiring in 4 minutes (under the 5-minute margin): each request asks again."""
    import datetime
    soon = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def agent(method, path, headers, body):
        return 200, json.dumps({"AccessKeyId": s3server.key, "SecretAccessKey": s3server.secret,
                                "Token": "short-session", "Expiration": soon})

    fake = Fake(agent)
    try:
        heads = signed_with(work, {"AWS_CONTAINER_CREDENTIALS_FULL_URI": fake.url + "/v1/credentials"}, s3server,
                            "short-session")
        assert len(fake.calls) >= len(heads) + 1  # once to check at open, then before every request
    finally:
        fake.close()


def test_irsa_through_a_fake_sts(work, s3server, bucket):
    (work / "token").write_text("eyJhbGciOiJSUzI1NiJ9.the-projected-sa-token\n")

    def sts(method, path, headers, body):
        q = parse_qs(body)
        if (method != "POST" or q.get("Action") != ["AssumeRoleWithWebIdentity"] or
                q.get("WebIdentityToken") != ["eyJhbGciOiJSUzI1NiJ9.the-projected-sa-token"] or
                q.get("RoleArn") != ["arn:aws:iam::111122223333:role/warmcache-node"]):
            return 403, ("<ErrorResponse><Error><Code>AccessDenied</Code><Message>bad request</Message></Error>"
                         "</ErrorResponse>")
        return 200, (f"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>"
                     f"<AccessKeyId>{s3server.key}</AccessKeyId><SecretAccessKey>{s3server.secret}</SecretAccessKey>"
                     f"<SessionToken>irsa-session</SessionToken><Expiration>{EXPIRY}</Expiration></Credentials>"
                     f"</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>")

    fake = Fake(sts)
    try:
        heads = signed_with(work, {"AWS_WEB_IDENTITY_TOKEN_FILE": str(work / "token"),
                                   "AWS_ROLE_ARN": "arn:aws:iam::111122223333:role/warmcache-node",
                                   "AWS_ENDPOINT_URL_STS": fake.url + "/"}, s3server, "irsa-session")
        assert len(fake.calls) == 1 and len(heads) >= 1  # cached until near its expiry
    finally:
        fake.close()


def test_pod_identity_through_a_fake_agent(work, s3server, bucket):
    (work / "eks-pod-identity-token").write_text("pod-identity-jwt")

    def agent(method, path, headers, body):
        if headers.get("Authorization") != "pod-identity-jwt":
            return 401, "{\"Code\": \"Unauthorized\"}"
        return 200, json.dumps({"AccessKeyId": s3server.key, "SecretAccessKey": s3server.secret,
                                "Token": "pod-session", "Expiration": EXPIRY})

    fake = Fake(agent)
    try:
        signed_with(work, {"AWS_CONTAINER_CREDENTIALS_FULL_URI": fake.url + "/v1/credentials",
                           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(work / "eks-pod-identity-token")},
                    s3server, "pod-session")
        assert len(fake.calls) == 1
    finally:
        fake.close()


def test_instance_profile_through_a_fake_imdsv2(work, s3server, bucket):
    def imds(method, path, headers, body):
        if method == "PUT" and path == "/latest/api/token":
            return (200, "imds-session") if headers.get("X-aws-ec2-metadata-token-ttl-seconds") else (400, "")
        if headers.get("X-aws-ec2-metadata-token") != "imds-session":
            return 401, ""  # IMDSv2 only: no token, no answer
        if path == "/latest/meta-data/iam/security-credentials/":
            return 200, "warmcache-node-role"
        if path == "/latest/meta-data/iam/security-credentials/warmcache-node-role":
            return 200, json.dumps({"Code": "Success", "AccessKeyId": s3server.key,
                                    "SecretAccessKey": s3server.secret, "Token": "instance-session",
                                    "Expiration": EXPIRY})
        return 404, ""

    fake = Fake(imds)
    try:
        signed_with(work, {"AWS_EC2_METADATA_DISABLED": None, "AWS_EC2_METADATA_SERVICE_ENDPOINT": fake.url},
                    s3server, "instance-session")
        assert [c[0] for c in fake.calls] == ["PUT", "GET", "GET"]
    finally:
        fake.close()


def test_no_credentials_anywhere_says_what_to_set_up(work, s3server, bucket):
    d = Driver(work)
    d.start(env=NO_KEYS)
    try:
        with pytest.raises(CtlError) as ei:
            d.ctl("create", "v", "-p", "source=s3://models/tiny-llm/", "-p", f"endpoint={s3server.endpoint}", "-p", "allowPlainHTTP=true")
        assert ei.value.code == "PERMISSION_DENIED"
        assert "no AWS credentials" in ei.value.message and "IRSA or EKS Pod Identity" in ei.value.message
    finally:
        assert d.stop() == 0
