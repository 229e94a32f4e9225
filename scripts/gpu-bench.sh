#!/usr/bin/env bash
# The CUDA path on the lent GPU machine (issue 21): everything the device run needs is prepared
# here, carried over a few `run` calls of the device tool, and measured there. docs/gpu-bench.md
# is the plan, call by call.
#
#   here:   scripts/gpu-bench.sh prepare          # = prepare-build + prepare-libs + prepare-pack + sizes
#           scripts/gpu-bench.sh sizes            # what each call carries (must stay under 64 MiB)
#           scripts/gpu-bench.sh report FILE.tgz  # the summary of a fetched results.tgz
#   there:  bash scripts/gpu-bench.sh device main-1   # probe, receive main-1, run what it can
#           bash scripts/gpu-bench.sh device main-2   # receive main-2, run the rest
#           (also: probe | receive [CALL] | run [STEP...] | summary | reset)
#
# What travels (all under the ignored .kbatch/gpu/send/<call>/, one `carry` path per call):
#   core    kbatch (release, --features cuda, stripped), libonnxruntime.so.1.31.1 and
#           libonnxruntime_providers_shared.so from PyPI's onnxruntime-gpu 1.31.1 (the CUDA 13
#           build; its libonnxruntime differs from the CPU one in vendor/), and libssl/libcrypto/libz
#           as a fallback should the device lack them.
#   cuda90  libonnxruntime_providers_cuda.so (284 MB) with every non-sm_90 cubin zeroed in place
#           (the H200 is sm_90 and SASS of another major version never runs on it; headers,
#           offsets and size are kept): ~48 MiB compressed instead of ~177 MiB. UNVERIFIED trick:
#           `check-cuda` says at once if it fails.
#   pyort   the wheel's Python package (no libraries) for an independent check of the EP through
#           onnxruntime's Python API: TF32 error, the EP's effective options, per-shape search cost.
#   bench   core/benches/pipeline.rs prebuilt (`cargo bench --no-run --features cuda`), stripped.
#   delta   (fallback, calls delta-1..3) the zeroed cubins: with cuda90 it restores the exact wheel
#           library (sha256 checked), should the pruned one fail.
#   kafka   (optional, KAFKA=1) .kbatch/kafka for a real broker there, if the device has Java 17+.
# Pieces persist on the device in .kbatch/gpu-dev/ (ignored, never carried, so the tool keeps it
# between calls while the machine is warm: 30 s after each call).
#
# Invariants: every piece, payload and unpacked library is checked against the manifest's sha256
# before use; a device step never aborts the others (each has its own `timeout`, and the call's
# budget GPU_BUDGET_S skips steps that would not fit); results accumulate in
# .kbatch/gpu-dev/results and every call leaves $OUT/{summary.md,results.tgz,device.log}.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "${REPO_ROOT}"

STAGE=.kbatch/gpu                 # here: build outputs, wheel, payloads, send/<call>/
SEND="${STAGE}/send"
DEV=.kbatch/gpu-dev               # there: pieces/, root/, state/, results/
ROOT="${DEV}/root"
STATE="${DEV}/state"
RES="${DEV}/results"

ORT_GPU_VERSION="${ORT_GPU_VERSION:-1.31.1}"
GPU_PY_VERSION="${GPU_PY_VERSION:-3.12}"           # the device's python3 (3.12.3 per KINDS.md)
GPU_KEEP_SM="${GPU_KEEP_SM:-90}"                    # H200 = sm_90; empty: ship the library whole
CALL_LIMIT=$((64 * 1024 * 1024))
CALL_MARGIN="${CALL_MARGIN:-$((4 * 1024 * 1024))}"
BATCHES="${BATCHES:-1,2,4,8,16,32,64,128,256,512,1024}"
SECONDS_PER_SIZE="${SECONDS_PER_SIZE:-2}"
CPU_THREADS="${CPU_THREADS:-2 16}"                 # 2 = config default (this machine's figures)
CUDA_THREADS="${CUDA_THREADS:-2}"
SERVE_SPECS="${SERVE_SPECS:-4000:32 20000:512}"     # rate:max_batch_size, one demo each
SERVE_SECS="${SERVE_SECS:-20}"
SMI_MS="${SMI_MS:-200}"
GPU_BUDGET_S="${GPU_BUDGET_S:-480}"
SPS="$(awk -v s="${SECONDS_PER_SIZE}" 'BEGIN { print int(s + 0.999) }')"   # whole seconds, for budgets
STEPS_DEFAULT="check-cpu check-cuda sweep-cuda ttfi pycheck serve pipeline sweep-cpu sweep-cuda-default serve-kafka"

die() { echo "gpu-bench: error: $*" >&2; exit 1; }
log() { echo "gpu-bench: $*" >&2; }
now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------------
# The Python helper (python3 here and there: pack, receive, prune, restore, summaries).
# ---------------------------------------------------------------------------------------------
HELPER=""
init_helper() { # written once per run, before any subshell could write its own
    HELPER="$(mktemp "${TMPDIR:-/tmp}/gpu-bench-helper.XXXXXX")"
    write_helper >"${HELPER}"
    trap 'rm -f "${HELPER}"' EXIT
}
helper() { python3 "${HELPER}" "$@"; }

write_helper() {
    cat <<'PY'
import hashlib, json, lzma, os, re, shutil, struct, sys, tarfile, time

MIB = 1024 * 1024

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 * MIB), b""):
            h.update(chunk)
    return h.hexdigest()

# ----- fatbin walk (.nv_fatbin of an ELF shared object) -----
FATBIN_MAGIC = 0xBA55ED50

