/* test_container.c: the container tier's pieces that can be checked without namespaces.
 *
 * - cgroup v2 and v1 file logic against a plain directory tree laid out like cgroupfs
 *   (this host is v1 hybrid: the v2 path is not run end to end here, only its files);
 * - the policy image: what prepare encodes is what a child decodes;
 * - the seccomp allowlist, installed in a forked child: ioctl compares the low 32 bits
 *   (TIOCSTI with bit 32 set is still refused), and the refused families stay refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "../../sandboxes/container/container.h"

static char root[64];

static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void mkdirs(const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0755);
            *p = '/';
        }
    mkdir(path, 0755);
}

static void expect_file(const char *path, const char *want)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    assert_string_equal(buf, want);
}

static int setup_tree(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/gh-ct-unit-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown_tree(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    return system(cmd) == 0 ? 0 : -1;
}

static const struct policy_limits limits = {.memory_mb = 32, .pids = 16, .cpu_millis = 500};

static void test_cgroup_v2_paths_and_files(void **state)
{
    (void)state;
    put("cgroup.controllers", "cpu memory pids\n");
    mkdirs("system.slice/gw.service");
    struct ct_cg_config cfg;
    struct gate_error err = {0};
    int rc = ct_cg_setup(root, "0::/system.slice/gw.service\n", "gatehouse-42", &cfg, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg.version, CT_CG_V2);
    char want[512], path[600];
    snprintf(want, sizeof(want), "%s/system.slice/gw.service/gatehouse-42", root);
    assert_string_equal(cfg.parent[0], want);
    snprintf(path, sizeof(path), "%s/system.slice/gw.service/cgroup.subtree_control", root);
    expect_file(path, "+memory +pids +cpu");
    snprintf(path, sizeof(path), "%s/cgroup.subtree_control", want);
    expect_file(path, "+memory +pids +cpu");

    struct ct_cgroup cg;
    assert_int_equal(ct_cg_create(&cfg, "c1", &limits, &cg, &err), 0);
    snprintf(path, sizeof(path), "%s/c1/memory.max", want);
    expect_file(path, "33554432");
    snprintf(path, sizeof(path), "%s/c1/pids.max", want);
    expect_file(path, "16");
    snprintf(path, sizeof(path), "%s/c1/cpu.max", want);
    expect_file(path, "50000 100000");
    assert_int_equal(ct_cg_attach(&cfg, &cg, 1234, &err), 0);
    snprintf(path, sizeof(path), "%s/c1/cgroup.procs", want);
    expect_file(path, "1234");
    ct_cg_kill(&cfg, &cg, 0);
    snprintf(path, sizeof(path), "%s/c1/cgroup.kill", want);
    expect_file(path, "1");

    snprintf(path, sizeof(path), "%s/c1/memory.events", want);
    FILE *f = fopen(path, "w");
    fputs("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/c1/pids.events", want);
    f = fopen(path, "w");
    fputs("max 3\n", f);
    fclose(f);
    uint64_t oom = 0, pids = 0;
    ct_cg_counters(&cfg, &cg, &oom, &pids);
    assert_int_equal(oom, 1);
    assert_int_equal(pids, 3);
}

static void test_cgroup_v1_paths_and_memsw_order(void **state)
{
    (void)state;
    static const char *const ctrls[] = {"memory", "pids", "cpu", "freezer"};
    for (int i = 0; i < 4; i++) {
        char rel[64];
        snprintf(rel, sizeof(rel), "%s/gw", ctrls[i]);
        mkdirs(rel);
    }
    put("memory/cgroup.procs", "");
    mkdirs("memory/gw/gatehouse-7");
    mkdirs("unified/gwu"); /* a hybrid host's controller-less cgroup2 tree */
    put("memory/gw/gatehouse-7/memory.memsw.limit_in_bytes", "9223372036854771712");
    struct ct_cg_config cfg;
    struct gate_error err = {0};
    const char *self = "8:pids:/gw\n6:freezer:/gw\n4:memory:/gw\n1:cpu,cpuacct:/gw\n0::/gwu\n";
    assert_int_equal(ct_cg_setup(root, self, "gatehouse-7", &cfg, &err), 0);
    assert_int_equal(cfg.version, CT_CG_V1);
    assert_true(cfg.has_memsw);
    assert_true(cfg.has_freezer);
    assert_true(cfg.has_unified);
    char want[512], path[600];
    snprintf(want, sizeof(want), "%s/cpu/gw/gatehouse-7", root);
    assert_string_equal(cfg.parent[CT_V1_CPU], want);
    snprintf(want, sizeof(want), "%s/unified/gwu/gatehouse-7", root);
    assert_string_equal(cfg.parent[CT_V1_UNIFIED], want);

    struct ct_cgroup cg;
    assert_int_equal(ct_cg_create(&cfg, "c9", &limits, &cg, &err), 0);
    /* Every sandbox is born in a cgroup2 directory too: attached with the others. */
    assert_int_equal(ct_cg_attach(&cfg, &cg, 4321, &err), 0);
    snprintf(path, sizeof(path), "%s/unified/gwu/gatehouse-7/c9/cgroup.procs", root);
    expect_file(path, "4321");
    snprintf(path, sizeof(path), "%s/memory/gw/gatehouse-7/c9/memory.limit_in_bytes", root);
    expect_file(path, "33554432");
    snprintf(path, sizeof(path), "%s/memory/gw/gatehouse-7/c9/memory.memsw.limit_in_bytes", root);
    expect_file(path, "33554432");
    snprintf(path, sizeof(path), "%s/cpu/gw/gatehouse-7/c9/cpu.cfs_quota_us", root);
    expect_file(path, "50000");
    /* A resident pool helper counts against pids.max. */
    assert_int_equal(ct_cg_set_limits(&cfg, &cg, &limits, 2, &err), 0);
    snprintf(path, sizeof(path), "%s/pids/gw/gatehouse-7/c9/pids.max", root);
    expect_file(path, "18");
    snprintf(path, sizeof(path), "%s/memory/gw/gatehouse-7/c9/memory.oom_control", root);
    FILE *f = fopen(path, "w");
    fputs("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", f);
    fclose(f);
    uint64_t oom = 0, pids = 0;
    ct_cg_counters(&cfg, &cg, &oom, &pids);
    assert_int_equal(oom, 2);
    assert_int_equal(pids, 0);
}

