/*
 * The floor of starting a check, in two forms, each printing this process's own CPU time per
 * start (user + system, the children's not counted), to set beside the CPU pipit's supervisor
 * thread spends per check:
 *
 *   spawn_floor N              N posix_spawn(3) of /bin/true, each waited for with waitpid(2):
 *                              a start and nothing else (no pipes, no process group, no timeout)
 *   spawn_floor N USER         N supervised starts of /bin/true as pipit starts a check: two
 *                              pipes for stdout and stderr, /dev/null as stdin, every signal
 *                              blocked around a clone(2) that shares this process's memory until
 *                              the child's exec (CLONE_VM | CLONE_VFORK, on a stack kept for it,
 *                              with CLONE_PIDFD for its end), the child resetting signal handlers,
 *                              making a process group of its own, taking its descriptors,
 *                              switching to USER ("UID:GID", or "-" to stay) with the raw
 *                              setgroups, setgid and setuid calls, asking for SIGKILL at its
 *                              parent's end and execing; then poll(2) until both pipes close and
 *                              the pidfd is ready, the group killed, the leader reaped
 *
 * Either form takes `-r RATE` first: the N starts then run at RATE a second, in bursts on a
 * 100 ms grid (RATE / 10 starts each, back to back, at least one), the process sleeping until
 * the next burst as pipit's `checks` thread takes the checks due on its grid of the same step.
 * Without it they run back to back, every cache warm from the start before; at a pace the
 * wake-ups and the colder caches are part of each start, as they are of pipit's.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct job {
    int null, out, err;
    uid_t uid;
    gid_t gid;
    int switch_user;
    pid_t parent;
};

static char stack[64 * 1024] __attribute__((aligned(16)));

static int child(void *arg) {
    struct job *job = arg;
    char *argv[] = {"true", NULL};
    for (int sig = 1; sig < SIGRTMAX + 1; sig++) {
        struct sigaction action;
        if (sigaction(sig, NULL, &action) != 0) continue;
        if (action.sa_handler != SIG_DFL && action.sa_handler != SIG_IGN) {
            struct sigaction dfl = {.sa_handler = SIG_DFL};
            sigaction(sig, &dfl, NULL);
        }
    }
    if (setpgid(0, 0) || dup2(job->null, 0) < 0 || dup2(job->out, 1) < 0 || dup2(job->err, 2) < 0)
        _exit(127);
    if (job->switch_user && (syscall(SYS_setgroups, 0, NULL) || syscall(SYS_setgid, job->gid) ||
                             syscall(SYS_setuid, job->uid)))
        _exit(127);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || getppid() != job->parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve("/bin/true", argv, environ);
    _exit(127);
}

static int supervised(struct job *job) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        perror("pipe2");
        return -1;
    }
    job->out = out[1];
    job->err = err[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    pid_t pid = clone(child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD,
                      job, &pidfd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(out[1]);
    close(err[1]);
    if (pid < 0 || pidfd < 0) {
        perror("clone");
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
        fprintf(stderr, "/bin/true did not exit 0 (status %d)\n", status);
        return -1;
    }
    return 0;
}

/* Sleeps until `next` and moves it on by `step` nanoseconds. */
static void sleep_until_next(struct timespec *next, long step) {
    next->tv_nsec += step;
    while (next->tv_nsec >= 1000000000L) {
        next->tv_nsec -= 1000000000L;
        next->tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, next, NULL) != 0) {
    }
}

int main(int argc, char **argv) {
    int rate = 0;
    if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        rate = atoi(argv[2]);
        argc -= 2;
        argv += 2;
    }
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    int is_supervised = argc > 2;
    int burst = rate / 10 > 1 ? rate / 10 : 1;
    long step = rate > 0 ? 1000000000L / rate * burst : 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    struct job job = {.parent = getpid()};
    if (is_supervised && strcmp(argv[2], "-") != 0) {
        job.switch_user = 1;
        if (sscanf(argv[2], "%u:%u", &job.uid, &job.gid) != 2) {
            fprintf(stderr, "USER is UID:GID or -\n");
            return 2;
        }
    }
    job.null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (job.null < 0) {
        perror("/dev/null");
        return 1;
    }
    double start = cpu_seconds();
    for (int i = 0; i < n; i++) {
        if ((is_supervised ? supervised(&job) : bare()) != 0) return 1;
        if (rate > 0 && (i + 1) % burst == 0) sleep_until_next(&next, step);
    }
    printf("%.4f\n", (cpu_seconds() - start) / n * 1e3);
    return 0;
}