def nv_fatbin_section(buf):
    if buf[:4] != b"\x7fELF" or buf[4] != 2:
        raise SystemExit("not a 64-bit ELF file")
    shoff, = struct.unpack_from("<Q", buf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", buf, 0x3A)
    sh = lambda i: struct.unpack_from("<IIQQQQIIQQ", buf, shoff + i * shentsize)
    stroff = sh(shstrndx)[4]
    for i in range(shnum):
        s = sh(i)
        end = buf.index(b"\0", stroff + s[0])
        if bytes(buf[stroff + s[0]:end]) == b".nv_fatbin":
            return s[4], s[5]
    raise SystemExit("no .nv_fatbin section")

def fatbin_entries(buf):
    """Yields (payload offset, payload size, kind, sm) of every entry; kind 1 = PTX, 2 = ELF."""
    off, size = nv_fatbin_section(buf)
    p, end = off, off + size
    while p < end:
        magic, _ver, hsize, fsize = struct.unpack_from("<IHHQ", buf, p)
        if magic != FATBIN_MAGIC:
            p += 8
            continue
        q, e = p + hsize, p + hsize + fsize
        while q < e:
            kind, _v, ehs, psize = struct.unpack_from("<HHIQ", buf, q)
            sm, = struct.unpack_from("<I", buf, q + 28)
            yield q + ehs, psize, kind, sm
            q += ehs + psize
        if q != e:
            raise SystemExit(f"fatbin at {p:#x}: entries overrun its size")
        p = e

def dropped(kind, sm, keep):
    return kind == 2 and sm != keep

def cmd_prune(src, pruned, delta, keep):
    keep = int(keep)
    buf = bytearray(open(src, "rb").read())
    kept = zeroed = 0
    archs = {}
    with open(delta, "wb") as d:
        for off, size, kind, sm in fatbin_entries(buf):
            archs[sm] = archs.get(sm, 0) + size
            if dropped(kind, sm, keep):
                d.write(buf[off:off + size])
                buf[off:off + size] = bytes(size)
                zeroed += size
            else:
                kept += size
    if kept == 0:
        raise SystemExit(f"no sm_{keep} code in {src}: refusing to prune")
    open(pruned, "wb").write(buf)
    print(f"cubins by sm (MiB): " + ", ".join(f"sm_{k} {v / MIB:.1f}" for k, v in sorted(archs.items())))
    print(f"kept {kept / MIB:.1f} MiB, zeroed {zeroed / MIB:.1f} MiB (saved to {delta})")

def cmd_restore(pruned, delta, out, keep, want_sha):
    keep = int(keep)
    buf = bytearray(open(pruned, "rb").read())
    with open(delta, "rb") as d:
        for off, size, kind, sm in fatbin_entries(buf):
            if dropped(kind, sm, keep):
                chunk = d.read(size)
                if len(chunk) != size:
                    raise SystemExit("delta too short")
                buf[off:off + size] = chunk
        if d.read(1):
            raise SystemExit("delta too long")
    got = hashlib.sha256(buf).hexdigest()
    if want_sha and got != want_sha:
        raise SystemExit(f"restored library sha256 {got} != {want_sha}")
    tmp = out + ".partial"
    open(tmp, "wb").write(buf)
    os.chmod(tmp, 0o755)
    os.replace(tmp, out)
    print(f"restored {out} (sha256 {got})")

# ----- pack: payloads -> pieces per call (here) -----
def cmd_pack(send, budget, build_id, *specs):
    """specs: name|group|kind|dest|file|out_sha  and meta entries  meta|key|value"""
    budget = int(budget)
    if os.path.isdir(send):
        shutil.rmtree(send)
    os.makedirs(send)
    meta, payloads = [], []
    for s in specs:
        f = s.split("|")
        if f[0] == "meta":
            meta.append((f[1], f[2]))
        else:
            payloads.append(f)
    lines = [f"id\t{build_id}"] + [f"meta\t{k}\t{v}" for k, v in meta]
    calls = {}
    groups = []
    for p in payloads:
        if p[1] not in groups:
            groups.append(p[1])
    for group in groups:
        n, used = 1, 0
        for name, g, kind, dest, path, out_sha in payloads:
            if g != group:
                continue
            size = os.path.getsize(path)
            lines.append(f"payload\t{name}\t{group}\t{kind}\t{dest}\t{size}\t{sha256_file(path)}\t{out_sha or '-'}")
            with open(path, "rb") as src:
                off = idx = 0
                while off < size:
                    if budget - used < MIB and used > 0:
                        n, used = n + 1, 0
                    take = min(budget - used, size - off)
                    call = f"{group}-{n}"
                    d = os.path.join(send, call)
                    os.makedirs(d, exist_ok=True)
                    fname = f"{name}.{idx:02d}"
                    data = src.read(take)
                    with open(os.path.join(d, fname), "wb") as out:
                        out.write(data)
                    lines.append(f"piece\t{name}\t{idx}\t{call}\t{fname}\t{take}\t{hashlib.sha256(data).hexdigest()}")
                    calls[call] = calls.get(call, 0) + take
                    off += take
                    used += take
                    idx += 1
        # the next group starts a new call
    for call, size in calls.items():
        lines.append(f"call\t{call}\t{size}")
    text = "\n".join(lines) + "\n"
    open(os.path.join(send, "manifest.tsv"), "w").write(text)
    for call in calls:
        open(os.path.join(send, call, "manifest.tsv"), "w").write(text)
    for call, size in calls.items():
        print(f"{call}\t{size / MIB:.1f} MiB")

def read_manifest(path):
    m = {"id": None, "meta": {}, "payloads": {}, "pieces": [], "calls": {}}
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "id":
            m["id"] = f[1]
        elif f[0] == "meta":
            m["meta"][f[1]] = f[2]
        elif f[0] == "payload":
            m["payloads"][f[1]] = dict(name=f[1], group=f[2], kind=f[3], dest=f[4], size=int(f[5]), sha=f[6], out_sha=None if f[7] == "-" else f[7])
        elif f[0] == "piece":
            m["pieces"].append(dict(payload=f[1], idx=int(f[2]), call=f[3], file=f[4], size=int(f[5]), sha=f[6]))
        elif f[0] == "call":
            m["calls"][f[1]] = int(f[2])
    return m

# ----- receive (there) -----
def cmd_receive(send, dev, want_call):
    state, pieces_dir, root = os.path.join(dev, "state"), os.path.join(dev, "pieces"), os.path.join(dev, "root")
    for d in (state, pieces_dir, root, os.path.join(dev, "payload")):
        os.makedirs(d, exist_ok=True)
    carried = sorted(c for c in (os.listdir(send) if os.path.isdir(send) else [])
                     if os.path.isfile(os.path.join(send, c, "manifest.tsv")))
    if want_call and want_call not in carried:
        raise SystemExit(f"{send}/{want_call} did not travel: name it in the run call's carry")
    stored = os.path.join(state, "manifest.tsv")
    m = None
    for c in carried:
        cm = read_manifest(os.path.join(send, c, "manifest.tsv"))
        if m is None:
            m = cm
        elif cm["id"] != m["id"]:
            raise SystemExit(f"{send}/{c} is from another `prepare` ({cm['id']} != {m['id']})")
    if os.path.isfile(stored):
        sm = read_manifest(stored)
        if m is not None and m["id"] != sm["id"]:
            raise SystemExit(f"the device holds pieces of preparation {sm['id']}, the carried ones are {m['id']}: "
                             "run `gpu-bench.sh reset` there first (or carry the matching preparation)")
        m = sm
    elif m is not None:
        shutil.copy(os.path.join(send, carried[0], "manifest.tsv"), stored)
    if m is None:
        print("receive: no pieces carried and none received before")
        return
    moved = 0
    for pc in m["pieces"]:
        src = os.path.join(send, pc["call"], pc["file"])
        dst = os.path.join(pieces_dir, pc["file"])
        done = os.path.isfile(os.path.join(state, pc["payload"] + ".done"))
        if not os.path.isfile(src) or done:
            continue
        if os.path.isfile(dst) and os.path.getsize(dst) == pc["size"] and sha256_file(dst) == pc["sha"]:
            continue
        if os.path.getsize(src) != pc["size"] or sha256_file(src) != pc["sha"]:
            raise SystemExit(f"piece {src}: size or sha256 differs from the manifest (damaged in transfer?)")
        shutil.copy(src, dst + ".partial")
        os.replace(dst + ".partial", dst)
        moved += 1
    print(f"receive: {moved} piece(s) stored in {pieces_dir}")
    for name, p in m["payloads"].items():
        assemble(m, p, dev)
    restore_if_ready(m, dev)
    status(m, dev)

def assemble(m, p, dev):
    state, pieces_dir, root = os.path.join(dev, "state"), os.path.join(dev, "pieces"), os.path.join(dev, "root")
    stamp = os.path.join(state, p["name"] + ".done")
    if os.path.isfile(stamp):
        return
    parts = sorted((pc for pc in m["pieces"] if pc["payload"] == p["name"]), key=lambda pc: pc["idx"])
    if not all(os.path.isfile(os.path.join(pieces_dir, pc["file"])) for pc in parts):
        return
    t0 = time.time()
    blob = os.path.join(dev, "payload", p["name"] + ".xz")
    h = hashlib.sha256()
    with open(blob, "wb") as out:
        for pc in parts:
            with open(os.path.join(pieces_dir, pc["file"]), "rb") as f:
                for chunk in iter(lambda: f.read(8 * MIB), b""):
                    h.update(chunk)
                    out.write(chunk)
    if h.hexdigest() != p["sha"]:
        raise SystemExit(f"payload {p['name']}: sha256 of the joined pieces differs from the manifest")
    dest = os.path.join(root, p["dest"])
    if p["kind"] == "xz":
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        oh = hashlib.sha256()
        with lzma.open(blob) as src, open(dest + ".partial", "wb") as out:
            for chunk in iter(lambda: src.read(8 * MIB), b""):
                oh.update(chunk)
                out.write(chunk)
        if p["out_sha"] and oh.hexdigest() != p["out_sha"]:
            raise SystemExit(f"payload {p['name']}: unpacked sha256 {oh.hexdigest()} != {p['out_sha']}")
        os.chmod(dest + ".partial", 0o755)
        os.replace(dest + ".partial", dest)
    elif p["kind"] == "tar.xz":
        os.makedirs(dest, exist_ok=True)
        with tarfile.open(blob, "r:xz") as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(dest, filter="fully_trusted")
            else:
                t.extractall(dest)
    else:
        raise SystemExit(f"unknown payload kind {p['kind']}")
    os.remove(blob)
    for pc in parts:
        os.remove(os.path.join(pieces_dir, pc["file"]))
    open(stamp, "w").write(f"{time.time() - t0:.1f}\n")
    print(f"assembled {p['name']} -> {dest} ({time.time() - t0:.1f} s)")

def restore_if_ready(m, dev):
    state, root = os.path.join(dev, "state"), os.path.join(dev, "root")
    meta = m["meta"]
    if "delta" not in m["payloads"]:
        return
    if not all(os.path.isfile(os.path.join(state, n + ".done")) for n in ("cuda90", "delta")):
        return
    if os.path.isfile(os.path.join(state, "restored.done")):
        return
    lib = os.path.join(root, m["payloads"]["cuda90"]["dest"])
    delta = os.path.join(root, m["payloads"]["delta"]["dest"])
    cmd_restore(lib, delta, lib, meta["keep_sm"], meta["cuda_lib_sha256"])
    os.remove(delta)
    open(os.path.join(state, "restored.done"), "w").write("full\n")

def status(m, dev):
    state, pieces_dir = os.path.join(dev, "state"), os.path.join(dev, "pieces")
    missing_calls = []
    print("payload   group  pieces  state")
    for name, p in m["payloads"].items():
        parts = [pc for pc in m["pieces"] if pc["payload"] == name]
        done = os.path.isfile(os.path.join(state, name + ".done"))
        have = len(parts) if done else sum(os.path.isfile(os.path.join(pieces_dir, pc["file"])) for pc in parts)
        print(f"{name:<9} {p['group']:<6} {have}/{len(parts):<5} {'ready' if done else 'waiting'}")
        if not done:
            missing_calls += [pc["call"] for pc in parts if not os.path.isfile(os.path.join(pieces_dir, pc["file"]))]
    variant = "full (restored)" if os.path.isfile(os.path.join(state, "restored.done")) else f"sm_{m['meta'].get('keep_sm')} only (pruned)"
    if os.path.isfile(os.path.join(state, "cuda90.done")):
        print(f"CUDA provider library: {variant}")
    started = {pc["call"].rsplit("-", 1)[0] for pc in m["pieces"]
               if os.path.isfile(os.path.join(state, pc["payload"] + ".done")) or os.path.isfile(os.path.join(pieces_dir, pc["file"]))}
    todo = sorted({c for c in missing_calls if c.startswith("main-") or c.rsplit("-", 1)[0] in started})
    if todo:
        print("still to carry: " + ", ".join(f".kbatch/gpu/send/{c}" for c in todo))

def cmd_status(dev):
    stored = os.path.join(dev, "state", "manifest.tsv")
    if os.path.isfile(stored):
        status(read_manifest(stored), dev)
    else:
        print("nothing received yet")

def cmd_meta(manifest, key):
    print(read_manifest(manifest)["meta"].get(key, ""))

def cmd_bundle(out, src):
    tmp = out + ".partial"
    with tarfile.open(tmp, "w:gz") as t:
        t.add(src, arcname=os.path.basename(src.rstrip("/")))
    os.replace(tmp, out)

# ----- checks on results (there and here) -----
def cmd_gpu_seen(apps, smi, pattern):
    """yes: a compute process matching pattern (or any, when names are hidden); else how GPU memory moved."""
    seen = named = 0
    try:
        for line in open(apps):
            f = [x.strip() for x in line.split(",")]
            if len(f) >= 3 and f[1].isdigit():
                seen += 1
                if re.search(pattern, f[2]):
                    named += 1
    except OSError:
        pass
    used = []
    try:
        for line in open(smi):
            f = [x.strip() for x in line.split(",")]
            if len(f) >= 4:
                try:
                    used.append(float(f[3]))
                except ValueError:
                    pass
    except OSError:
        pass
    rise = (max(used) - used[0]) if used else 0.0
    if named:
        print(f"yes ({named} compute-app samples of {pattern}, GPU memory +{rise:.0f} MiB)")
    elif seen:
        print(f"yes? (compute apps seen but none named {pattern}; GPU memory +{rise:.0f} MiB)")
    elif rise > 100:
        print(f"likely (no compute-app rows, GPU memory rose by {rise:.0f} MiB)")
    else:
        print("no")

def smi_stats(path):
    util, mem, power, clocks = [], [], [], []
    try:
        for line in open(path):
            f = [x.strip() for x in line.split(",")]
            if len(f) < 7:
                continue
            try:
                util.append(float(f[1])); mem.append(float(f[3]))
                power.append(float(f[5])); clocks.append(float(f[6]))
            except ValueError:
                continue
    except OSError:
        return None
    if not util:
        return None
    busy = [u for u in util if u > 0]
    s = sorted(util)
    return dict(samples=len(util), util_mean=sum(util) / len(util), util_p50=s[len(s) // 2], util_max=max(util),
                util_mean_busy=(sum(busy) / len(busy)) if busy else 0.0, mem_max_mib=max(mem), mem_min_mib=min(mem),
                power_max_w=max(power) if power else 0, sm_clock_max=max(clocks) if clocks else 0)

def load_json(path):
    try:
        return json.load(open(path))
    except Exception:
        return None

def walk(obj, key):
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk(v, key)

def cmd_summary(res, out):
    L = []
    w = L.append
    facts = {}
    ffile = os.path.join(res, "facts.txt")
    for line in (open(ffile) if os.path.isfile(ffile) else []):
        k, _, v = line.rstrip("\n").partition("=")
        facts[k] = v
    w("# kbatch on the GPU machine (scripts/gpu-bench.sh)\n")
    for k in ("date", "gpu", "driver", "gpu_memory_mib", "cpus", "python", "ort_dir", "cuda_variant", "kbatch_version", "build_id"):
        if k in facts:
            w(f"- {k}: {facts[k]}")
    w("")
    # sweeps
    sweeps = {}
    for f in sorted(os.listdir(res)):
        m = re.match(r"sweep-(.+)\.json$", f)
        if m:
            j = load_json(os.path.join(res, f))
            if j and j.get("points"):
                sweeps[m.group(1)] = j
    if sweeps:
        names = list(sweeps)
        w("## Raw items/s per batch size (`kbatch bench-model`, same binary and library)\n")
        w("| batch | " + " | ".join(names) + " |")
        w("|---" * (len(names) + 1) + "|")
        batches = sorted({p["batch"] for j in sweeps.values() for p in j["points"]})
        for b in batches:
            row = []
            for n in names:
                p = next((p for p in sweeps[n]["points"] if p["batch"] == b), None)
                row.append(f"{p['items_per_s']:,.0f} ({p['median_batch_us']:,.0f} µs)" if p else "-")
            w(f"| {b} | " + " | ".join(row) + " |")
        w("")
        w("First call per batch size, µs (what ONNX Runtime does once per new shape: on CUDA, cuDNN's search):\n")
        w("| batch | " + " | ".join(names) + " |")
        w("|---" * (len(names) + 1) + "|")
        for b in batches:
            row = []
            for n in names:
                p = next((p for p in sweeps[n]["points"] if p["batch"] == b), None)
                row.append(f"{p['first_call_us']:,.0f}" if p and "first_call_us" in p else "-")
            w(f"| {b} | " + " | ".join(row) + " |")
        w("")
        w("| run | session device | threads | load ms | best batch | best items/s | on GPU (nvidia-smi) |")
        w("|---|---|---|---|---|---|---|")
        for n, j in sweeps.items():
            b = j.get("best") or {}
            seen = facts.get(f"gpu_seen_sweep-{n}", "-")
            w(f"| {n} | {j.get('device', '?')} | {j.get('intra_op_threads')} | {j.get('load_ms', 0):.0f} | {b.get('batch')} | {b.get('items_per_s', 0):,.0f} | {seen} |")
        cpu = [j["best"]["items_per_s"] for n, j in sweeps.items() if n.startswith("cpu") and j.get("best")]
        gpu = [j["best"]["items_per_s"] for n, j in sweeps.items() if n.startswith("cuda") and j.get("best")]
        if cpu and gpu:
            w(f"\nbest CUDA / best CPU: {max(gpu) / max(cpu):.2f}x")
        w("")
    # time to first inference
    ttfi = []
    for f in sorted(os.listdir(res)):
        m = re.match(r"ttfi-(.+)\.json$", f)
        if m:
            j = load_json(os.path.join(res, f))
            wall = facts.get(f"wall_ttfi-{m.group(1)}")
            if j:
                ttfi.append((m.group(1), j.get("load_ms"), wall, facts.get(f"gpu_seen_ttfi-{m.group(1)}", "-")))
    if ttfi:
        w("## Time to first inference (fresh process, `bench-model --batch-sizes 1`)\n")
        w("load = session creation + 2 warm-up batches (the first inference); process = the whole process wall time.\n")
        w("| variant | load ms | process s | on GPU |")
        w("|---|---|---|---|")
        for n, load, wall, seen in ttfi:
            w(f"| {n} | {load:.0f} | {wall} | {seen} |" if load is not None else f"| {n} | - | {wall} | {seen} |")
        if "shape_search_overrun_s" in facts:
            w(f"\nall 11 batch sizes in one process, 0.05 s each: {facts['shape_search_overrun_s']} s beyond the "
              "measured windows (≈ the first call of each new shape: cuDNN algorithm search, arena growth)")
        w("")
    # python check
    pc = load_json(os.path.join(res, "pycheck.json"))
    if pc:
        w("## CUDA EP through onnxruntime's Python API (the same library files)\n")
        w(f"onnxruntime {pc.get('version')} from {pc.get('file')}; available: {', '.join(pc.get('providers', []))}\n")
        w("| config | providers used | create s | first run ms (b=5) | rel. L2 vs reference | max abs vs CPU (b=1024) | first-call cost b=1/64/1024 ms |")
        w("|---|---|---|---|---|---|---|")
        for c in pc.get("configs", []):
            if "error" in c:
                w(f"| {c['name']} | error: {c['error'][:120]} | | | | | |")
                continue
            fc = "/".join(f"{x:.1f}" for x in c.get("first_call_extra_ms", []))
            w(f"| {c['name']} | {','.join(p.replace('ExecutionProvider', '') for p in c['used'])} | {c['create_s']:.2f} | "
              f"{c['first_run_ms']:.1f} | {c['rel_l2_ref']:.2e} | {c['max_abs_vs_cpu']:.2e} | {fc} |")
        opts = pc.get("effective_options", {})
        for k, v in opts.items():
            keys = ("use_tf32", "cudnn_conv_algo_search", "arena_extend_strategy", "gpu_mem_limit", "cudnn_conv_use_max_workspace", "do_copy_in_default_stream", "enable_cuda_graph")
            w(f"\n{k} effective options: " + ", ".join(f"{kk}={v.get(kk)}" for kk in keys if kk in v))
        w("")
    # pipeline
    crit = os.path.join(res, "pipeline.log")
    if os.path.isfile(crit):
        w("## Serving path without the broker (core/benches/pipeline.rs)\n")
        w(f"device: {facts.get('pipeline_device', '?')}; on GPU: {facts.get('gpu_seen_pipeline', '-')}\n")
        text = open(crit, errors="replace").read()
        rows = re.findall(r"(pipeline/\S+)\s*\n?\s*time:\s*\[([^\]]+)\]\s*\n?\s*thrpt:\s*\[([^\]]+)\]", text)
        if rows:
            w("| bench | time [low median high] | thrpt [low median high] |")
            w("|---|---|---|")
            for name, t, th in rows:
                w(f"| {name} | {t.strip()} | {th.strip()} |")
        else:
            w("(no criterion result lines; see pipeline.log)")
        w("")
    # serving
    serves = sorted(f for f in os.listdir(res) if re.match(r"serve-.+\.json$", f) and ".stats" not in f)
    if serves:
        w("## Serving on CUDA (`kbatch demo`, mock cluster unless named kafka)\n")
        for f in serves:
            label = f[:-5]
            w(f"### {label}\n")
            w(f"on GPU: {facts.get('gpu_seen_' + label, '-')}; model device log: {facts.get('device_log_' + label, '-')}")
            st = smi_stats(os.path.join(res, label + ".smi.csv"))
            if st:
                w(f"nvidia-smi every {facts.get('smi_ms', '?')} ms: {st['samples']} samples, utilization mean {st['util_mean']:.0f} % "
                  f"(p50 {st['util_p50']:.0f}, max {st['util_max']:.0f}), memory {st['mem_min_mib']:.0f}-{st['mem_max_mib']:.0f} MiB, "
                  f"power max {st['power_max_w']:.0f} W, SM clock max {st['sm_clock_max']:.0f} MHz")
            snaps = []
            for sf in sorted(x for x in os.listdir(res) if x.startswith(label + ".stats-")):
                j = load_json(os.path.join(res, sf))
                a = next(iter(walk(j, "adaptive")), None) if j else None
                if isinstance(a, dict):
                    snaps.append(a)
            if snaps:
                w("adaptive controller, /stats every 2 s (target / gpu_utilization / memory / last_reason):")
                w("`" + "  ".join(f"{a.get('target')}/{a.get('gpu_utilization')}/{a.get('memory_utilization') and round(a['memory_utilization'], 3)}/{a.get('last_reason')}" for a in snaps) + "`")
            tbl = os.path.join(res, label + ".out")
            if os.path.isfile(tbl):
                w("\n```text\n" + open(tbl, errors="replace").read()[-3500:] + "\n```")
            w("")
    steps = sorted(f for f in os.listdir(res) if f.startswith("step-") and f.endswith(".status"))
    if steps:
        w("## Steps\n")
        for f in steps:
            w(f"- {f[5:-7]}: {open(os.path.join(res, f)).read().strip()}")
    text = "\n".join(L) + "\n"
    if out != "-":
        open(out, "w").write(text)
    sys.stdout.write(text)

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {"prune": cmd_prune, "restore": cmd_restore, "pack": cmd_pack, "receive": cmd_receive,
          "status": cmd_status, "meta": cmd_meta, "bundle": cmd_bundle, "gpu-seen": cmd_gpu_seen,
          "summary": cmd_summary}.get(cmd)
    if fn is None:
        raise SystemExit(f"helper: unknown command {cmd}")
    fn(*args)

main()
PY
}

# ---------------------------------------------------------------------------------------------
# Here: prepare
# ---------------------------------------------------------------------------------------------
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

cargo_executable() { # NAME KIND < cargo's JSON messages: the executable of that target
    python3 -c '
import json, sys
name, kind = sys.argv[1], sys.argv[2]
exe = [m["executable"] for m in map(json.loads, filter(str.strip, sys.stdin))
       if m.get("reason") == "compiler-artifact" and m.get("executable")
       and m["target"]["name"] == name and kind in m["target"]["kind"]]
print(exe[-1] if exe else "")' "$1" "$2"
}

cmd_prepare_build() {
    need cargo "a Rust toolchain"
    need strip "binutils"
    mkdir -p "${STAGE}/bin"
    local kb pipe
    if [[ -n "${KBATCH_BIN:-}" ]]; then
        kb="${KBATCH_BIN}"
        log "using KBATCH_BIN=${kb} (no build)"
    else
        log "cargo build --release --features cuda --bin kbatch (minutes on 2 cores)"
        kb="$(cargo build --release --features cuda --bin kbatch --message-format=json-render-diagnostics | cargo_executable kbatch bin)"
    fi
    [[ -x "${kb}" ]] || die "no kbatch executable (${kb:-none})"
    strip -o "${STAGE}/bin/kbatch" "${kb}"
    if [[ -n "${PIPELINE_BIN:-}" ]]; then
        pipe="${PIPELINE_BIN}"
    elif [[ "${NO_PIPELINE:-0}" == 1 ]]; then
        pipe=""
    else
        log "cargo bench --no-run --features cuda -p kbatch-core --bench pipeline"
        pipe="$(cargo bench --no-run --features cuda -p kbatch-core --bench pipeline --message-format=json-render-diagnostics | cargo_executable pipeline bench)"
    fi
    rm -f "${STAGE}/bin/pipeline-bench"
    if [[ -n "${pipe}" ]]; then
        [[ -x "${pipe}" ]] || die "no pipeline bench executable (${pipe})"
        strip -o "${STAGE}/bin/pipeline-bench" "${pipe}"
    fi
    ls -l "${STAGE}/bin"
}

cmd_prepare_libs() {
    need python3 "python3 with pip"
    local wheel_dir="${STAGE}/wheel" ex="${STAGE}/extract"
    mkdir -p "${wheel_dir}"
    if ! ls "${wheel_dir}"/onnxruntime_gpu-"${ORT_GPU_VERSION}"-*.whl >/dev/null 2>&1; then
        log "pip download onnxruntime-gpu==${ORT_GPU_VERSION} (cp${GPU_PY_VERSION/./}, manylinux x86_64, ~256 MB)"
        python3 -m pip download --quiet --no-deps --only-binary=:all: \
            --python-version "${GPU_PY_VERSION}" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d "${wheel_dir}" "onnxruntime-gpu==${ORT_GPU_VERSION}"
    fi
    local wheel
    wheel="$(find "${wheel_dir}" -maxdepth 1 -name "onnxruntime_gpu-${ORT_GPU_VERSION}-*.whl" | sort | head -n 1)"
    log "wheel: ${wheel} ($(stat -c %s "${wheel}") bytes)"
    rm -rf "${ex}"
    mkdir -p "${ex}/ort" "${ex}/pyort"
    python3 - "${wheel}" "${ex}" <<'PY'
import os, sys, zipfile
wheel, ex = sys.argv[1], sys.argv[2]
libs = ("libonnxruntime.so.", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so")
skip = ("onnxruntime/transformers/", "onnxruntime/quantization/", "onnxruntime/tools/")
with zipfile.ZipFile(wheel) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith(libs):
            out = os.path.join(ex, "ort", base)
        elif n.startswith("onnxruntime/") and not n.startswith(skip) and not base.startswith("libonnxruntime") and not n.endswith("/"):
            out = os.path.join(ex, "pyort", n)
        else:
            continue
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(n) as src, open(out, "wb") as dst:
            dst.write(src.read())
        os.chmod(out, 0o755 if base.endswith(".so") or ".so." in base else 0o644)
PY
    local cuda="${ex}/ort/libonnxruntime_providers_cuda.so"
    [[ -f "${cuda}" && -f "${ex}/ort/libonnxruntime.so.${ORT_GPU_VERSION}" ]] || die "the wheel lacks the CUDA provider or libonnxruntime.so.${ORT_GPU_VERSION}"
    if [[ -n "${GPU_KEEP_SM}" ]]; then
        log "zeroing non-sm_${GPU_KEEP_SM} cubins of the CUDA provider (the rest kept as the fallback delta)"
        helper prune "${cuda}" "${ex}/cuda-sm${GPU_KEEP_SM}.so" "${ex}/cuda-delta.bin" "${GPU_KEEP_SM}"
        log "checking that pruned + delta gives back the wheel's library"
        helper restore "${ex}/cuda-sm${GPU_KEEP_SM}.so" "${ex}/cuda-delta.bin" "${ex}/cuda-restored.so" "${GPU_KEEP_SM}" "$(sha256sum "${cuda}" | cut -d' ' -f1)"
        rm -f "${ex}/cuda-restored.so"
    fi
    sha256sum "${wheel}" | cut -d' ' -f1 >"${ex}/wheel.sha256"
    basename "${wheel}" >"${ex}/wheel.name"
    ls -l "${ex}" "${ex}/ort"
}

xz_to() { # src dst [x86]: xz-compress src into dst
    local filt="-9e"
    [[ "${3:-}" == x86 ]] && filt="--x86 --lzma2=preset=9e"
    # shellcheck disable=SC2086 # filt holds several options on purpose
    nice xz -T"${XZ_THREADS:-2}" ${filt} -c "$1" >"$2.partial"
    mv -f "$2.partial" "$2"
}

tar_xz_to() { # dir dst
    tar -C "$1" --owner=0 --group=0 -cf - . | nice xz -T"${XZ_THREADS:-2}" --x86 --lzma2=preset=9e -c >"$2.partial"
    mv -f "$2.partial" "$2"
}

tree_bytes() { # what every call carries besides its carry paths: tracked + untracked-not-ignored (+ shared/)
    git ls-files -z --cached --others --exclude-standard | python3 -c '
import os, sys
names = [n for n in sys.stdin.buffer.read().decode().split("\0") if n]
total = sum(os.lstat(n).st_size for n in names if os.path.lexists(n))
if os.path.isdir("shared"):
    for d, _, fs in os.walk("shared"):
        total += sum(os.lstat(os.path.join(d, f)).st_size for f in fs)
print(total)'
}

cmd_prepare_pack() {
    need xz "apt-get install xz-utils"
    local ex="${STAGE}/extract" pay="${STAGE}/payload" core="${STAGE}/core"
    [[ -f "${STAGE}/bin/kbatch" ]] || die "no ${STAGE}/bin/kbatch: run prepare-build first"
    [[ -f "${ex}/ort/libonnxruntime.so.${ORT_GPU_VERSION}" ]] || die "no extracted libraries: run prepare-libs first"
    rm -rf "${pay}" "${core}"
    mkdir -p "${pay}" "${core}/bin" "${core}/ort" "${core}/fallback-lib"
    cp "${STAGE}/bin/kbatch" "${core}/bin/"
    cp "${ex}/ort/libonnxruntime.so.${ORT_GPU_VERSION}" "${ex}/ort/libonnxruntime_providers_shared.so" "${core}/ort/"
    ln -sfn "libonnxruntime.so.${ORT_GPU_VERSION}" "${core}/ort/libonnxruntime.so"
    local lib
    for lib in libssl.so.3 libcrypto.so.3 libz.so.1; do
        local path
        path="$(ldd "${STAGE}/bin/kbatch" | awk -v l="${lib}" '$1 == l { print $3 }')"
        [[ -n "${path}" && -f "${path}" ]] && cp -L "${path}" "${core}/fallback-lib/${lib}"
    done
    local cuda_build=yes
    # shellcheck disable=SC2016 # the backticks are part of the message searched for
    if grep -a -q 'kbatch was built without the `cuda` cargo feature' "${STAGE}/bin/kbatch"; then
        cuda_build=no
        log "WARNING: ${STAGE}/bin/kbatch was built WITHOUT --features cuda: fine for a size check, useless on the GPU"
    fi
    local version commit
    version="$("${STAGE}/bin/kbatch" --version 2>/dev/null || echo unknown)"
    commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo -dirty)"
    log "compressing payloads (xz -9e; a few minutes on 2 cores)"
    tar_xz_to "${core}" "${pay}/core.tar.xz"
    local specs=() cuda_src="${ex}/ort/libonnxruntime_providers_cuda.so" cuda_sha keep="${GPU_KEEP_SM}"
    cuda_sha="$(sha256sum "${cuda_src}" | cut -d' ' -f1)"
    specs+=("core|main|tar.xz|.|${pay}/core.tar.xz|")
    if [[ -n "${keep}" ]]; then
        xz_to "${ex}/cuda-sm${keep}.so" "${pay}/cuda90.xz" x86
        specs+=("cuda90|main|xz|ort/libonnxruntime_providers_cuda.so|${pay}/cuda90.xz|$(sha256sum "${ex}/cuda-sm${keep}.so" | cut -d' ' -f1)")
    else
        keep=0
        xz_to "${cuda_src}" "${pay}/cuda90.xz" x86
        specs+=("cuda90|main|xz|ort/libonnxruntime_providers_cuda.so|${pay}/cuda90.xz|${cuda_sha}")
    fi
    if [[ "${NO_PYORT:-0}" != 1 ]]; then
        tar_xz_to "${ex}/pyort" "${pay}/pyort.tar.xz"
        specs+=("pyort|main|tar.xz|pyort|${pay}/pyort.tar.xz|")
    fi
    if [[ -f "${STAGE}/bin/pipeline-bench" ]]; then
        mkdir -p "${STAGE}/benchdir/bin"
        cp "${STAGE}/bin/pipeline-bench" "${STAGE}/benchdir/bin/"
        tar_xz_to "${STAGE}/benchdir" "${pay}/bench.tar.xz"
        specs+=("bench|main|tar.xz|.|${pay}/bench.tar.xz|")
    fi
    if [[ -n "${GPU_KEEP_SM}" && "${NO_DELTA:-0}" != 1 ]]; then
        xz_to "${ex}/cuda-delta.bin" "${pay}/delta.xz"
        specs+=("delta|delta|xz|ort/cuda-delta.bin|${pay}/delta.xz|$(sha256sum "${ex}/cuda-delta.bin" | cut -d' ' -f1)")
    fi
    if [[ "${KAFKA:-0}" == 1 ]]; then
        [[ -d .kbatch/kafka/libs ]] || die "KAFKA=1 but no .kbatch/kafka (scripts/install-kafka.sh)"
        tar -C .kbatch -cf - kafka | nice xz -T"${XZ_THREADS:-2}" -6 -c >"${pay}/kafka.tar.xz"
        specs+=("kafka|kafka|tar.xz|.|${pay}/kafka.tar.xz|")
    fi
    local tree budget build_id
    tree="$(tree_bytes)"
    budget=$((CALL_LIMIT - tree - CALL_MARGIN))
    build_id="$(date -u +%Y%m%dT%H%M%SZ)-$$"
    log "working tree ${tree} bytes; each call may carry ${budget} bytes of pieces"
    helper pack "${SEND}" "${budget}" "${build_id}" "${specs[@]}" \
        "meta|repo_root|${REPO_ROOT}" "meta|cuda_build|${cuda_build}" "meta|ort_version|${ORT_GPU_VERSION}" \
        "meta|wheel|$(cat "${ex}/wheel.name")" "meta|wheel_sha256|$(cat "${ex}/wheel.sha256")" \
        "meta|keep_sm|${keep}" "meta|cuda_lib_sha256|${cuda_sha}" "meta|kbatch_version|${version}" \
        "meta|commit|${commit}" "meta|python|${GPU_PY_VERSION}"
    rm -rf "${core}" "${STAGE}/benchdir"
}

cmd_sizes() {
    [[ -f "${SEND}/manifest.tsv" ]] || die "nothing prepared (${SEND}/manifest.tsv)"
    local tree call bytes total ok=1
    tree="$(tree_bytes)"
    printf '%-10s %10s %10s  %s\n' call pieces+tree MiB carry
    while read -r call; do
        if [[ ! -d "${SEND}/${call}" ]]; then
            echo "${call}: missing here (prepare again)"
            ok=0
            continue
        fi
        bytes="$(du -sb "${SEND}/${call}" | cut -f1)"
        total=$((bytes + tree))
        printf '%-10s %10d %10s  %s\n' "${call}" "${total}" "$(awk -v b="${total}" 'BEGIN { printf "%.1f", b / 1048576 }')" "${SEND}/${call}"
        ((total < CALL_LIMIT)) || { ok=0; log "${call} is over 64 MiB: prepare again (the tree grew?)"; }
    done < <(awk -F'\t' '$1 == "call" { print $2 }' "${SEND}/manifest.tsv")
    echo "working tree alone: ${tree} bytes; payloads:"
    awk -F'\t' '$1 == "payload" { printf "  %-8s %-6s %8.1f MiB  -> %s\n", $2, $3, $6 / 1048576, $5 }' "${SEND}/manifest.tsv"
    ((ok)) || exit 1
}

cmd_prepare() {
    cmd_prepare_build
    cmd_prepare_libs
    cmd_prepare_pack
    cmd_sizes
    log "done: carry .kbatch/gpu/send/main-1, then main-2 (docs/gpu-bench.md)"
}

cmd_clean() { # drop the large intermediates here, keep send/
    rm -rf "${STAGE}/wheel" "${STAGE}/extract" "${STAGE}/payload"
}

# ---------------------------------------------------------------------------------------------
# There: probe, receive, run
# ---------------------------------------------------------------------------------------------
OUT_DIR="${OUT:-${REPO_ROOT}/.kbatch/gpu-out}"

fact() { # key value: one line of results/facts.txt (later lines win)
    mkdir -p "${RES}"
    printf '%s=%s\n' "$1" "$2" >>"${RES}/facts.txt"
}

site_dirs() {
    python3 - <<'PY' 2>/dev/null || true
import site, sysconfig
seen = []
for d in [sysconfig.get_paths().get("purelib"), sysconfig.get_paths().get("platlib"), *getattr(site, "getsitepackages", lambda: [])()]:
    if d and d not in seen:
        seen.append(d); print(d)
PY
}

cuda_lib_dirs() { # directories holding the CUDA/cuDNN/cuBLAS libraries of the Python env and the system
    {
        local d
        while read -r d; do
            if [[ -d "${d}/nvidia" ]]; then
                find "${d}/nvidia" -maxdepth 4 \( -name 'libcudart.so*' -o -name 'libcublas*.so*' -o -name 'libcudnn*.so*' \
                    -o -name 'libcurand.so*' -o -name 'libcufft.so*' -o -name 'libnvrtc*.so*' -o -name 'libnvJitLink.so*' \) -printf '%h\n' || true
            fi
        done < <(site_dirs)
        for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
            if [[ -d "${d}" ]]; then echo "${d}"; fi
        done
    } | awk '!seen[$0]++'
}

cmd_probe() {
    mkdir -p "${RES}" "${STATE}"
    {
        set +e +o pipefail # a probe reports what fails, it does not stop at it
        echo "== date / host"; date -u; uname -a; nproc; free -g 2>/dev/null || true; df -h . | tail -1
        echo "== repo copy: $(pwd -P)"
        echo "== nvidia-smi"
        timeout 30 nvidia-smi || echo "nvidia-smi failed ($?)"
        timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,compute_cap,clocks.max.sm,power.limit --format=csv || true
        echo "== python3: $(command -v python3) $(python3 --version 2>&1)"
        timeout 60 python3 -m pip list 2>/dev/null | grep -iE 'onnx|nvidia|cuda|cudnn|torch|tensorrt|numpy' || echo "(pip list failed)"
        echo "== CUDA libraries (Python env, /usr/local/cuda)"
        local d
        while read -r d; do
            echo "${d}: $(find "${d}" -maxdepth 1 -regextype egrep -regex '.*/lib(cudart|cublas|cublasLt|cudnn|curand|cufft|nvrtc)\.so.*' -printf '%f ')"
        done < <(cuda_lib_dirs)
        echo "== libcuda: $(ldconfig -p 2>/dev/null | grep -m1 'libcuda.so.1' || echo 'not in ldconfig'); LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
        echo "== ONNX Runtime CUDA providers already on the machine"
        local here
        here="$(pwd -P)"
        # shellcheck disable=SC2046 # one word per directory
        timeout 60 find $(site_dirs) /opt /usr/local /usr/lib /root -xdev -path "${here}" -prune -o \
            -name 'libonnxruntime_providers_cuda.so' -print 2>/dev/null | awk '!seen[$0]++'
        echo "== tools"
        for t in xz zstd tar java curl ldd; do printf '%s: %s\n' "${t}" "$(command -v "${t}" || echo missing)"; done
        command -v java >/dev/null && java -version 2>&1 | head -1
        ldd --version 2>&1 | head -1
        ldconfig -p 2>/dev/null | grep -E 'libssl.so.3|libcrypto.so.3|libz.so.1' | head -3 || true
        echo "== /work/main: $(ls -d /work/main 2>/dev/null || echo absent)"
    } 2>&1 | tee "${RES}/probe.txt"
    local found
    found="$(grep -E '/libonnxruntime_providers_cuda.so$' "${RES}/probe.txt" | while read -r f; do
        dir="$(dirname "${f}")"
        ls "${dir}"/libonnxruntime.so.1.3[1-9]* >/dev/null 2>&1 && echo "${dir}" && break
    done || true)"
    if [[ -n "${found}" ]]; then
        echo "${found}" >"${STATE}/found-ort-dir"
        log "a usable ONNX Runtime >= 1.31 with the CUDA provider is already here: ${found} (no pieces needed)"
    else
        log "no onnxruntime-gpu >= 1.31 on the machine: the provider travels (main-1, main-2)"
    fi
    fact gpu "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
    fact driver "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)"
    fact gpu_memory_mib "$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1)"
    fact cpus "$(nproc)"
    fact python "$(python3 --version 2>&1)"
    fact date "$(date -u +%FT%TZ)"
    touch "${STATE}/probe.done"
}

