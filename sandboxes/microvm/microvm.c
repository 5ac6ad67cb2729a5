/* microvm.c: the `microvm` tier: each call in its own virtual machine.
 *
 * The strongest tier: the tool runs on a kernel of its own (guest/), so no host
 * kernel interface is reachable from it at all; the host side is one QEMU process
 * (`-M microvm`: no PCI, no ACPI, no firmware tables, virtio-mmio only, a network
 * device only with network.egress) that itself runs jailed in the container tier's sandbox (vm.c).
 * KVM is used where /dev/kvm works, QEMU's TCG emulation otherwise (policy microvm.accel).
 *
 * When a policy loads, its guest image is built (image.c), one guest is booted cold
 * and saved with QMP `migrate` to a snapshot file, and a warm pool (sandboxes/common)
 * restores guests from it ahead of demand: a call on a pooled guest pays for the tool
 * only.
 * Policies whose guests are identical (same image, memory, vCPUs, accelerator) share
 * one snapshot, found by hash, so a reload that changes nothing boots nothing new.
 * Every guest serves one call and is destroyed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <linux/kvm.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "microvm.h"

#ifndef GATE_MICROVM_KERNEL
#define GATE_MICROVM_KERNEL "/var/cache/gatehouse/microvm/vmlinux"
#endif

struct mvm_tier mvm;
static bool tier_ready;

static pthread_mutex_t guests_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mvm_guest *guests; /* every guest configuration in use, shared by hash */

/* ---- init ------------------------------------------------------------------------------ */

static bool executable(const char *path)
{
    struct stat st;
    return path[0] && stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int find_files(struct gate_error *err)
{
    static const char *const qemus[] = {"/usr/bin/qemu-system-x86_64",
                                        "/usr/local/bin/qemu-system-x86_64"};
    for (size_t i = 0; i < 2 && !mvm.qemu[0]; i++)
        if (executable(qemus[i])) snprintf(mvm.qemu, sizeof(mvm.qemu), "%s", qemus[i]);
    if (!mvm.qemu[0])
        return gate_err(err, GATE_E_SANDBOX,
                        "qemu-system-x86_64 not installed (Debian package: qemu-system-x86)");
    struct stat st;
    if (stat(GATE_MICROVM_KERNEL, &st) < 0 || !S_ISREG(st.st_mode))
        return gate_err(err, GATE_E_SANDBOX,
                        "the guest kernel is not built: %s is missing (run "
                        "sandboxes/microvm/guest/build.sh)",
                        GATE_MICROVM_KERNEL);
    snprintf(mvm.kernel, sizeof(mvm.kernel), "%s", GATE_MICROVM_KERNEL);
    snprintf(mvm.kernel_dir, sizeof(mvm.kernel_dir), "%s", GATE_MICROVM_KERNEL);
    dirname(mvm.kernel_dir);
    if (sbx_find_libexec("gatehouse-microvm-init", mvm.agent, sizeof(mvm.agent)) < 0)
        return gate_err(err, GATE_E_SANDBOX,
                        "gatehouse-microvm-init not found (looked beside the gatehouse binary, "
                        "in ../libexec and ../libexec/gatehouse)");
    return 0;
}

/* Hardware virtualisation: /dev/kvm must open, speak the stable API, and be open to the jailed
 * QEMU's unprivileged uid (systemd's default mode 0666; the jail cannot add groups). */
static void probe_kvm(void)
{
    struct stat st;
    if (stat("/dev/kvm", &st) == 0 && (st.st_mode & 0006) != 0006) {
        snprintf(mvm.kvm_reason, sizeof(mvm.kvm_reason),
                 "/dev/kvm is mode %o: the jailed QEMU runs as an unprivileged uid and needs 0666",
                 (unsigned)(st.st_mode & 07777));
        return;
    }
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    int version = fd >= 0 ? ioctl(fd, KVM_GET_API_VERSION, 0) : -1;
    int e = errno;
    if (fd >= 0) close(fd);
    mvm.has_kvm = version == KVM_API_VERSION;
    if (fd < 0)
        snprintf(mvm.kvm_reason, sizeof(mvm.kvm_reason), "/dev/kvm: %s", strerror(e));
    else if (!mvm.has_kvm)
        snprintf(mvm.kvm_reason, sizeof(mvm.kvm_reason), "/dev/kvm answers API version %d",
                 version);
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                char child[PATH_MAX + 256];
                snprintf(child, sizeof(child), "%s/%s", path, de->d_name);
                if (de->d_type == DT_DIR)
                    remove_tree(child);
                else
                    unlink(child);
            }
        closedir(d);
    }
    rmdir(path);
}

