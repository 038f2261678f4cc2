/*
 * The floor of starting a check, in two forms, each printing this process's own CPU time per
 * start (user + system, the children's not counted), to set beside the CPU pipit's supervisor
 * thread spends per check:
 *
 *   spawn_floor N              N posix_spawn(3) of /bin/true, each waited for with waitpid(2):
 *                              a start and nothing else (no pipes, no process group, no timeout)
 *   spawn_floor N PIPIT USER   N supervised starts of /bin/true as pipit starts a check: two
 *                              pipes for stdout and stderr, /dev/null as stdin, a process group
 *                              of its own, started as PIPIT in its `pipit-child` mode (which
 *                              switches to USER, "UID:GID:" or "-", and execs the command), a
 *                              pidfd for its end, poll(2) until both pipes close and the pidfd is
 *                              ready, the group killed, the leader reaped
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int bare(void) {
    char *child[] = {"true", NULL};
    pid_t pid;
    int status;
    if (posix_spawn(&pid, "/bin/true", NULL, NULL, child, environ) != 0) {
        perror("posix_spawn");
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid || status != 0) {
        fprintf(stderr, "/bin/true did not exit 0\n");
        return -1;
    }
    return 0;
}

/* Reads a pipe that poll(2) found ready; closes it at its end. Returns 1 when it closed. */
static int drain(struct pollfd *p) {
    char buf[16384];
    if (p->fd < 0 || !p->revents) return 0;
    if (read(p->fd, buf, sizeof buf) > 0) return 0;
    close(p->fd);
    p->fd = -1;
    return 1;
}

static int supervised(int null, char *pipit, char **argv) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        perror("pipe2");
        return -1;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, null, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid;
    int e = posix_spawn(&pid, pipit, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    if (e != 0) {
        fprintf(stderr, "posix_spawn %s failed: %d\n", pipit, e);
        return -1;
    }
    int pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        perror("pidfd_open");
        return -1;
    }
    struct pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {pidfd, POLLIN, 0}};
    int left = 3, status = -1;
    while (left > 0) {
        if (poll(fds, 3, -1) < 0) {
            perror("poll");
            return -1;
        }
        left -= drain(&fds[0]) + drain(&fds[1]);
        if (fds[2].fd >= 0 && fds[2].revents) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            close(pidfd);
            fds[2].fd = -1;
            left--;
        }
    }
    if (status != 0) {
        fprintf(stderr, "/bin/true through %s did not exit 0 (status %d)\n", pipit, status);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char *pipit = argc > 3 ? argv[2] : NULL;
    char parent[16];
    snprintf(parent, sizeof parent, "%d", (int)getpid());
    char *trampoline[] = {"pipit-child", parent, pipit ? argv[3] : "-", "/bin/true", NULL};
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0) {
        perror("/dev/null");
        return 1;
    }
    double start = cpu_seconds();
    for (int i = 0; i < n; i++) {
        if ((pipit ? supervised(null, pipit, trampoline) : bare()) != 0) return 1;
    }
    printf("%.4f\n", (cpu_seconds() - start) / n * 1e3);
    return 0;
}