cmd_receive() {
    helper receive "${SEND}" "${DEV}" "${1:-}"
}

# --- environment of the device runs ---
ORT_DIR=""
KB_LD=""
CUDA_LD=""

setup_env() {
    unset DEVICE MAX_BATCH_SIZE BATCH_TIMEOUT_MS MODEL_REGISTRY_PATH LOG_LEVEL CACHE_TTL_SECONDS KBATCH_CONFIG KBATCH_PROFILE
    if [[ -n "${GPU_ORT_DIR:-}" ]]; then
        ORT_DIR="${GPU_ORT_DIR}"
    elif [[ -f "${ROOT}/ort/libonnxruntime_providers_cuda.so" || ! -f "${STATE}/found-ort-dir" ]]; then
        ORT_DIR="${REPO_ROOT}/${ROOT}/ort"
    else
        ORT_DIR="$(cat "${STATE}/found-ort-dir")"
    fi
    CUDA_LD="$(cuda_lib_dirs | paste -sd:)"
    KB_LD=""
    if [[ -x "${ROOT}/bin/kbatch" ]] && ldd "${ROOT}/bin/kbatch" 2>/dev/null | grep -q 'not found'; then
        KB_LD="${REPO_ROOT}/${ROOT}/fallback-lib"
        log "kbatch misses system libraries ($(ldd "${ROOT}/bin/kbatch" | grep 'not found' | awk '{print $1}' | tr '\n' ' ')): using the carried fallback-lib"
    fi
}

