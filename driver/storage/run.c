/* See run.h. */
#include "storage/run.h"
#include "base/log.h"
#include "base/macros.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs a program, its output into the log; a non-zero exit is an error. */
int storage_run(const char *const argv[], struct wc_error *e)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return wc_err_errno(e, -errno, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return wc_err_errno(e, -err, "fork");
    }
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    char out[2048];
    size_t got = 0;
    ssize_t n;
    while ((n = RETRY_EINTR(read(pipefd[0], out + got, sizeof(out) - 1 - got))) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(pipefd[0]);
    int status;
    if (RETRY_EINTR(waitpid(pid, &status, 0)) < 0)
        return wc_err_errno(e, -errno, "waiting for %s", argv[0]);
    json_t *args = json_array();
    for (size_t i = 0; argv[i]; i++)
        json_array_append_new(args, json_string(argv[i]));
    log_json(LOG_INFO, "ran", json_pack("{s:o, s:i, s:s}", "argv", args, "exit", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                       "output", out));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return wc_err(e, -EIO, "%s failed (exit %d): %.300s", argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                      out);
    return 0;
}

