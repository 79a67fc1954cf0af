/* SPDX-License-Identifier: MIT */
/* The process-wide stop flag: signal handlers only set it, workers poll.
   A second signal, or a stop that outlasts the grace period, ends the
   process at once; a fatal signal in a plugin op is named before death. */
#include "autoconfig.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "stop.h"

/* A lock-free atomic: safe to set from a signal handler and to read from
   any worker thread without a data race. */
static atomic_int stop_signal;

/* The plugin op running on this thread, for the fatal-signal line. The
   executable's TLS is static, so reading it in a handler is safe. */
static __thread const char *cur_label, *cur_op, *cur_arg;
static __thread int cur_altstack;
#define ALTSTACK_SIZE (64 * 1024)
/* The stack guard of every thread: plugin frames up to this size cannot
   jump it. */
#define STOP_GUARD_SIZE (1024 * 1024)
static __thread char altstack[ALTSTACK_SIZE];

const char *stop_signal_name(int sig) {
  switch (sig) {
  case SIGINT:
    return "SIGINT";
  case SIGTERM:
    return "SIGTERM";
  case SIGSEGV:
    return "SIGSEGV";
  case SIGBUS:
    return "SIGBUS";
  case SIGFPE:
    return "SIGFPE";
  case SIGILL:
    return "SIGILL";
  case SIGABRT:
    return "SIGABRT";
  case SIGKILL:
    return "SIGKILL";
  case SIGPIPE:
    return "SIGPIPE";
  default:
    return NULL;
  }
}

static const char *sig_name(int sig) {
  const char *name = stop_signal_name(sig);
  return name ? name : "a signal";
}

/* Append `s` to buf[*n..cap) (async-signal-safe: no stdio). */
static void put(char *buf, size_t *n, size_t cap, const char *s) {
  while (s && *s && *n + 1 < cap)
    buf[(*n)++] = *s++;
}

static void say(const char *a, const char *b, const char *c) {
  char line[256];
  size_t n = 0;
  ssize_t w;

  put(line, &n, sizeof(line), a);
  put(line, &n, sizeof(line), b);
  put(line, &n, sizeof(line), c);
  line[n++] = '\n';
  w = write(STDERR_FILENO, line, n);
  (void)w;
}

static void on_alarm(int sig) {
  (void)sig;
  say("connhost: the stop grace period ran out: exiting now; the previous "
      "output is left as it was",
      "", "");
  _exit(128 + atomic_load(&stop_signal));
}

static void on_signal(int sig) {
  int expected = 0;

  if (!atomic_compare_exchange_strong(&stop_signal, &expected, sig)) {
    say("connhost: second ", sig_name(sig),
        ": exiting now; the previous output is left as it was");
    _exit(128 + sig);
  }
  alarm(STOP_GRACE_S);
}

/* "connhost: plugin jira_cloud <what> in list(user) for acme/jira", for
   the operation this thread runs (async-signal-safe). */
static void say_in_plugin(const char *what1, const char *what2,
                          const char *what3) {
  const char *colon = strchr(cur_label, ':');
  char plugin[64];
  size_t n = 0;
  char line[512];
  ssize_t w;

  while (cur_label[n] && cur_label + n != colon && n + 1 < sizeof(plugin)) {
    plugin[n] = cur_label[n];
    n++;
  }
  plugin[n] = '\0';
  n = 0;
  put(line, &n, sizeof(line), "connhost: plugin ");
  put(line, &n, sizeof(line), plugin);
  put(line, &n, sizeof(line), what1);
  put(line, &n, sizeof(line), what2);
  put(line, &n, sizeof(line), what3);
  put(line, &n, sizeof(line), " in ");
  put(line, &n, sizeof(line), cur_op);
  put(line, &n, sizeof(line), "(");
  put(line, &n, sizeof(line), cur_arg);
  put(line, &n, sizeof(line), ")");
  if (colon) {
    put(line, &n, sizeof(line), " for ");
    put(line, &n, sizeof(line), colon + 1);
  }
  line[n++] = '\n';
  w = write(STDERR_FILENO, line, n);
  (void)w;
}

/* "connhost: plugin jira_cloud crashed (SIGSEGV) in list(user) for
   acme/jira", then die of the same signal (the default action). */
static void on_fatal(int sig) {
  if (cur_label)
    say_in_plugin(" crashed (", sig_name(sig), ")");
  signal(sig, SIG_DFL);
  raise(sig);
}

/* A plugin's stack overflow must fault on a guard page: a frame bigger
   than glibc's one-page guard (a 16 KiB buffer is enough) jumps it and
   writes on into the stack and TLS of the thread below, which then dies
   of that corruption (once seen as "malloc(): unaligned tcache chunk")
   instead of the plugin's thread of SIGSEGV. Guards are address space
   only; the threads created after this get STOP_GUARD_SIZE. */
static void wide_guards(void) {
  pthread_attr_t a;
  size_t guard;

  if (pthread_getattr_default_np(&a) != 0)
    return;
  if (pthread_attr_getguardsize(&a, &guard) == 0 && guard < STOP_GUARD_SIZE &&
      pthread_attr_setguardsize(&a, STOP_GUARD_SIZE) == 0)
    pthread_setattr_default_np(&a);
  pthread_attr_destroy(&a);
}

/* A plugin that calls exit() in-process would end connhost with the
   plugin's status (0: cron and systemd would see a good run) and no word.
   Nothing is written then, so say so and fail. */
static void on_exit_in_plugin(void) {
  if (!cur_label)
    return;
  say_in_plugin(" called exit()", "", "");
  say("connhost: stopping: no graph written; the previous output is left as "
      "it was",
      "", "");
  _exit(1);
}

void stop_install_handlers(void) {
  wide_guards();
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
  struct sigaction sa = {0};

  atexit(on_exit_in_plugin);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = on_alarm;
  sigaction(SIGALRM, &sa, NULL);
  /* On the alternate stack, so a stack overflow is reported too; once
     only, so a fault in the handler itself just kills the process. */
  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    sigaction(fatal[i], &sa, NULL);
}

void stop_enter_op(const char *label, const char *op, const char *arg) {
  if (!cur_altstack) {
    stack_t ss = {0}, old;
    /* Keep one that is there already (AddressSanitizer sets its own per
       thread, and frees it as its own when the thread ends). */
    cur_altstack = 1;
    if (sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_DISABLE)) {
      ss.ss_sp = altstack;
      ss.ss_size = sizeof(altstack);
      sigaltstack(&ss, NULL);
    }
  }
  cur_label = label;
  cur_op = op;
  cur_arg = arg;
}

void stop_leave_op(void) { cur_label = cur_op = cur_arg = NULL; }

int stop_requested(void) { return atomic_load(&stop_signal); }

void stop_request(int sig) { atomic_store(&stop_signal, sig); }

int stop_sleep_ms(long ms) {
  /* Sleep in short slices so a signal during a long Retry-After wait stops
     the run within ~50 ms. */
  while (ms > 0 && !atomic_load(&stop_signal)) {
    long slice = ms < 50 ? ms : 50;
    struct timespec ts = {slice / 1000, (slice % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ms -= slice;
  }
  return atomic_load(&stop_signal) != 0;
}