ort_lib() { { find "${ORT_DIR}" -maxdepth 1 -name 'libonnxruntime.so.1.*' 2>/dev/null || true; } | sort | tail -1; }
cuda_ready() { [[ -f "${ORT_DIR}/libonnxruntime_providers_cuda.so" && -f "${ORT_DIR}/libonnxruntime_providers_shared.so" && -n "$(ort_lib)" ]]; }
core_ready() { [[ -x "${ROOT}/bin/kbatch" && -n "$(ort_lib)" ]]; }

ld_path() { # the CUDA wheel dirs, the fallback libraries if kbatch needs them, then what was set
    local d out=""
    local IFS=": "
    for d in ${CUDA_LD} ${KB_LD} ${LD_LIBRARY_PATH:-}; do
        [[ -n "${d}" ]] && out="${out:+${out}:}${d}"
    done
    echo "${out}"
}

KB=()
kb_argv() { # the carried kbatch with the carried (or found) ONNX Runtime and the CUDA libraries
    KB=(env "ORT_DYLIB_PATH=$(ort_lib)" "LD_LIBRARY_PATH=$(ld_path)" "${REPO_ROOT}/${ROOT}/bin/kbatch")
}
kb() { kb_argv; "${KB[@]}" "$@"; }

WATCH_PIDS=""
watch_start() { # label: nvidia-smi samples and compute processes while a load runs
    local f="${RES}/$1"
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used,memory.total,power.draw,clocks.sm \
        --format=csv,noheader,nounits -lms "${SMI_MS}" >"${f}.smi.csv" 2>/dev/null &
    WATCH_PIDS="$!"
    (
        while :; do
            nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv,noheader,nounits 2>/dev/null |
                sed "s/^/$(date +%s.%N), /"
            sleep 0.5
        done
    ) >"${f}.apps.csv" 2>/dev/null &
    WATCH_PIDS="${WATCH_PIDS} $!"
}