static void test_cgroup_setup_without_hierarchy_fails(void **state)
{
    (void)state;
    struct ct_cg_config cfg;
    struct gate_error err = {0};
    assert_int_equal(ct_cg_setup(root, "0::/\n", "gatehouse-1", &cfg, &err), -1);
    assert_non_null(strstr(err.msg, "no usable cgroup hierarchy"));
}

/* The v2 code paths that need no controller, on the host's real cgroup2 tree: a pure v2
 * host's, or a hybrid host's controller-less /sys/fs/cgroup/unified. Limits (memory.max,
 * pids.max, cpu.max) need controllers and are only covered by the fake tree above. */
static void test_cgroup_v2_attach_kill_remove_on_the_hosts_tree(void **state)
{
    (void)state;
    const char *mnt = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0
                          ? "/sys/fs/cgroup"
                          : "/sys/fs/cgroup/unified";
    char self[1024] = "", *own = NULL;
    FILE *f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(self, sizeof(self), f))
        if (strncmp(self, "0::", 3) == 0) {
            own = self + 3;
            own[strcspn(own, "\n")] = '\0';
            break;
        }
    if (f) fclose(f);
    char procs[4200];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", mnt);
    if (geteuid() != 0 || !own || access(procs, W_OK) != 0) {
        print_message("no writable cgroup2 tree here (root needed)\n");
        skip();
    }
    struct ct_cg_config cfg = {.version = CT_CG_V2};
    snprintf(cfg.parent[0], sizeof(cfg.parent[0]), "%s%s/gatehouse-unit-%d", mnt,
             strcmp(own, "/") == 0 ? "" : own, (int)getpid());
    assert_int_equal(mkdir(cfg.parent[0], 0755), 0);
    struct ct_cgroup cg = {.made = {true}};
    int n = snprintf(cg.path[0], sizeof(cg.path[0]), "%.1024s/c1", cfg.parent[0]);
    assert_true(n > 0 && (size_t)n < sizeof(cg.path[0]));
    assert_int_equal(mkdir(cg.path[0], 0755), 0);
    pid_t pid = fork();
    if (pid == 0) {
        for (;;)
            pause();
    }
    assert_true(pid > 0);
    struct gate_error err = {0};
    assert_int_equal(ct_cg_attach(&cfg, &cg, pid, &err), 0);
    assert_int_equal(ct_cg_members(&cfg, &cg, 0), 1);
    pid_t listed = 0;
    assert_int_equal(ct_cg_list(&cfg, &cg, &listed, 1), 1);
    assert_int_equal(listed, pid);
    ct_cg_kill(&cfg, &cg, 0); /* cgroup.kill */
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_int_equal(ct_cg_destroy(&cfg, &cg), 0);
    assert_int_equal(access(cg.path[0], F_OK), -1);
    ct_cg_teardown(&cfg);
    assert_int_equal(access(cfg.parent[0], F_OK), -1);
}

