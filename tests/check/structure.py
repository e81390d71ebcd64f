#!/usr/bin/env python3
"""The two structure rules of docs/design.md, checked on the tree and the build.

1. Layers: every quoted #include in driver/<module>/ and cmd/<program>/ names
   its own module or one its row of the "Layers" table allows (a generated
   *.pb-c.h counts as the module "proto").
2. Process state: no object of a driver/ or cmd/ object file lies in a
   writable section (.data, .bss, .tdata, .tbss) unless the "Process state"
   table of docs/design.md names it.

Usage: structure.py BUILD_DIR. Exit 1 with one line per violation.
"""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def tables(md):
    """Markdown tables of the text, each a list of rows (lists of cells)."""
    out, cur = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                cur.append(cells)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def design():
    md = (ROOT / "docs/design.md").read_text()
    layers, state = None, None
    for t in tables(md):
        if t[0] == ["module", "holds", "may include"]:
            layers = {r[0]: {m.strip() for m in r[2].split(",") if m.strip()} for r in t[1:]}
        elif t[0] == ["file", "object", "what"]:
            state = {r[0]: {o.strip() for o in r[1].split(",")} for r in t[1:]}
    if layers is None or state is None:
        sys.exit("structure: docs/design.md lost its Layers or Process state table")
    return layers, state


def module_of(path):
    rel = path.relative_to(ROOT)
    return rel.parts[1] if rel.parts[0] == "driver" else "/".join(rel.parts[:2])


def check_includes(layers):
    bad = []
    files = sorted(ROOT.glob("driver/*/*.[ch]")) + sorted(ROOT.glob("cmd/*/*.c"))
    for f in files:
        mod = module_of(f)
        if mod not in layers:
            bad.append(f"{f.relative_to(ROOT)}: module {mod} is not in the Layers table of docs/design.md")
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if not m:
                continue
            inc = m.group(1)
            if inc.endswith(".pb-c.h"):
                dep = "proto"
            elif "/" in inc:
                dep = inc.split("/")[0]
            else:
                continue  # a file beside it
            if dep != mod and dep not in layers[mod]:
                bad.append(f"{f.relative_to(ROOT)}:{n}: {mod} includes {inc}, but may include only "
                           f"{', '.join(sorted(layers[mod])) or 'nothing'} (docs/design.md, Layers)")
    return bad


WRITABLE = re.compile(r"^\.(data|bss|tdata|tbss)(\.|$)")


def source_of(obj, build):
    """driver/base/log.c for .../wc_base.dir/driver/base/log.c.o, s3/x.c for the s3 subdirectory."""
    s = str(obj)
    m = re.search(r"/driver/(\w+)/(\w+)\.c\.o$", s)
    if m:
        return f"{m.group(1)}/{m.group(2)}.c"
    m = re.search(r"driver/s3/CMakeFiles/wc_s3\.dir/(\w+)\.c\.o$", s)
    if m:
        return f"s3/{m.group(1)}.c"
    m = re.search(r"/cmd/(\w[\w-]*)/(\w+)\.c\.o$", s)
    if m:
        return f"cmd/{m.group(1)}/{m.group(2)}.c"
    return None


def check_state(build, state):
    bad = []
    objs = [o for o in build.rglob("*.c.o") if "/tests/" not in str(o) and "bench_" not in str(o)
            and "fuzz_" not in str(o) and "wc_proto" not in str(o)]
    if not objs:
        return [f"no object files under {build}: build first"]
    for o in sorted(objs):
        src = source_of(o, build)
        if not src or not ((ROOT / "driver" / src).exists() or (ROOT / src).exists()):
            continue  # not ours, or left in the build by a file since removed
        out = subprocess.run(["objdump", "-t", str(o)], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            # 0000000000000000 l     O .bss	0000000000000004 curl_once
            m = re.match(r"^[0-9a-f]+ (.{7}) (\S+)\t[0-9a-f]+ +(\S+)$", line)
            if not m or "O" not in m.group(1) or not WRITABLE.match(m.group(2)) or ".rel.ro" in m.group(2):
                continue  # .data.rel.ro: const, written only by the loader
            name = re.sub(r"\.\d+$", "", m.group(3))  # a function's static: name.N
            if name not in state.get(src, set()):
                bad.append(f"{src}: '{name}' is mutable process state ({m.group(2)}); put it in a context, make "
                           f"it const, or add it to the Process state table of docs/design.md with why")
    return bad


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    layers, state = design()
    bad = check_includes(layers) + check_state(pathlib.Path(sys.argv[1]).resolve(), state)
    for b in bad:
        print("structure:", b)
    if bad:
        sys.exit(1)
    print("structure: layers and process state as docs/design.md says")


if __name__ == "__main__":
    main()