watch_stop() { # label pattern: stop sampling, record whether the GPU was used
    local p
    for p in ${WATCH_PIDS}; do
        kill "${p}" 2>/dev/null || true
        wait "${p}" 2>/dev/null || true
    done
    WATCH_PIDS=""
    if [[ -n "${1:-}" ]]; then
        local seen
        seen="$(helper gpu-seen "${RES}/$1.apps.csv" "${RES}/$1.smi.csv" "${2:-kbatch}")"
        fact "gpu_seen_$1" "${seen}"
        log "$1: on GPU: ${seen}"
    fi
}

bench_model() { # label [args...]: kbatch bench-model under sampling, report to results/<label>.json
    local label="$1" t0 t1 rc=0
    shift
    watch_start "${label}"
    kb_argv
    t0="$(now)"
    timeout -k 5 "${STEP_TIMEOUT:-180}" "${KB[@]}" bench-model "$@" --report "${RES}/${label}.json" \
        >"${RES}/${label}.out" 2>"${RES}/${label}.err" || rc=$?
    t1="$(now)"
    watch_stop "${label}" kbatch
    fact "wall_${label}" "$(awk -v a="${t0}" -v b="${t1}" 'BEGIN { printf "%.2f", b - a }')"
    [[ ${rc} -eq 0 ]] || log "${label}: kbatch exited ${rc}: $(tail -3 "${RES}/${label}.err" | tr '\n' ' ')"
    # The report names the device the session actually got (CPU after a CUDA fallback).
    if [[ -f "${RES}/${label}.json" ]]; then
        fact "session_device_${label}" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("device", "?"))' "${RES}/${label}.json" 2>/dev/null || echo '?')"
    fi
    return "${rc}"
}