static int microvm_init(const struct sbx_config *cfg, struct gate_error *err)
{
    if (geteuid() != 0)
        return gate_err(err, GATE_E_SANDBOX,
                        "the microvm tier needs a root gateway (it jails QEMU in namespaces "
                        "and cgroups)");
    if (find_files(err) < 0) return -1;
    probe_kvm();
    mvm.uid = cfg->tool_uid ? cfg->tool_uid : 65534;
    mvm.gid = cfg->tool_gid ? cfg->tool_gid : 65534;
    /* The jail cannot drop supplementary groups (setgroups is denied in its user namespace),
     * so the gateway holds none. */
    if (getgroups(0, NULL) > 0 && setgroups(0, NULL) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: clearing supplementary groups");
    char state[PATH_MAX];
    if (!realpath(cfg->state_dir, state))
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: state directory %s",
                              cfg->state_dir);
    snprintf(mvm.dir, sizeof(mvm.dir), "%.4000s/microvm", state);
    remove_tree(mvm.dir); /* images and snapshots of a previous run: all rebuilt at load */
    if (mkdir(mvm.dir, 0700) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: mkdir %s", mvm.dir);
    char name[64];
    snprintf(name, sizeof(name), "gatehouse-microvm-%d", (int)getpid());
    if (ct_jail_init(&mvm.jail, name, mvm.uid, mvm.gid, err) < 0 || mvm_reaper_start(err) < 0)
        return -1;
    tier_ready = true;
    return 0;
}

/* ---- guest configurations -------------------------------------------------------------- */

static void guest_free(struct mvm_guest *g)
{
    if (!g) return;
    ct_jail_plan_free(&g->plan);
    sbx_free_strv(g->argv);
    if (g->dir[0]) remove_tree(g->dir);
    free(g);
}

static void guest_unref(struct mvm_guest *g)
{
    if (!g) return;
    pthread_mutex_lock(&guests_lock);
    bool last = --g->refs == 0;
    if (last)
        for (struct mvm_guest **pp = &guests; *pp; pp = &(*pp)->next)
            if (*pp == g) {
                *pp = g->next;
                break;
            }
    pthread_mutex_unlock(&guests_lock);
    if (last) guest_free(g);
}

/* QEMU's command line for this guest; vm.c appends how it starts (cold, restore, snapshot). */
static char **qemu_argv(const struct policy *p, bool kvm, const char *initrd)
{
    unsigned vcpus = (p->limits.cpu_millis + 999) / 1000;
    if (vcpus < 1) vcpus = 1;
    if (vcpus > MVM_MAX_VCPUS) vcpus = MVM_MAX_VCPUS;
    char mem[32], smp[16], tcg[48];
    snprintf(mem, sizeof(mem), "%llu", (unsigned long long)p->limits.memory_mb);
    snprintf(smp, sizeof(smp), "%u", vcpus);
    snprintf(tcg, sizeof(tcg), "tcg,tb-size=%d", MVM_TB_MB);
    const char *args[] = {
        mvm.qemu,
        /* ACPI off: this kernel then finds the virtio-mmio devices on its command line. */
        "-M", "microvm,acpi=off", "-accel", kvm ? "kvm" : tcg, "-cpu", kvm ? "host" : "max", "-m",
        mem, "-smp", smp, "-kernel", mvm.kernel, "-initrd", initrd,
        /* reboot=t and -no-reboot: the agent's reboot, or a panic, ends QEMU. Emulated timers
         * are only as punctual as the host's scheduler: no_timer_check and noapictimer skip the
         * boot-time checks that fail (or panic) on a loaded host, and cost ~0.3 s under TCG. */
        "-append",
        "console=ttyS0 quiet panic=-1 reboot=t random.trust_cpu=on no_timer_check noapictimer",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-chardev",
        "socket,id=console,fd=3", "-serial", "chardev:console", "-device", "virtio-serial-device",
        "-chardev", "stdio,id=gate,signal=off", "-device", "virtserialport,chardev=gate,name=gate",
        /* QEMU's own filter, on top of the jail's: no exec, no setuid, no scheduler or
         * resource changes, none of the obsolete calls. */
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
        /* network.egress: a virtio NIC on QEMU's user-mode stack (slirp), which makes each of
         * the guest's connections and datagrams with QEMU's own host sockets, in the host's
         * namespace, inside the jail's cgroup: the BPF programs decide every one of them as
         * they do for any tool (the guest is 10.0.2.15, the host's 127.0.0.1 is 10.0.2.2, the
         * resolver 10.0.2.3). Without egress: no NIC and an empty namespace. */
        "-netdev", "user,id=net0,ipv6=off", "-device", "virtio-net-device,netdev=net0", NULL};
    size_t n = sizeof(args) / sizeof(args[0]);
    if (p->network != NETWORK_EGRESS) n -= 4;
    char **v = calloc(n, sizeof(char *));
    for (size_t i = 0; v && i + 1 < n; i++)
        if (!(v[i] = strdup(args[i]))) {
            sbx_free_strv(v);
            return NULL;
        }
    return v;
}

static int write_image(const char *path, const struct gate_buf *img, struct gate_error *err)
{
    /* Readable by the jailed QEMU (the tool uid): the directory above is the only way in. */
    autoclose int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || gate_write_all(fd, img->data, img->len) < 0)
        return gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: write %s", path);
    return 0;
}

