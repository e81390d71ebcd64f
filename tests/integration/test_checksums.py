"""Objects that carry a checksum in S3 are verified against it, not only by
size and ETag: a real server (versitygw) stores the checksums given at
upload and returns them with x-amz-checksum-mode. A small object's checksum
comes with its GET; a large one (fetched in ranges, for which S3 sends no
checksum) is asked for with a HEAD. A CRC64NVME is computed on each part as it
arrives and the parts' CRCs are combined; other algorithms read the file back. Then a byte is changed behind the server's
back, on its disk, keeping size and ETag: only the checksum can catch it."""
import base64
import json
import os
import subprocess

import pytest


def crc_table(poly, bits):
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        t.append(c)
    return t


T32C = crc_table(0x82F63B78, 32)
T64NVME = crc_table(0x9A6C9329AC4BC9B5, 64)


def crc(data, table, bits):
    mask = (1 << bits) - 1
    c = mask
    for b in data:
        c = (c >> 8) ^ table[(c ^ b) & 0xFF]
    return base64.b64encode((c ^ mask).to_bytes(bits // 8, "big")).decode()


def fill(s3server, dest, *extra):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=s3server.key, AWS_SECRET_ACCESS_KEY=s3server.secret)
    return subprocess.run([os.path.join(os.environ["WC_BUILD"], "warmcachectl"), "fill", "s3://sums/m/", str(dest),
                           "-p", f"endpoint={s3server.endpoint}", "--json", "--part-size", "1", *extra],
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def sums(s3server, work):
    s3 = s3server.s3
    s3.create_bucket(Bucket="sums")
    small_c = os.urandom(50_000)
    small_n = os.urandom(70_000)
    s3.put_object(Bucket="sums", Key="m/crc32c.bin", Body=small_c, ChecksumCRC32C=crc(small_c, T32C, 32))
    s3.put_object(Bucket="sums", Key="m/crc64nvme.bin", Body=small_n, ChecksumCRC64NVME=crc(small_n, T64NVME, 64))
    s3.put_object(Bucket="sums", Key="m/big-crc32.bin", Body=os.urandom(5 << 20 | 333), ChecksumAlgorithm="CRC32")
    s3.put_object(Bucket="sums", Key="m/big-sha256.bin", Body=os.urandom(3 << 20), ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket="sums", Key="m/plain.txt", Body=b"no checksum here")
    # no checksum sent: the server computes its default, CRC64NVME; fetched in
    # 1 MiB ranges, its CRC comes from the parts' CRCs, combined
    import boto3
    from botocore.config import Config
    bare = boto3.client("s3", endpoint_url=s3server.endpoint, aws_access_key_id=s3server.key,
                        aws_secret_access_key=s3server.secret, region_name="us-east-1",
                        config=Config(request_checksum_calculation="when_required"))
    bare.put_object(Bucket="sums", Key="m/big-crc64.bin", Body=os.urandom(4 << 20 | 777))
    backend = work / "gw" / "sums" / "m"  # the server's own files (posix backend)
    # Like S3 since 2024, the server gives every new object a CRC64NVME; an
    # object from before that has none: take its checksum record away
    os.removexattr(backend / "plain.txt", "user.checksums")
    return backend


def test_objects_with_checksums_are_verified(s3server, sums, work):
    r = fill(s3server, work / "copy")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["files"] == 6 and out["checksummed_files"] == 5  # every object but plain.txt


@pytest.mark.parametrize("key", ["crc32c.bin", "big-crc32.bin", "big-sha256.bin", "big-crc64.bin"])
def test_a_byte_changed_behind_the_server_is_data_loss(s3server, sums, work, key):
    path = sums / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, same ETag (kept by the server): only the checksum differs
    path.write_bytes(bytes(data))
    r = fill(s3server, work / "copy")
    assert r.returncode == 1
    assert key in r.stderr and "does not match its own checksum" in r.stderr, r.stderr
    assert not (work / "copy").exists()
