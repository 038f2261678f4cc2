/*
 * The floor of starting a check: N posix_spawn(3) of /bin/true from this small process, each
 * waited for with waitpid(2), as a supervisor does at the least (no pipes, no process group, no
 * timeout). Prints this process's own CPU time per start (user + system, the children's not
 * counted), to set beside the CPU pipit's supervisor thread spends per check.
 *
 *   spawn_floor N
 */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    char *child[] = {"true", NULL};
    double start = cpu_seconds();
    for (int i = 0; i < n; i++) {
        pid_t pid;
        int status;
        if (posix_spawn(&pid, "/bin/true", NULL, NULL, child, environ) != 0) {
            perror("posix_spawn");
            return 1;
        }
        if (waitpid(pid, &status, 0) != pid || status != 0) {
            fprintf(stderr, "/bin/true did not exit 0\n");
            return 1;
        }
    }
    printf("%.4f\n", (cpu_seconds() - start) / n * 1e3);
    return 0;
}
