/*
 * warmcache-csi: the plugin binary. One binary, three modes: `controller`
 * (CreateVolume lists sources), `node` (fills copies and mounts them), or
 * `all` for a single-process set-up (the demo, csi-sanity).
 */
#include "base/log.h"
#include "base/macros.h"
#include "base/units.h"
#include "csi/csi.h"
#include "cache/source.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: warmcache-csi [options]\n"
            "  --endpoint=unix:///csi/csi.sock   CSI socket (env CSI_ENDPOINT)\n"
            "  --mode=all|controller|node        services to run (default all)\n"
            "  --node-id=NAME                    node name (default: env NODE_NAME, else hostname)\n"
            "  --store-root=DIR                  node store directory; the mount point in device/raid0 mode\n"
            "                                    (default /var/lib/warmcache)\n"
            "  --store-mode=directory|device|raid0  how the store gets its disk (default directory)\n"
            "  --store-device=DEV                device mode: the disk\n"
            "  --disk-glob=PATTERN               raid0: instance-store disks (default " DISK_DEFAULT_GLOB ")\n"
            "  --adopt=DIR[:DIR]                 raid0: use an array the node already mounted here\n"
            "                                    (default " DISK_DEFAULT_ADOPT "; empty to never adopt)\n"
            "  --raid-array=DEV                  raid0: the md device to create (default " DISK_DEFAULT_ARRAY ")\n"
            "  --force-format                    format disks even if they hold data\n"
            "  --mdadm=PATH --mkfs=PATH          programs to run (default mdadm, mkfs.xfs)\n"
            "  --state-dir=DIR                   controller volume registry (default: memory only)\n"
            "  --fill-wait=SECONDS               node: wait this long for a fill, then ABORTED with progress (default 100)\n"
            "  --evict-high=PERCENT              node: evict unused copies when a fill would take the store above (default 80)\n"
            "  --evict-low=PERCENT               node: ... down to this (default 70)\n"
            "  --s3-throughput=GBPS              node: the node's network bandwidth to S3, in Gb/s; S3 requests\n"
            "                                    in flight on the node: one per 85 MB/s (default 100: 148)\n"
            "  --s3-connections=N                node: S3 requests in flight on the node, shared by its fills\n"
            "                                    (instead of --s3-throughput)\n"
            "  --part-size=MIB                   node: bytes per request of a fill, in MiB (default 8, and\n"
            "                                    more for files over 512 MiB: at most 64 parts, up to 64)\n"
            "  --s3-stall-timeout=SECONDS        cut and retry an S3 transfer under 1 KiB/s this long (default 30)\n"
            "  --kube=auto|off|URL               Kubernetes API: auto = the pod's service account when in a\n"
            "                                    cluster (default); a URL for development, with:\n"
            "  --kube-token-file=F --kube-ca-file=F  bearer token and CA bundle for --kube=URL\n"
            "  --metrics-address=[HOST]:PORT     serve Prometheus metrics at /metrics (default: off)\n"
            "  --allowed-sources=LIST            URL prefixes sources must lie under, comma-separated, such as\n"
            "                                    s3://,file:///fsx/ (default s3://: every bucket, no node path)\n"
            "  --inline-sources=LIST             node: prefixes inline (csi:) volumes may use (default: none,\n"
            "                                    inline volumes are refused)\n"
            "  --inline-node-credentials         node: inline s3:// volumes without a Secret may sign with the\n"
            "                                    node's own credentials\n"
            "  --kubelet-dir=DIR                 never a source (default /var/lib/kubelet)\n"
            "  --list-timeout=SECONDS            give up listing a source after this long (default 900)\n"
            "  --scratch-size=SIZE               node: bound of a writable layer a volume does not size\n"
            "                                    (default 1Gi)\n"
            "  --mkfs-ext4=PATH                  node: formats writable layers where the store has no project\n"
            "                                    quotas (default mkfs.ext4)\n"
            "  --kube-watch-timeout=SECONDS      node: length of one PV watch (default 300)\n"
            "  --kubelet-registration-dir=DIR    node: register with kubelet by a socket in DIR (its\n"
            "                                    plugins_registry), instead of a node-driver-registrar sidecar\n"
            "  --kubelet-registration-path=PATH  node: the CSI socket as kubelet sees it (a host path)\n"
            "  --max-calls=N                     concurrent calls (default 64)\n"
            "  --shutdown-grace=SECONDS          time given to in-flight calls on SIGTERM (default 30)\n"
            "  --log-level=debug|info|warn|error (default info)\n"
            "  --core-dumps                      allow core dumps (off by default: the process holds S3\n"
            "                                    credentials while it fills)\n"
            "  --version\n");
}