# --- steps ---
step_check_cpu() {
    core_ready || { echo "core payload not here yet"; return 3; }
    kb --version
    ldd "${ROOT}/bin/kbatch" | grep -E 'not found|ssl|crypto|libz' || true
    STEP_TIMEOUT=60 bench_model check-cpu --set model.device=cpu --batch-sizes 1,64 --seconds 0.3
    fact kbatch_version "$(kb --version)"
}

step_check_cuda() {
    cuda_ready || { echo "CUDA provider not here yet (${ORT_DIR})"; return 3; }
    [[ "$(helper meta "${STATE}/manifest.tsv" cuda_build 2>/dev/null || echo yes)" != no ]] || { echo "the carried kbatch was built without --features cuda"; return 1; }
    fact ort_dir "${ORT_DIR}"
    if [[ -f "${STATE}/restored.done" ]]; then fact cuda_variant full; elif [[ -f "${STATE}/cuda90.done" ]]; then fact cuda_variant "sm_$(helper meta "${STATE}/manifest.tsv" keep_sm) only (non-sm_90 cubins zeroed)"; else fact cuda_variant "found on the machine"; fi
    echo "LD_LIBRARY_PATH=$(ld_path)"
    echo "== ldd of the CUDA provider"
    LD_LIBRARY_PATH="$(ld_path)" ldd "${ORT_DIR}/libonnxruntime_providers_cuda.so" | tee "${RES}/ldd-provider.txt" | grep -E 'not found|cuda|cublas|curand' || true
    if grep -q 'not found' "${RES}/ldd-provider.txt"; then
        echo "MISSING libraries for the CUDA provider: $(grep 'not found' "${RES}/ldd-provider.txt" | awk '{print $1}' | tr '\n' ' ')"
    fi
    local cudnn
    cudnn="$(IFS=:; for d in ${CUDA_LD}; do ls "${d}"/libcudnn.so.9* 2>/dev/null || true; done | head -1)"
    echo "libcudnn.so.9: ${cudnn:-NOT FOUND (Conv/LSTM on CUDA need it)}"
    STEP_TIMEOUT=120 bench_model check-cuda --set model.device=cuda --batch-sizes 1,64 --seconds 0.3 || return 1
    local got
    got="$(grep '^session_device_check-cuda=' "${RES}/facts.txt" | tail -1 | cut -d= -f2)"
    if [[ ${got} != cuda ]]; then
        echo "kbatch asked for CUDA but its session runs on '${got}' (the CUDA provider did not register); see check-cuda.err."
        echo "Why, from onnxruntime's Python API on the same libraries:"
        pycheck_quick || true
        return 1
    fi
    if ! grep '^gpu_seen_check-cuda=' "${RES}/facts.txt" | tail -1 | grep -qE '=(yes|likely)'; then
        echo "kbatch's session reports CUDA, but nvidia-smi saw neither its process nor a rise in GPU memory."
        echo "Why, from onnxruntime's Python API on the same libraries:"
        pycheck_quick || true
        echo "If it says 'no kernel image is available' or an invalid image: the sm_90-only library failed; send delta-1..3."
        return 1
    fi
    touch "${STATE}/cuda-ok"
}