/* Give the new guest g (named by key) its directory, image, jail plan and snapshot. Called under
 * guests_lock, so two loads of one guest never race for its directory. */
static int guest_create(struct mvm_guest *g, const struct policy *p, bool kvm,
                        const struct gate_buf *img, struct gate_error *err)
{
    g->kvm = kvm;
    snprintf(g->dir, sizeof(g->dir), "%.3900s/g-%.16s", mvm.dir, g->key);
    snprintf(g->initrd, sizeof(g->initrd), "%.3900s/initrd.cpio", g->dir);
    snprintf(g->snapshot, sizeof(g->snapshot), "%.3900s/snapshot", g->dir);
    for (size_t i = 0; g->argv[i]; i++)
        if (strcmp(g->argv[i], "@") == 0) {
            char *path = strdup(g->initrd);
            if (!path) return gate_err(err, GATE_E_NOMEM, "out of memory");
            free(g->argv[i]);
            g->argv[i] = path;
        }
    g->vmm_limits = (struct policy_limits){
        .memory_mb = p->limits.memory_mb + MVM_VMM_OVERHEAD_MB,
        .pids = MVM_VMM_PIDS,
        .cpu_millis = p->limits.cpu_millis,
    };
    char *ro[] = {"/usr", mvm.kernel_dir, g->dir, NULL};
    if (mkdir(g->dir, 0755) < 0) {
        gate_err_errno(err, GATE_E_SANDBOX, errno, "microvm: mkdir %s", g->dir);
        g->dir[0] = '\0'; /* not ours to remove */
        return -1;
    }
    autofree char *resolv = NULL;
    struct ct_jail_net net = {.host = p->network == NETWORK_EGRESS};
    if (net.host && !(net.resolv = resolv = sbx_net_resolv_conf(p, err))) return -1;
    if (write_image(g->initrd, img, err) < 0 ||
        ct_jail_plan(mvm.qemu, ro, NULL, &net, &g->plan, err) < 0)
        return -1;
    g->plan.dev_kvm = kvm;
    return mvm_snapshot(g, err);
}