/* A core file would hold whatever credentials the process has at the time
 * (the chain's, a fill's node-stage Secret): no core file, and no ptrace
 * attach by anything less than root with CAP_SYS_PTRACE. */
static int no_core_dumps(void)
{
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) < 0)
        return -1;
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static int on_ready(void *ctx)
{
    struct csi_ctx *c = ctx;
    atomic_store(&c->ready, 1);
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *ret)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < lo || v > hi)
        return -EINVAL;
    *ret = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    /* Every thread (fills, the Kubernetes reporter) inherits this mask: only
     * the server's signal thread takes SIGTERM/SIGINT, and shuts down cleanly. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    static const struct option opts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"mode", required_argument, NULL, 'm'},
        {"node-id", required_argument, NULL, 'n'},  {"store-root", required_argument, NULL, 's'},
        {"state-dir", required_argument, NULL, 'd'}, {"max-calls", required_argument, NULL, 'c'},
        {"shutdown-grace", required_argument, NULL, 'g'}, {"log-level", required_argument, NULL, 'l'},
        {"version", no_argument, NULL, 'V'},         {"help", no_argument, NULL, 'h'},
        {"fill-wait", required_argument, NULL, 'w'}, {"evict-high", required_argument, NULL, 'H'},
        {"evict-low", required_argument, NULL, 'L'}, {"s3-connections", required_argument, NULL, 'C'},
        {"s3-throughput", required_argument, NULL, 'B'},
        {"core-dumps", no_argument, NULL, 'Z'},
        {"part-size", required_argument, NULL, 'P'}, {"kube", required_argument, NULL, 'K'},
        {"kube-token-file", required_argument, NULL, 'T'}, {"kube-ca-file", required_argument, NULL, 'Q'},
        {"metrics-address", required_argument, NULL, 'O'}, {"s3-stall-timeout", required_argument, NULL, 'W'},
        {"store-mode", required_argument, NULL, 'M'}, {"store-device", required_argument, NULL, 'D'},
        {"disk-glob", required_argument, NULL, 'G'}, {"adopt", required_argument, NULL, 'A'},
        {"raid-array", required_argument, NULL, 'R'}, {"force-format", no_argument, NULL, 'F'},
        {"mdadm", required_argument, NULL, 'X'},     {"mkfs", required_argument, NULL, 'Y'},
        {"allowed-sources", required_argument, NULL, 1000}, {"inline-sources", required_argument, NULL, 1001},
        {"inline-node-credentials", no_argument, NULL, 1002}, {"kubelet-dir", required_argument, NULL, 1003},
        {"list-timeout", required_argument, NULL, 1004}, {"scratch-size", required_argument, NULL, 1005},
        {"mkfs-ext4", required_argument, NULL, 1006}, {"kubelet-registration-dir", required_argument, NULL, 1008},
        {"kubelet-registration-path", required_argument, NULL, 1009}, {"kube-watch-timeout", required_argument, NULL, 1007},
        {0},
    };
    const char *endpoint = getenv("CSI_ENDPOINT"), *mode = "all";
    struct csi_config cfg = {.node_id = getenv("NODE_NAME"), .fill_wait_s = 100, .high_pct = 80, .low_pct = 70,
                             .disks = {.mode = STORE_DIRECTORY, .path = "/var/lib/warmcache",
                                       .disk_glob = DISK_DEFAULT_GLOB, .adopt = DISK_DEFAULT_ADOPT,
                                       .array = DISK_DEFAULT_ARRAY, .mdadm = "mdadm", .mkfs = "mkfs.xfs"}};
    struct rpc_server_config rc = {.max_calls = 64, .max_message_bytes = 4 << 20, .shutdown_grace_s = 30,
                                   .ready = on_ready};
    int o, connections_given = 0, core_dumps = 0;
    const char *registration_dir = NULL;
    char registration_socket[4200];
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        enum log_level lvl;
        switch (o) {
        case 'e': endpoint = optarg; break;
        case 'm': mode = optarg; break;
        case 'n': cfg.node_id = optarg; break;
        case 's': cfg.disks.path = optarg; break;
        case 'D': cfg.disks.device = optarg; break;
        case 'G': cfg.disks.disk_glob = optarg; break;
        case 'A': cfg.disks.adopt = optarg; break;
        case 'R': cfg.disks.array = optarg; break;
        case 'F': cfg.disks.force_format = 1; break;
        case 'X': cfg.disks.mdadm = optarg; break;
        case 'Y': cfg.disks.mkfs = optarg; break;
        case 'M':
            if (store_mode_parse(optarg, &cfg.disks.mode) < 0) {
                fprintf(stderr, "warmcache-csi: --store-mode wants directory, device or raid0\n");
                return 2;
            }
            break;
        case 'd': cfg.state_dir = optarg; break;
        case 'K': cfg.kube = optarg; break;
        case 'T': cfg.kube_token_file = optarg; break;
        case 'Q': cfg.kube_ca_file = optarg; break;
        case 'O': cfg.metrics_address = optarg; break;
        case 'W': {
            int v;
            if (parse_int(optarg, 1, 3600, &v) < 0) {
                fprintf(stderr, "warmcache-csi: --s3-stall-timeout wants seconds from 1 to 3600\n");
                return 2;
            }
            cfg.s3_stall_s = (unsigned)v;
            break;
        }
        case 'c':
            if (parse_int(optarg, 1, 4096, &rc.max_calls) < 0) {
                fprintf(stderr, "warmcache-csi: --max-calls wants a number from 1 to 4096\n");
                return 2;
            }
            break;
        case 'g':
            if (parse_int(optarg, 0, 3600, &rc.shutdown_grace_s) < 0) {
                fprintf(stderr, "warmcache-csi: --shutdown-grace wants seconds from 0 to 3600\n");
                return 2;
            }
            break;
        case 'l':
            if (log_parse_level(optarg, &lvl) < 0) {
                fprintf(stderr, "warmcache-csi: --log-level wants debug, info, warn or error\n");
                return 2;
            }
            log_set_level(lvl);
            break;
        case 'w':
        case 'H':
        case 'L': {
            int *dst = o == 'w' ? &cfg.fill_wait_s : o == 'H' ? &cfg.high_pct : &cfg.low_pct;
            if (parse_int(optarg, o == 'w' ? 0 : 1, o == 'w' ? 3600 : 100, dst) < 0) {
                fprintf(stderr, "warmcache-csi: --%s: \"%s\" is out of range\n",
                        o == 'w' ? "fill-wait" : o == 'H' ? "evict-high" : "evict-low", optarg);
                return 2;
            }
            break;
        }
        case 'C':
        case 'P': {
            int v;
            if (parse_int(optarg, 1, o == 'C' ? 1024 : 256, &v) < 0) {
                fprintf(stderr, "warmcache-csi: --%s wants a number from 1 to %d\n",
                        o == 'C' ? "s3-connections" : "part-size", o == 'C' ? 1024 : 256);
                return 2;
            }
            if (o == 'C') {
                cfg.s3_connections = (unsigned)v;
                connections_given = 1;
            }
            else
                cfg.part_size = (uint64_t)v << 20;
            break;
        }
        case 'B': {
            int v;
            if (parse_int(optarg, 1, 3200, &v) < 0) {
                fprintf(stderr, "warmcache-csi: --s3-throughput wants Gb/s from 1 to 3200\n");
                return 2;
            }
            if (!connections_given)
                cfg.s3_connections = source_connections_for_gbps(v);
            break;
        }
        case 'Z': core_dumps = 1; break;
        case 1000: cfg.allowed_sources = optarg; break;
        case 1001: cfg.inline_sources = optarg; break;
        case 1002: cfg.inline_node_credentials = 1; break;
        case 1003: cfg.kubelet_dir = optarg; break;
        case 1006: cfg.mkfs_ext4 = optarg; break;
        case 1008: registration_dir = optarg; break;
        case 1009: cfg.kubelet_endpoint = optarg; break;
        case 1004:
        case 1007: {
            int v;
            if (parse_int(optarg, 1, 86400, &v) < 0) {
                fprintf(stderr, "warmcache-csi: --%s wants seconds from 1 to 86400\n",
                        o == 1004 ? "list-timeout" : "kube-watch-timeout");
                return 2;
            }
            *(o == 1004 ? &cfg.list_timeout_s : &cfg.kube_watch_timeout_s) = (unsigned)v;
            break;
        }
        case 1005:
            if (parse_bytes(optarg, &cfg.scratch_bytes) < 0 || cfg.scratch_bytes == 0) {
                fprintf(stderr, "warmcache-csi: --scratch-size wants a size such as 1Gi or 500Mi\n");
                return 2;
            }
            break;
        case 'V': printf("warmcache-csi %s (%s)\n", WC_VERSION, DRIVER_NAME); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !endpoint) {
        usage(stderr);
        return 2;
    }
    if (cfg.low_pct > cfg.high_pct) {
        fprintf(stderr, "warmcache-csi: --evict-low (%d) is above --evict-high (%d): eviction starts above the high "
                "mark and stops at the low one\n", cfg.low_pct, cfg.high_pct);
        return 2;
    }
    cfg.controller = streq(mode, "all") || streq(mode, "controller");
    cfg.node = streq(mode, "all") || streq(mode, "node");
    if (!cfg.controller && !cfg.node) {
        fprintf(stderr, "warmcache-csi: --mode wants all, controller or node\n");
        return 2;
    }
    rc.endpoint = endpoint;
    if (!registration_dir != !cfg.kubelet_endpoint) {
        fprintf(stderr, "warmcache-csi: --kubelet-registration-dir and --kubelet-registration-path go together\n");
        return 2;
    }
    if (registration_dir) {
        snprintf(registration_socket, sizeof(registration_socket), "%s/%s-reg.sock", registration_dir, DRIVER_NAME);
        rc.also = registration_socket;
        rc.also_methods = "/pluginregistration.";
    }
    if (!core_dumps && no_core_dumps() < 0) {
        fprintf(stderr, "warmcache-csi: cannot turn core dumps off: %s\n", strerror(errno));
        return 1;
    }

    struct csi_ctx ctx;
    struct wc_error e;
    wc_error_clear(&e);
    int r = csi_ctx_init(&ctx, &cfg, &e);
    if (r == 0) {
        log_json(LOG_INFO, "starting", json_pack("{s:s, s:s, s:s, s:s}", "version", WC_VERSION, "mode", mode,
                                                 "node_id", ctx.node_id, "store_root",
                                                 cfg.node ? ctx.store->root : ""));
        r = rpc_server_run(&rc, csi_services, csi_n_services, csi_handlers, csi_n_handlers, &ctx, &e);
    }
    if (r < 0)
        log_error("%s", e.msg[0] ? e.msg : strerror(-r));
    csi_ctx_fini(&ctx);
    return r < 0 ? 1 : 0;
}