static void test_image_round_trip(void **state)
{
    (void)state;
    char *command[] = {"/bin/sh", "-c", "echo hi", NULL};
    char *env[] = {"GREETING=hello", NULL};
    struct policy p = {.name = "demo", .command = command, .env = env};
    p.limits = (struct policy_limits){.memory_mb = 64,
                                      .pids = 8,
                                      .disk_mb = 16,
                                      .cpu_time_ms = 2500,
                                      .file_size_mb = 1,
                                      .cpu_millis = 1000};
    p.filesystem.workspace = true;
    p.filesystem.workspace_mb = 8;
    struct ct_state *st = calloc(1, sizeof(*st));
    struct gate_error err = {0};
    struct sock_filter insns[2] = {{0x06, 0, 0, 0x7fff0000}, {0x06, 0, 0, 0}};
    st->seccomp.len = 2;
    st->seccomp.filter = malloc(sizeof(insns));
    memcpy(st->seccomp.filter, insns, sizeof(insns));
    assert_int_equal(ct_plan(&p, st, &err), 0);
    assert_int_equal(ct_plan_identity(st, 65534, 65534), 0);
    assert_int_equal(ct_image_build(&p, st, &st->image), 0);

    struct ct_spec *spec = calloc(1, sizeof(*spec));
    assert_int_equal(ct_image_decode(st->image.data, st->image.len, "c_0123", spec), 0);
    assert_string_equal(spec->argv[0], "/bin/sh");
    assert_string_equal(spec->argv[2], "echo hi");
    assert_null(spec->argv[3]);
    assert_string_equal(spec->env[0], "GREETING=hello");
    assert_string_equal(spec->env[1], "GATEHOUSE_TOOL=demo");
    assert_string_equal(spec->env[2], "GATEHOUSE_CALL_ID=c_0123");
    assert_null(spec->env[3]);
    assert_string_equal(spec->cwd, "/workspace");
    assert_true(spec->workspace);
    assert_int_equal(spec->cpu_time_s, 3);
    assert_int_equal(spec->file_size_bytes, 1 << 20);
    assert_non_null(strstr(spec->tmp_opts, "size=16m"));
    assert_int_equal(spec->seccomp.len, 2);
    assert_memory_equal(spec->seccomp.filter, insns, sizeof(insns));
    bool usr = false;
    for (size_t i = 0; i < spec->nbinds; i++)
        if (strcmp(spec->bind_dst[i], "usr") == 0 && strcmp(spec->bind_src[i], "/usr") == 0)
            usr = true;
    assert_true(usr);
    assert_non_null(strstr(spec->passwd, "nobody:x:65534:65534"));
    /* A truncated image is refused, never half-decoded. */
    assert_int_equal(ct_image_decode(st->image.data, st->image.len - 9, "c_0123", spec), -1);
    free(spec);
    ct_state_free(st);
}