/* The guest for p: an existing identical one, or a new one with its image and snapshot. Its
 * key hashes everything that makes guests differ: the image, QEMU's command line (with the
 * image's path left out as "@": the path is named by the key) and the jail's CPU quota. */
static int guest_get(const struct policy *p, bool kvm, struct mvm_guest **out,
                     struct gate_error *err)
{
    struct gate_buf img = {0};
    if (mvm_image_build(p, &img, err) < 0) return -1;
    struct mvm_guest *g = calloc(1, sizeof(*g));
    if (!g || !(g->argv = qemu_argv(p, kvm, "@"))) {
        gate_buf_free(&img);
        guest_free(g);
        return gate_err(err, GATE_E_NOMEM, "out of memory");
    }
    struct gate_buf id = {0};
    char img_hash[65];
    gate_sha256_hex(img.data, img.len, img_hash);
    gate_buf_printf(&id, "%s", img_hash);
    for (size_t i = 0; g->argv[i]; i++)
        gate_buf_printf(&id, "\n%s", g->argv[i]);
    gate_buf_printf(&id, "\ncpu_millis %u", (unsigned)p->limits.cpu_millis);
    gate_sha256_hex(id.data ? id.data : "", id.len, g->key);
    gate_buf_free(&id);
    pthread_mutex_lock(&guests_lock);
    struct mvm_guest *have = guests;
    while (have && strcmp(have->key, g->key) != 0)
        have = have->next;
    int rc = 0;
    if (have) {
        have->refs++;
        guest_free(g);
        g = have;
    } else if ((rc = guest_create(g, p, kvm, &img, err)) == 0) {
        g->refs = 1;
        g->next = guests;
        guests = g;
    }
    pthread_mutex_unlock(&guests_lock);
    gate_buf_free(&img);
    if (rc < 0) {
        guest_free(g);
        return -1;
    }
    *out = g;
    return 0;
}

/* ---- prepare, run -------------------------------------------------------------------------- */

/* The warm pool's items: guests restored from the snapshot, each rehearsing the call first. */
static void *pool_spawn(void *ctx, const bool *cancel, struct gate_error *err)
{
    struct mvm_policy *mp = ctx;
    struct mvm_vm *vm = NULL;
    return mvm_vm_start(mp->guest, MVM_RESTORE, &mp->rehearsal, cancel, &vm, err) == 0 ? vm : NULL;
}

static void pool_destroy(void *item)
{
    mvm_vm_destroy(item);
}

static bool pool_dead(void *item)
{
    return mvm_vm_dead(item);
}

static void pool_claimed(void *item)
{
    struct mvm_vm *vm = item;
    ct_jail_cpu_background(&mvm.jail, &vm->proc, false); /* it serves a call now */
}

static const struct sbx_pool_kind pool_kind = {
    .spawn = pool_spawn,
    .destroy = pool_destroy,
    .dead = pool_dead,
    .claimed = pool_claimed,
    .family = "gatehouse_microvm_pool",
    .failures_suffix = "restore_failures_total",
    .help_size = "Restored microVM guests ready for a call.",
    .help_hits = "microVM calls served by a pooled guest.",
    .help_misses = "microVM calls that booted their own guest cold (empty pool).",
    .help_failures = "Pooled microVM guests that failed to restore.",
    .refill_failed_event = "microvm.pool_refill_failed",
    .died_event = "microvm.pool_guest_died",
};

static void state_free(void *state)
{
    struct mvm_policy *mp = state;
    if (!mp) return;
    sbx_pool_stop(&mp->pool);
    guest_unref(mp->guest);
    sbx_net_free(mp->net);
    gate_buf_free(&mp->rehearsal);
    free(mp->seccomp.filter);
    free(mp);
}

