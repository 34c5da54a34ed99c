/* volbench: the file I/O that benches/volume.sh times, the same binary on
 * the host and inside a container, so only the filesystem path differs.
 *
 *   volbench write FILE MIB    sequential 1 MiB writes, then fsync; MB/s
 *   volbench read FILE         drops FILE's cached pages (posix_fadvise
 *                              DONTNEED: no capability needed), then reads
 *                              it in 1 MiB blocks; MB/s
 *   volbench create DIR COUNT  creates COUNT 4 KiB files in DIR (open,
 *                              write, close; no fsync); files/s
 *
 * Prints one number. Built static by benches/volume.sh (cc -static).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1 << 20)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what, const char *path) {
    fprintf(stderr, "volbench: %s %s: %s\n", what, path, strerror(errno));
    return 1;
}

static int do_write(const char *path, long mib) {
    static char buf[BLOCK];
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(i * 7 + 13);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return fail("open", path);
    double t0 = now();
    for (long i = 0; i < mib; i++) {
        size_t done = 0;
        while (done < sizeof buf) {
            ssize_t n = write(fd, buf + done, sizeof buf - done);
            if (n < 0) return fail("write", path);
            done += (size_t)n;
        }
    }
    if (fsync(fd) != 0) return fail("fsync", path);
    double t1 = now();
    close(fd);
    printf("%.1f\n", mib * (double)BLOCK / 1e6 / (t1 - t0));
    return 0;
}

static int do_read(const char *path) {
    static char buf[BLOCK];
    int fd = open(path, O_RDONLY);
    if (fd < 0) return fail("open", path);
    /* The pages are clean after the write's fsync, so this evicts them. */
    int rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc != 0) {
        errno = rc;
        return fail("posix_fadvise", path);
    }
    long long total = 0;
    double t0 = now();
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) return fail("read", path);
        if (n == 0) break;
        total += n;
    }
    double t1 = now();
    close(fd);
    printf("%.1f\n", total / 1e6 / (t1 - t0));
    return 0;
}

static int do_create(const char *dir, long count) {
    static char buf[4096];
    memset(buf, 'x', sizeof buf);
    char path[4096];
    double t0 = now();
    for (long i = 0; i < count; i++) {
        snprintf(path, sizeof path, "%s/f%06ld", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return fail("open", path);
        if (write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) return fail("write", path);
        if (close(fd) != 0) return fail("close", path);
    }
    double t1 = now();
    printf("%.0f\n", count / (t1 - t0));
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "write") == 0) return do_write(argv[2], atol(argv[3]));
    if (argc == 3 && strcmp(argv[1], "read") == 0) return do_read(argv[2]);
    if (argc == 4 && strcmp(argv[1], "create") == 0) return do_create(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: volbench write FILE MIB | read FILE | create DIR COUNT\n");
    return 2;
}