static void test_plan_refuses_root_read_only(void **state)
{
    (void)state;
    char *command[] = {"/bin/true", NULL};
    char *ro[] = {"/", NULL};
    struct policy p = {.name = "bad", .command = command};
    p.filesystem.read_only = ro;
    struct ct_state *st = calloc(1, sizeof(*st));
    struct gate_error err = {0};
    assert_int_equal(ct_plan(&p, st, &err), -1);
    assert_non_null(strstr(err.msg, "whole host"));
    ct_state_free(st);
}

/* Run probe() under the container allowlist in a child; the child exits 0 when every
 * expectation held, else with the number of the first that failed. */
static int errno_of(long rc)
{
    return rc < 0 ? errno : 0;
}

static int probe(void)
{
    int fds[2];
    if (pipe(fds) < 0) return 100;
    if (errno_of(ioctl(fds[0], TIOCSTI, "x")) != EPERM) return 1;
    if (errno_of(syscall(SYS_ioctl, fds[0], (unsigned long)TIOCSTI | (1UL << 32), "x")) != EPERM)
        return 2;
    if (errno_of(ioctl(fds[0], TIOCLINUX, "x")) != EPERM) return 3;
    if (errno_of(ioctl(fds[0], TCGETS, NULL)) == EPERM) /* allowed: the kernel says ENOTTY */
        return 4;
    if (errno_of(syscall(SYS_keyctl, 0, 0, 0, 0, 0)) != EPERM) return 5;
    if (errno_of(syscall(SYS_io_uring_setup, 1, NULL)) != EPERM) return 6;
    if (errno_of(syscall(SYS_bpf, 0, NULL, 0)) != EPERM) return 7;
    if (errno_of(syscall(SYS_mount, "none", "/", "tmpfs", 0, NULL)) != EPERM) return 8;
    if (errno_of(syscall(SYS_clone3, NULL, 0)) != ENOSYS) return 9;
    if (errno_of(socket(AF_PACKET, SOCK_RAW, 0)) != EPERM) return 10;
    if (errno_of(syscall(SYS_ptrace, 0, 0, 0, 0)) != EPERM) return 11;
    if (errno_of(syscall(SYS_unshare, CLONE_NEWUSER)) != EPERM) return 12;
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) return 13;
    if (errno_of(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)) != EPERM) return 14;
    if (errno_of(syscall(SYS_userfaultfd, 0)) != EPERM) return 15;
    return 0;
}

static void test_allowlist_refuses_and_masks_ioctl(void **state)
{
    (void)state;
    struct sock_fprog prog = {0};
    struct gate_error err = {0};
    assert_int_equal(sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, NULL, NULL, NULL, &prog, &err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (sbx_seccomp_install(&prog) < 0) _exit(99);
        _exit(probe());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    free(prog.filter);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_policy_deny_removes_allowlisted_call(void **state)
{
    (void)state;
    struct sock_fprog prog = {0};
    struct gate_error err = {0};
    char *deny[] = {"getcwd", NULL};
    int rc = sbx_seccomp_compile(SBX_SECCOMP_ALLOWLIST, NULL, deny, NULL, &prog, &err);
    if (rc < 0) fail_msg("%s", err.msg);
    pid_t pid = fork();
    if (pid == 0) {
        char buf[64];
        if (sbx_seccomp_install(&prog) < 0) _exit(99);
        _exit(errno_of(syscall(SYS_getcwd, buf, sizeof(buf))) == EPERM ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    free(prog.filter);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(sbx_allowlist_has("getcwd"));
    assert_false(sbx_allowlist_has("keyctl"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cgroup_v2_paths_and_files, setup_tree, teardown_tree),
        cmocka_unit_test_setup_teardown(test_cgroup_v1_paths_and_memsw_order, setup_tree,
                                        teardown_tree),
        cmocka_unit_test_setup_teardown(test_cgroup_setup_without_hierarchy_fails, setup_tree,
                                        teardown_tree),
        cmocka_unit_test(test_cgroup_v2_attach_kill_remove_on_the_hosts_tree),
        cmocka_unit_test(test_image_round_trip),
        cmocka_unit_test(test_plan_refuses_root_read_only),
        cmocka_unit_test(test_allowlist_refuses_and_masks_ioctl),
        cmocka_unit_test(test_policy_deny_removes_allowlisted_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