static int pick_accel(const struct policy *p, bool *kvm, struct gate_error *err)
{
    switch (p->microvm_accel) {
    case MICROVM_ACCEL_KVM:
        if (!mvm.has_kvm)
            return gate_err(err, GATE_E_POLICY,
                            "microvm.accel: kvm needs hardware virtualisation, which this host "
                            "does not offer (%s)",
                            mvm.kvm_reason);
        *kvm = true;
        return 0;
    case MICROVM_ACCEL_TCG:
        *kvm = false;
        return 0;
    default:
        *kvm = mvm.has_kvm;
        return 0;
    }
}

static int microvm_prepare(struct policy *p, struct gate_error *err)
{
    if (!tier_ready) return gate_err(err, GATE_E_SANDBOX, "microvm: tier not initialised");
    if (!p->command || !p->command[0] || p->command[0][0] != '/')
        return gate_err(err, GATE_E_POLICY, "microvm: command[0] must be an absolute path");
    if (p->limits.memory_mb < MVM_MIN_MEMORY_MB)
        return gate_err(err, GATE_E_POLICY,
                        "limits.memory_mb: a microVM guest needs at least %d MB (its kernel and "
                        "agent live in it)",
                        MVM_MIN_MEMORY_MB);
    bool kvm = false;
    if (pick_accel(p, &kvm, err) < 0) return -1;
    if (p->network == NETWORK_EGRESS && sbx_net_enforced() && !mvm.jail.cg.has_unified &&
        mvm.jail.cg.version != CT_CG_V2)
        return gate_err(err, GATE_E_POLICY,
                        "network.egress: the microvm tier has no cgroup v2 directory to filter "
                        "QEMU in on this host");
    struct mvm_policy *mp = calloc(1, sizeof(*mp));
    if (!mp) return gate_err(err, GATE_E_NOMEM, "out of memory");
    if (p->network == NETWORK_EGRESS && sbx_net_prepare(p, &mp->net, err) < 0) {
        free(mp);
        return -1;
    }
    if (p->network == NETWORK_EGRESS && !mp->net) {
        /* `policy check`: the list is valid; a guest with the host's network is only ever
         * started by a gateway whose filter is in force, so none is booted here. */
        p->sbx_state = mp;
        p->sbx_state_free = state_free;
        return 0;
    }
    /* The tool's filter inside the guest: the container tier's allowlist and the policy's
     * seccomp lists, compiled here and installed by the agent. */
    struct sbx_call rehearsal = {.call_id = "rehearsal", .input = "", .input_len = 0};
    if (sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, p->seccomp_allow, p->seccomp_deny, NULL,
                            &mp->seccomp, err) < 0 ||
        mvm_call_frame(p, mp, &rehearsal, MVM_PING, &mp->rehearsal, err) < 0 ||
        guest_get(p, kvm, &mp->guest, err) < 0 ||
        sbx_pool_start(&mp->pool, &pool_kind, mp, p->name, p->pool_size, err) < 0) {
        state_free(mp);
        return -1;
    }
    p->sbx_state = mp;
    p->sbx_state_free = state_free;
    return 0;
}

/* What the call did on the network, once QEMU (killed by mvm_call_run) is gone, and before the
 * reaper removes its directory: slirp made the guest's connections with QEMU's host sockets, and
 * the filter saw each. The tool's execs happen in the guest's kernel, not as host execve calls:
 * said so, never faked. */
static void record_network(uint64_t cgid, const struct mvm_vm *vm, int rc, struct sbx_result *res)
{
    struct pollfd dead = {vm->pidfd, POLLIN, 0};
    while (poll(&dead, 1, 2000) < 0 && errno == EINTR)
        ;
    /* The directory stays held to deny-all until it is removed. */
    json_t *net = sbx_net_end_cgroup_unseen(cgid, "the guest's kernel");
    if (!net || rc < 0) {
        json_decref(net);
        return;
    }
    res->activity = net;
}

