/*
 * The floor of a collection: the least a program can do to read what an agent reads, with none of
 * the parsing, naming or sending. It reads a plan (one step a line, made by benches/host_sources.sh
 * from the system calls pipit makes while it collects) and carries it out once a second:
 *
 *   file PATH      open, read to the end, close
 *   kept PATH      read to the end with pread from offset 0, on a descriptor opened once
 *   dir PATH       open, list every entry, close
 *   pids NAME      list /proc, then for every process read /proc/PID/NAME (open, read, close)
 *   kpids NAME     list /proc, then for every process one pread of /proc/PID/NAME at offset 0
 *                  on a descriptor kept while the process lives (at most KEPT_PIDS of them; the
 *                  files of other processes are opened, read once and closed)
 *   statfs PATH    statfs(2)
 *   sockdiag       one NETLINK_SOCK_DIAG dump of every TCP socket, IPv4 and IPv6 at once
 *                  (TCPDIAG_GETSOCK), over a socket opened once (as pipit keeps its own)
 *
 *   floor PLAN SECONDS
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

static char buf[1 << 16];

static void read_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    while (read(fd, buf, sizeof buf) > 0) {}
    close(fd);
}

/* The descriptor *fd, opened from PATH if it is not (-1), read from offset 0 to the end; on an
 * error it is closed, to be opened again next time. */
static void read_kept(const char *path, int *fd) {
    off_t off = 0;
    ssize_t n;
    if (*fd < 0) *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) return;
    while ((n = pread(*fd, buf, sizeof buf, off)) > 0) off += n;
    if (n < 0) {
        close(*fd);
        *fd = -1;
    }
}

static void list_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) return;
    while (readdir(d)) {}
    closedir(d);
}

static void each_pid(const char *name) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    char path[300];
    if (!d) return;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/%s", e->d_name, name);
        read_file(path);
    }
    closedir(d);
}

#define KEPT_PIDS 256
static int kept_pid[KEPT_PIDS], kept_fd[KEPT_PIDS], kept;

/* /proc lists processes by increasing pid, so the kept descriptors (sorted by pid) are matched
 * with it in one pass: those of processes gone are closed, new processes' files opened. */
static void each_pid_kept(const char *name) {
    int new_pid[KEPT_PIDS], new_fd[KEPT_PIDS], count = 0, i = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    char path[300];
    if (!d) return;
    while ((e = readdir(d))) {
        int pid, fd = -1;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        pid = atoi(e->d_name);
        for (; i < kept && kept_pid[i] < pid; i++) close(kept_fd[i]);
        if (i < kept && kept_pid[i] == pid) {
            fd = kept_fd[i++];
            if (pread(fd, buf, 1024, 0) >= 0) {
                new_pid[count] = pid;
                new_fd[count++] = fd;
                continue;
            }
            close(fd);
        }
        snprintf(path, sizeof path, "/proc/%s/%s", e->d_name, name);
        if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) continue;
        if (pread(fd, buf, 1024, 0) >= 0 && count < KEPT_PIDS) {
            new_pid[count] = pid;
            new_fd[count++] = fd;
        } else {
            close(fd);
        }
    }
    for (; i < kept; i++) close(kept_fd[i]);
    closedir(d);
    memcpy(kept_pid, new_pid, count * sizeof *new_pid);
    memcpy(kept_fd, new_fd, count * sizeof *new_fd);
    kept = count;
}

static void sock_diag(void) {
    static int fd = -1;
    struct {
        struct nlmsghdr h;
        struct inet_diag_req r;
    } req = {
        .h = {.nlmsg_len = sizeof req, .nlmsg_type = TCPDIAG_GETSOCK,
              .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP, .nlmsg_seq = 1},
        .r = {.idiag_states = ~0u},
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (fd < 0) fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0 || sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        return;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        int done = n <= 0;
        for (; !done && NLMSG_OK(h, n); h = NLMSG_NEXT(h, n))
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) done = 1;
        if (done) break;
    }
}

int main(int argc, char **argv) {
    char steps[512][256];
    int fds[512], count = 0;
    FILE *plan;
    long seconds;
    struct timespec next;
    if (argc != 3 || !(plan = fopen(argv[1], "r"))) {
        fprintf(stderr, "usage: floor PLAN SECONDS\n");
        return 2;
    }
    while (count < 512 && fgets(steps[count], sizeof steps[count], plan)) {
        steps[count][strcspn(steps[count], "\n")] = 0;
        fds[count++] = -1;
    }
    fclose(plan);
    seconds = atol(argv[2]);
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (long i = 0; i < seconds; i++) {
        for (int s = 0; s < count; s++) {
            char *arg = strchr(steps[s], ' ');
            struct statfs st;
            if (arg) arg++;
            if (!strncmp(steps[s], "file ", 5)) read_file(arg);
            else if (!strncmp(steps[s], "kept ", 5)) read_kept(arg, &fds[s]);
            else if (!strncmp(steps[s], "dir ", 4)) list_dir(arg);
            else if (!strncmp(steps[s], "pids ", 5)) each_pid(arg);
            else if (!strncmp(steps[s], "kpids ", 6)) each_pid_kept(arg);
            else if (!strncmp(steps[s], "statfs ", 7)) statfs(arg, &st);
            else if (!strcmp(steps[s], "sockdiag")) sock_diag();
        }
        next.tv_sec++;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
    return 0;
}