step_sweep_cpu() {
    core_ready || return 3
    local t rc=0
    for t in ${CPU_THREADS}; do
        STEP_TIMEOUT=$((11 * (SPS + 2) + 60)) bench_model "sweep-cpu-t${t}" --set model.device=cpu --threads "${t}" \
            --batch-sizes "${BATCHES}" --seconds "${SECONDS_PER_SIZE}" || rc=1
    done
    return "${rc}"
}

cuda_ok() { [[ -f "${STATE}/cuda-ok" ]] || { echo "check-cuda has not passed"; return 3; }; }

step_sweep_cuda() {
    cuda_ok || return 3
    STEP_TIMEOUT=$((11 * (SPS + 2) + 90)) bench_model sweep-cuda-tuned --set model.device=cuda --threads "${CUDA_THREADS}" \
        --batch-sizes "${BATCHES}" --seconds "${SECONDS_PER_SIZE}"
}

step_sweep_cuda_default() {
    cuda_ok || return 3
    STEP_TIMEOUT=$((11 * (SPS + 2) + 90)) bench_model sweep-cuda-ortdefaults --set model.device=cuda --threads "${CUDA_THREADS}" \
        --set resource_management.enable_gpu_optimization=false --batch-sizes "${BATCHES}" --seconds "${SECONDS_PER_SIZE}"
}

