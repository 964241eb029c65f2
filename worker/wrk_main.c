/*
 * wrk_main.c - fedcomp-worker: parse flags, settle the device id, run the
 * client (worker/wrk_client.h). Exit codes are enum wrk_exit.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "common/fl_log.h"
#include "worker/wrk_client.h"
#include "worker/wrk_config.h"

static void on_signal(int sig)
{
    (void)sig;
    wrk_client_request_stop();
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: zmq_poll returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    struct wrk_config cfg;
    struct wrk_client *client = NULL;
    enum wrk_action action = WRK_ACTION_RUN;
    char err[512] = "";
    bool created = false;

    fl_log_init("worker", NULL);
    wrk_config_defaults(&cfg);
    if (wrk_config_parse(&cfg, argc, argv, &action, err, sizeof(err)) !=
        FL_OK) {
        fprintf(stderr, "fedcomp-worker: %s (try --help)\n", err);
        return WRK_EXIT_USAGE;
    }
    if (action == WRK_ACTION_HELP) {
        wrk_config_usage(stdout);
        return WRK_EXIT_OK;
    }
    if (action == WRK_ACTION_VERSION) {
        puts(WRK_VERSION_STRING);
        return WRK_EXIT_OK;
    }
    if (action == WRK_ACTION_CHECK_CONFIG) {
        /* everything a start would refuse, the security policy too */
        if (wrk_config_check_security(&cfg, err, sizeof(err)) != FL_OK) {
            fprintf(stderr, "fedcomp-worker: %s\n", err);
            return WRK_EXIT_USAGE;
        }
        wrk_config_print(&cfg, stdout);
        return WRK_EXIT_OK;
    }
    if (wrk_config_check_security(&cfg, err, sizeof(err)) != FL_OK) {
        fprintf(stderr, "fedcomp-worker: %s\n", err);
        return WRK_EXIT_USAGE;
    }
    fl_log_set_level(cfg.log_level);
    fl_log_set_format(cfg.log_format);
    if (wrk_config_device_id(&cfg, &created, err, sizeof(err)) != FL_OK) {
        fl_log(FL_LOG_ERR, "%s", err);
        return WRK_EXIT_ERROR;
    }
    if (created)
        fl_log(FL_LOG_INFO, "new device id '%s' stored in '%s'", cfg.id,
               cfg.state_dir);
    install_signals();
    if (wrk_client_new(&cfg, &client) != FL_OK)
        return WRK_EXIT_ERROR;
    const int code = wrk_client_run(client);
    wrk_client_destroy(&client);
    return code;
}
