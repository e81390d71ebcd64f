#!/usr/bin/env python3
"""Where a fill over HTTPS spends its system calls (issue #19): one 1 GiB
object on the tests' S3 server over TLS (a CA of its own), filled by each
given build's warmcachectl with 64 connections, alternated: wall, user and
system seconds (/usr/bin/time), then the counts of pwrite64 and recvfrom
(strace -c -f; scripts/setup.sh bench installs it). Usage: bench/tls_syscalls.py BUILD_DIR [BUILD_DIR...]"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from conftest import S3Server  # noqa: E402

work = Path("/tmp/wc-tls-syscalls")
shutil.rmtree(work, ignore_errors=True)
work.mkdir(parents=True)
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g", "tmpfs", str(work)], check=True)
try:
    srv = S3Server(work, tls=True)
    srv.s3.create_bucket(Bucket="bench")
    with open(work / "obj", "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(1 << 20))
    srv.s3.upload_file(str(work / "obj"), "bench", "L/part-0.bin")
    os.unlink(work / "obj")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=srv.key, AWS_SECRET_ACCESS_KEY=srv.secret, AWS_CA_BUNDLE=str(srv.ca))
    for rnd in range(2):
        for build in sys.argv[1:]:
            dest = work / "out"
            fill = [f"{build}/warmcachectl", "fill", "s3://bench/L/", str(dest), "-p", f"endpoint={srv.endpoint}",
                    "--json", "--connections", "64"]
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["/usr/bin/time", "-f", "%e %U %S", "-o", str(work / "t")] + fill, env=env, check=True,
                           capture_output=True)
            print(f"{build}: wall user sys {(work / 't').read_text().strip()}")
            if rnd == 0:
                shutil.rmtree(dest, ignore_errors=True)
                subprocess.run(["strace", "-f", "-c", "-o", str(work / "s"), "-e", "trace=pwrite64,recvfrom"] + fill,
                               env=env, check=True, capture_output=True)
                calls = {l.split()[-1]: l.split()[3] for l in (work / "s").read_text().splitlines()
                         if l.split() and l.split()[-1] in ("pwrite64", "recvfrom")}
                print(f"{build}: calls {calls}")
    srv.stop()
finally:
    subprocess.run(["umount", "-l", str(work)])