static int microvm_run(const struct policy *p, const struct sbx_call *call, struct sbx_result *res,
                       struct gate_error *err)
{
    struct mvm_policy *mp = p->sbx_state;
    if (!tier_ready || !mp || !mp->guest)
        return gate_err(err, GATE_E_SANDBOX, "microvm: tier not initialised");
    __atomic_add_fetch(&mvm.calls, 1, __ATOMIC_RELAXED);
    struct gate_buf frame = {0};
    if (mvm_call_frame(p, mp, call, MVM_CALL, &frame, err) < 0) return -1;
    struct mvm_vm *vm = sbx_pool_take(&mp->pool);
    if (!vm && mvm_vm_start(mp->guest, MVM_COLD, NULL, NULL, &vm, err) < 0) {
        gate_buf_free(&frame);
        return -1;
    }
    /* The jail's directory was held to deny-all since QEMU was born in it; now it is the
     * call's until QEMU is gone. */
    uint64_t cgid = mp->net ? vm->proc.cgid : 0;
    int rc = mp->net ? sbx_net_begin_cgroup(mp->net, cgid, err) : 0; /* cgid 0: refused */
    bool begun = mp->net && rc == 0;
    if (rc == 0) rc = mvm_call_run(p, vm, &frame, res, err);
    if (begun) record_network(cgid, vm, rc, res);
    mvm_vm_retire(vm);
    gate_buf_free(&frame);
    return rc;
}

static void microvm_shutdown(void)
{
    sbx_pool_stop_all(&pool_kind);
    mvm_reaper_stop();
    ct_jail_teardown(&mvm.jail); /* fails harmlessly while a call is still running */
}

static void microvm_metrics(struct gate_buf *out)
{
    gate_buf_printf(out,
                    "# HELP gatehouse_microvm_calls_total Calls run in a microVM.\n"
                    "# TYPE gatehouse_microvm_calls_total counter\n"
                    "gatehouse_microvm_calls_total %llu\n"
                    "# HELP gatehouse_microvm_cold_boots_total Guests booted from the kernel.\n"
                    "# TYPE gatehouse_microvm_cold_boots_total counter\n"
                    "gatehouse_microvm_cold_boots_total %llu\n"
                    "# HELP gatehouse_microvm_restores_total Guests restored from a snapshot.\n"
                    "# TYPE gatehouse_microvm_restores_total counter\n"
                    "gatehouse_microvm_restores_total %llu\n"
                    "# HELP gatehouse_microvm_boot_failures_total Guests that did not answer.\n"
                    "# TYPE gatehouse_microvm_boot_failures_total counter\n"
                    "gatehouse_microvm_boot_failures_total %llu\n"
                    "# HELP gatehouse_microvm_cgroup_leaks_total Jail cgroups not removed.\n"
                    "# TYPE gatehouse_microvm_cgroup_leaks_total counter\n"
                    "gatehouse_microvm_cgroup_leaks_total %llu\n"
                    "# HELP gatehouse_microvm_kvm Whether guests can use KVM on this host.\n"
                    "# TYPE gatehouse_microvm_kvm gauge\n"
                    "gatehouse_microvm_kvm %d\n",
                    __atomic_load_n(&mvm.calls, __ATOMIC_RELAXED),
                    __atomic_load_n(&mvm.cold_boots, __ATOMIC_RELAXED),
                    __atomic_load_n(&mvm.restores, __ATOMIC_RELAXED),
                    __atomic_load_n(&mvm.boot_failures, __ATOMIC_RELAXED),
                    __atomic_load_n(&mvm.leaks, __ATOMIC_RELAXED), mvm.has_kvm ? 1 : 0);
    sbx_pool_metrics(out, &pool_kind);
}

const struct sbx_ops sbx_microvm_ops = {
    .name = "microvm",
    .isolation = ISOLATION_MICROVM,
    .init = microvm_init,
    .prepare = microvm_prepare,
    .run = microvm_run,
    .shutdown = microvm_shutdown,
    .metrics = microvm_metrics,
};