step_ttfi() {
    cuda_ok || return 3
    rm -f models/*/*/.optimized/*-cuda.onnx
    local rc=0
    STEP_TIMEOUT=120 bench_model ttfi-cuda-tuned-cold --set model.device=cuda --batch-sizes 1 --seconds 0.2 || rc=1
    STEP_TIMEOUT=120 bench_model ttfi-cuda-tuned-cached --set model.device=cuda --batch-sizes 1 --seconds 0.2 || rc=1
    STEP_TIMEOUT=120 bench_model ttfi-cuda-ortdefaults-cached --set model.device=cuda --set resource_management.enable_gpu_optimization=false --batch-sizes 1 --seconds 0.2 || rc=1
    STEP_TIMEOUT=120 bench_model ttfi-cuda-nocompile --set model.device=cuda --set resource_management.enable_model_compilation=false --batch-sizes 1 --seconds 0.2 || rc=1
    STEP_TIMEOUT=60 bench_model ttfi-cpu-cached --set model.device=cpu --batch-sizes 1 --seconds 0.2 || rc=1
    # Every batch size once in a process, 0.05 s each: what the process takes beyond load and the
    # measured windows is mostly the first call of each new shape (cuDNN's algorithm search).
    if STEP_TIMEOUT=180 bench_model shapes-cuda-tuned --set model.device=cuda --batch-sizes "${BATCHES}" --seconds 0.05; then
        python3 - "${RES}" <<'PY' || true
import json, sys
res = sys.argv[1]
j = json.load(open(f"{res}/shapes-cuda-tuned.json"))
wall = [l.split("=", 1)[1] for l in open(f"{res}/facts.txt") if l.startswith("wall_shapes-cuda-tuned=")][-1]
over = float(wall) - j["load_ms"] / 1000 - len(j["points"]) * 2 * j["seconds"]
open(f"{res}/facts.txt", "a").write(f"shape_search_overrun_s={over:.2f}\n")
PY
    else
        rc=1
    fi
    return "${rc}"
}

pyort_env() { # prints the PYTHONPATH for the carried onnxruntime-gpu package ("" = the machine's own)
    local py="${REPO_ROOT}/${ROOT}/pyort"
    if [[ -d "${py}/onnxruntime/capi" ]]; then
        local l
        for l in libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so; do
            ln -sfn "${ORT_DIR}/${l}" "${py}/onnxruntime/capi/${l}"
        done
        echo "${py}"
    fi
}

pycheck_quick() {
    cuda_ready || return 3
    local pp
    pp="$(pyort_env)"
    PYTHONPATH="${pp}${PYTHONPATH:+:${PYTHONPATH}}" LD_LIBRARY_PATH="$(ld_path)" timeout 90 python3 - <<'PY'
import numpy as np, onnxruntime as ort
print("onnxruntime", ort.__version__, ort.__file__, ort.get_available_providers())
s = ort.InferenceSession("models/cnn_lstm/1/model.onnx", providers=["CUDAExecutionProvider"])
print("session providers:", s.get_providers())
print(s.run(None, {"input": np.zeros((2, 64, 16), np.float32)})[0])
PY
}

step_pycheck() {
    cuda_ready || return 3
    local pp total
    pp="$(pyort_env)"
    [[ -n "${pp}" ]] || python3 -c 'import onnxruntime as o, sys; sys.exit("CUDAExecutionProvider" not in o.get_available_providers())' 2>/dev/null ||
        { echo "no onnxruntime-gpu Python package (pyort payload) here"; return 3; }
    total="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 || true)"
    PYTHONPATH="${pp}${PYTHONPATH:+:${PYTHONPATH}}" LD_LIBRARY_PATH="$(ld_path)" timeout -k 5 240 python3 - "${RES}/pycheck.json" "${total:-0}" <<'PY'
import json, sys, time
import numpy as np
out, total_mib = sys.argv[1], int(sys.argv[2])
t0 = time.time()
import onnxruntime as ort
res = {"version": ort.__version__, "file": ort.__file__, "providers": ort.get_available_providers(),
       "import_s": time.time() - t0, "configs": [], "effective_options": {}}
ref = json.load(open("models/cnn_lstm.reference.json"))
x = np.array(ref["input"]["data"], np.float32).reshape(ref["input"]["shape"])
y_ref = np.array(ref["output"]["data"], np.float64).reshape(ref["output"]["shape"])
rng = np.random.default_rng(7)
xr = rng.uniform(-1, 1, (1024, 64, 16)).astype(np.float32)
model = "models/cnn_lstm/1/model.onnx"
limit = {"gpu_mem_limit": str(int(total_mib * 1024 * 1024 * 0.8))} if total_mib > 0 else {}
configs = [
    ("cpu", ["CPUExecutionProvider"]),
    ("cuda-ort-defaults", [("CUDAExecutionProvider", {"device_id": "0"})]),
    ("cuda-kbatch-tuned", [("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "1", "cudnn_conv_algo_search": "EXHAUSTIVE",
                                                       "arena_extend_strategy": "kSameAsRequested", **limit})]),
    ("cuda-tf32-off", [("CUDAExecutionProvider", {"device_id": "0", "use_tf32": "0"})]),
    ("cuda-heuristic-search", [("CUDAExecutionProvider", {"device_id": "0", "cudnn_conv_algo_search": "HEURISTIC"})]),
]
cpu_out = None
for name, providers in configs:
    c = {"name": name}
    try:
        so = ort.SessionOptions()
        t = time.time()
        s = ort.InferenceSession(model, so, providers=providers)
        c["create_s"] = time.time() - t
        c["used"] = s.get_providers()
        t = time.time(); y = s.run(None, {"input": x})[0]; c["first_run_ms"] = (time.time() - t) * 1e3
        c["rel_l2_ref"] = float(np.linalg.norm(y.astype(np.float64) - y_ref) / np.linalg.norm(y_ref))
        extra = []
        for b in (1, 64, 1024):
            xb = xr[:b]
            t = time.time(); s.run(None, {"input": xb}); first = time.time() - t
            steady = []
            for _ in range(5):
                t = time.time(); s.run(None, {"input": xb}); steady.append(time.time() - t)
            extra.append((first - min(steady)) * 1e3)
        c["first_call_extra_ms"] = extra
        yr = s.run(None, {"input": xr})[0]
        if name == "cpu":
            cpu_out = yr
        c["max_abs_vs_cpu"] = float(np.max(np.abs(yr - cpu_out))) if cpu_out is not None else float("nan")
        if name.startswith("cuda"):
            res["effective_options"][name] = s.get_provider_options().get("CUDAExecutionProvider", {})
        del s
    except Exception as e:
        c["error"] = f"{type(e).__name__}: {e}"
    res["configs"].append(c)
    print(json.dumps(c))
json.dump(res, open(out, "w"), indent=1)
print(json.dumps(res["effective_options"], indent=1))
PY
}

step_pipeline() {
    cuda_ok || return 3
    local bin="${REPO_ROOT}/${ROOT}/bin/pipeline-bench"
    if [[ ! -x "${bin}" ]]; then
        echo "no prebuilt pipeline bench here (cargo is not on the device): prepare builds it with"
        echo "  cargo bench --no-run --features cuda -p kbatch-core --bench pipeline  (target/release/deps/pipeline-*)"
        return 3
    fi
    # The bench finds the models through the repository path it was built in (env!("CARGO_MANIFEST_DIR")).
    local built
    built="$(helper meta "${STATE}/manifest.tsv" repo_root)"
    if [[ -n "${built}" && ! -e "${built}/models/cnn_lstm" ]]; then
        if [[ ! -e "${built}" ]]; then
            mkdir -p "$(dirname "${built}")" && ln -s "${REPO_ROOT}" "${built}"
            echo "linked ${built} -> ${REPO_ROOT} (the bench's compiled-in model path)"
        else
            echo "${built} exists here but has no models/: the bench will not find its model"
            return 1
        fi
    fi
    # Config::default() is device cpu; the bench runs on CUDA only if it reads KBATCH_BENCH_DEVICE.
    local device=cpu
    if grep -a -q KBATCH_BENCH_DEVICE "${bin}"; then device=cuda; fi
    fact pipeline_device "${device}$([[ ${device} == cpu ]] && echo ' (the bench has no KBATCH_BENCH_DEVICE hook: Config::default() runs on CPU)')"
    watch_start pipeline
    local rc=0
    KBATCH_BENCH_DEVICE=cuda CARGO_TARGET_DIR="${REPO_ROOT}/${RES}/criterion" ORT_DYLIB_PATH="$(ort_lib)" LD_LIBRARY_PATH="$(ld_path)" \
        timeout -k 5 240 "${bin}" --bench >"${RES}/pipeline.log" 2>&1 || rc=$?
    watch_stop pipeline pipeline
    tail -25 "${RES}/pipeline.log"
    return "${rc}"
}

serve_one() { # label rate max_batch [demo args...]
    local label="$1" rate="$2" max="$3" port=19090 rc=0 i=0
    shift 3
    local queue=$((max * 16 > 1000 ? max * 16 : 1000))
    watch_start "${label}"
    kb_argv
    RUST_LOG="warn,kbatch_core::inference=info" timeout -k 5 $((SERVE_SECS + 90)) "${KB[@]}" demo "$@" \
        --rate "${rate}" --duration "${SERVE_SECS}s" --warmup-secs 5 \
        --set model.device=cuda --set http.bind=127.0.0.1 --set "http.port=${port}" \
        --set "batch_processing.max_batch_size=${max}" --set "batch_processing.max_queue_size=${queue}" \
        --report "${RES}/${label}.json" >"${RES}/${label}.out" 2>"${RES}/${label}.err" &
    local pid=$!
    while kill -0 "${pid}" 2>/dev/null; do
        sleep 2
        i=$((i + 1))
        kb stats --endpoint "127.0.0.1:${port}" --json >"${RES}/${label}.stats-$(printf '%03d' "${i}").json" 2>/dev/null || rm -f "${RES}/${label}.stats-$(printf '%03d' "${i}").json"
    done
    wait "${pid}" || rc=$?
    watch_stop "${label}" kbatch
    fact "device_log_${label}" "$(grep -m1 -oE 'running on CUDA|falling back to CPU[^"]*' "${RES}/${label}.err" || echo 'no device line')"
    tail -40 "${RES}/${label}.out"
    [[ ${rc} -eq 0 ]] || log "${label}: demo exited ${rc}: $(tail -3 "${RES}/${label}.err" | tr '\n' ' ')"
    return "${rc}"
}

step_serve() {
    cuda_ok || return 3
    local spec rc=0
    for spec in ${SERVE_SPECS}; do
        serve_one "serve-mock-r${spec%%:*}-b${spec##*:}" "${spec%%:*}" "${spec##*:}" --mock || rc=1
    done
    return "${rc}"
}

step_serve_kafka() {
    cuda_ok || return 3
    [[ -d "${ROOT}/kafka/libs" ]] || { echo "no Kafka here (prepare with KAFKA=1 and send kafka-1)"; return 3; }
    command -v java >/dev/null || { echo "no java on the device: Kafka cannot run here"; return 3; }
    local spec="${SERVE_SPECS%% *}"
    serve_one "serve-kafka-r${spec%%:*}-b${spec##*:}" "${spec%%:*}" "${spec##*:}" --kafka-home "${REPO_ROOT}/${ROOT}/kafka"
}

# step estimates (seconds) for the budget
step_need() {
    case "$1" in
        check-cpu) echo 20 ;; check-cuda) echo 40 ;; pycheck) echo 60 ;; ttfi) echo 60 ;;
        sweep-cpu) echo $(($(wc -w <<<"${CPU_THREADS}") * (11 * (SPS + 1) + 10))) ;;
        sweep-cuda | sweep-cuda-default) echo $((11 * (SPS + 1) + 20)) ;;
        serve) echo $(($(wc -w <<<"${SERVE_SPECS}") * (SERVE_SECS + 30))) ;;
        serve-kafka) echo $((SERVE_SECS + 45)) ;;
        pipeline) echo 100 ;; *) echo 30 ;;
    esac
}

DEADLINE=0
run_step() {
    local s="$1" need left rc=0
    local fn="step_${s//-/_}"
    declare -F "${fn}" >/dev/null || die "unknown step ${s} (steps: ${STEPS_DEFAULT})"
    if [[ -f "${STATE}/step-${s}.done" && "${FORCE:-0}" != 1 ]]; then
        log "step ${s}: done in an earlier call (FORCE=1 repeats it)"
        return 0
    fi
    need="$(step_need "${s}")"
    left=$((DEADLINE - $(date +%s)))
    if ((left < need)); then
        log "step ${s}: skipped, ${left} s left of GPU_BUDGET_S and it needs ~${need} s"
        echo "skipped (budget: ${left} s left, needs ~${need} s)" >"${RES}/step-${s}.status"
        return 0
    fi
    log "step ${s} (~${need} s)"
    local t0
    t0="$(date +%s)"
    set +e
    (set -e; "${fn}") 2>&1 | tee "${RES}/step-${s}.log"
    rc="${PIPESTATUS[0]}"
    set -e
    case "${rc}" in
        0) touch "${STATE}/step-${s}.done"; echo "ok ($(($(date +%s) - t0)) s)" >"${RES}/step-${s}.status" ;;
        3) echo "not ready: $(tail -1 "${RES}/step-${s}.log")" >"${RES}/step-${s}.status" ;;
        *) echo "FAILED rc=${rc} ($(($(date +%s) - t0)) s): $(tail -1 "${RES}/step-${s}.log")" >"${RES}/step-${s}.status" ;;
    esac
    log "step ${s}: $(cat "${RES}/step-${s}.status")"
}

finish() {
    local rc=$?
    watch_stop "" || true
    mkdir -p "${OUT_DIR}" "${RES}"
    fact smi_ms "${SMI_MS}"
    [[ -f "${STATE}/manifest.tsv" ]] && fact build_id "$(awk -F'\t' '$1 == "id" { print $2 }' "${STATE}/manifest.tsv")"
    helper summary "${RES}" "${OUT_DIR}/summary.md" >/dev/null 2>&1 || echo "(summary failed)" >"${OUT_DIR}/summary.md"
    helper bundle "${OUT_DIR}/results.tgz" "${RES}" 2>/dev/null || true
    [[ -f "${DEV}/device.log" ]] && cp "${DEV}/device.log" "${OUT_DIR}/device.log"
    echo "================ summary (also \$OUT/summary.md; everything in \$OUT/results.tgz)"
    cat "${OUT_DIR}/summary.md"
    helper status "${DEV}" 2>/dev/null || true
    rm -f "${HELPER}"
    exit "${rc}"
}

cmd_run() {
    mkdir -p "${RES}" "${STATE}"
    DEADLINE=$(($(date +%s) + GPU_BUDGET_S))
    setup_env
    local steps="${*:-${STEPS:-${STEPS_DEFAULT}}}" s
    steps="${steps//,/ }"
    for s in ${steps}; do
        run_step "${s}"
        helper bundle "${OUT_DIR}/results.tgz" "${RES}" 2>/dev/null || true   # what is done so far, should the call be cut
    done
}

cmd_device() { # CALL: the one command of each device call
    local call="${1:?usage: gpu-bench.sh device CALL (main-1, main-2, delta-1, ...)}"
    mkdir -p "${DEV}" "${RES}" "${STATE}" "${OUT_DIR}"
    exec > >(tee -a "${DEV}/device.log") 2>&1
    trap finish EXIT
    log "device call ${call} at $(date -u +%FT%TZ) in $(pwd -P), budget ${GPU_BUDGET_S} s"
    [[ -f "${STATE}/probe.done" ]] || cmd_probe
    cmd_receive "${call}"
    cmd_run
}

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

main() {
    local cmd="${1:-}"
    init_helper
    [[ $# -gt 0 ]] && shift
    case "${cmd}" in
        prepare) cmd_prepare ;;
        prepare-build) cmd_prepare_build ;;
        prepare-libs) cmd_prepare_libs ;;
        prepare-pack) cmd_prepare_pack; cmd_sizes ;;
        sizes) cmd_sizes ;;
        clean) cmd_clean ;;
        probe) cmd_probe ;;
        receive) cmd_receive "$@" ;;
        status) helper status "${DEV}" ;;
        run) mkdir -p "${OUT_DIR}"; trap finish EXIT; cmd_run "$@" ;;
        device) cmd_device "$@" ;;
        summary) helper summary "${RES}" "${OUT_DIR}/summary.md" ;;
        report)
            local tgz="${1:?usage: gpu-bench.sh report results.tgz}" dir
            dir="${STAGE}/report-$(date +%Y%m%d-%H%M%S)"
            mkdir -p "${dir}"
            tar -xzf "${tgz}" -C "${dir}"
            helper summary "${dir}/results" "${dir}/summary.md"
            log "extracted to ${dir}"
            ;;
        reset) rm -rf "${DEV}"; log "removed ${DEV}" ;;
        -h | --help | help | "") usage 0 ;;
        *) log "unknown command ${cmd}"; usage 1 ;;
    esac
}

main "$@"
