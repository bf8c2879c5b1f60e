// signals.c: SIGTERM, SIGUSR1 (Slurm's warning before the time limit) and SIGINT ask the trainer
// to stop at the next step boundary, after all ranks agree and a checkpoint is written.
// A signal handler can only talk through a static sig_atomic_t: this is the one piece of
// process-wide mutable state, written by the handler and read by the loop.
#include <signal.h>
#include <string.h>

#include "trainer.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    stop_signal = sig;
    if (sig == SIGINT) signal(SIGINT, SIG_DFL);   // a second Ctrl-C ends the process at once
}

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int signals_stop_requested(void) { return stop_signal != 0; }

int signals_last(void) { return (int)stop_signal; }
