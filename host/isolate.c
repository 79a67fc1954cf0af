/* SPDX-License-Identifier: MIT */
/* Process isolation: a child per isolated instance runs the plugin through
   the same engine and HTTP code; the host ingests its record stream and
   turns a crash, a hang or a bad stream into that instance's failure. */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "graph.h"
#include "http.h"
#include "isolate.h"
#include "isowire.h"
#include "log.h"
#include "pace.h"
#include "stop.h"
#include "util.h"

/* The op each of a child's threads is in, in memory shared with the host:
   written before each op is called, so it survives any death of the
   child (a fault, a stack overflow, SIGKILL). */
struct op_slot {
  atomic_int busy;
  char op[120];
};

/* The child's HTTP counters, written as they change: a child killed
   before its final STATUS frame (its `timeout:`, a crash, the stop grace)
   still leaves what it had sent where the host can read it. */
struct shared_http {
  _Atomic uint64_t requests, retries, throttled, bytes_in, bytes_out, errors;
  _Atomic uint64_t wait_us;
};

struct shared {
  atomic_int crashed; /* slot of the thread that took a fatal signal, or -1 */
  struct shared_http http;
  atomic_int next_slot;
  int nslots;
  struct op_slot slots[]; /* one per worker, plus the main thread */
};

struct child {
  struct instance *in;
  struct graph *graph;
  pid_t pid;
  int fd; /* read end */
  struct shared *shared;
  size_t shared_size;
  pthread_t reader;
  int reader_started;
  atomic_int done;   /* the reader reached the end of the stream */
  atomic_int killed; /* SIGKILLed by the host: bad stream or record */
  int grace_killed;  /* SIGKILLed when the grace period ran out */
  int got_status;    /* the final STATUS frame arrived */
  char stream_error[CH_ERR_MSG_SIZE]; /* why the stream was refused */
  struct isowire_status status;
};

struct isolate {
  struct child *kids;
  size_t n;
};

/* ---- the child ---------------------------------------------------------- */

/* Set in a child only, before its threads start. */
static struct shared *child_shared;
static _Thread_local int my_slot = -1;

static void on_fatal(int sig) {
  if (child_shared && my_slot >= 0)
    atomic_store(&child_shared->crashed, my_slot);
  /* SA_RESETHAND restored the default action: die of the same signal */
  raise(sig);
}

/* A thread's alternate signal stack, so a stack overflow still reaches
   on_fatal: one it has already (AddressSanitizer gives each thread one,
   and unmaps it itself at thread exit), else one allocated here, once per
   thread in a child (which then _exits). */
static void thread_altstack(void) {
  stack_t ss = {0}, old;

  if (sigaltstack(NULL, &old) == 0 && !(old.ss_flags & SS_DISABLE))
    return;
  ss.ss_size = 64 * 1024;
  ss.ss_sp = malloc(ss.ss_size);
  if (ss.ss_sp && sigaltstack(&ss, NULL) != 0)
    free(ss.ss_sp);
}

void isolate_op_enter(const char *op, const char *arg) {
  struct op_slot *s;

  if (!child_shared)
    return;
  if (my_slot < 0) {
    int n = atomic_fetch_add(&child_shared->next_slot, 1);
    my_slot = n < child_shared->nslots ? n : child_shared->nslots - 1;
    thread_altstack();
  }
  s = &child_shared->slots[my_slot];
  if (arg)
    snprintf(s->op, sizeof(s->op), "%s(%s)", op, arg);
  else
    snprintf(s->op, sizeof(s->op), "%s", op);
  atomic_store(&s->busy, 1);
}

void isolate_op_leave(void) {
  if (child_shared && my_slot >= 0)
    atomic_store(&child_shared->slots[my_slot].busy, 0);
}

/* The host that forked this child: the one whose stop orders count. */
static pid_t host_pid;

/* A SIGTERM from anyone but the host is a stop of the whole process group
   (systemd's stop, `kill -TERM -PGID`): the host got it too and decides,
   giving running syncs their grace, so the child goes on. The host's own
   order (after the grace) stops it. */
static void on_stop_order(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  if (si && si->si_code == SI_USER && si->si_pid != host_pid)
    return;
  stop_request(sig);
}

static void install_fatal_handlers(void) {
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
  struct sigaction sa = {0};

  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof(fatal) / sizeof(fatal[0]); i++)
    sigaction(fatal[i], &sa, NULL);
  /* a write to a host that went away fails with EPIPE instead */
  signal(SIGPIPE, SIG_IGN);
  /* stop orders come from the host (SIGTERM), not from the terminal's
     Ctrl-C, which reaches the whole process group */
  signal(SIGINT, SIG_IGN);
  sa.sa_sigaction = on_stop_order;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigaction(SIGTERM, &sa, NULL);
}

/* The host validates every record; the child checks only what its own
   engine relies on to schedule a resource's children (a type and an id),
   in the host's words. A type the plugin does not declare schedules
   nothing and goes on to the host, which fails the instance as it would
   in-process. */
static int emit_resource(void *ctx, struct instance *in,
                         const struct ch_resource *r, struct ch_err *err) {
  (void)in;
  if (graph_resource_named(r, err))
    return err->code;
  return isowire_put_resource(ctx, r, err);
}

static int emit_grant(void *ctx, struct instance *in, const struct ch_grant *g,
                      struct ch_err *err) {
  (void)in;
  return isowire_put_grant(ctx, g, err);
}

/* Close every descriptor but stdio and `keep`: a fork copies them all
   (O_CLOEXEC only acts on exec), and a sibling's pipe end held here would
   keep that sibling's reader from ever seeing its end of stream; the
   listener and the other tenants' connections are not ours either. */
static void close_inherited(int keep) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
  if ((keep <= 3 || close_range(3, (unsigned)keep - 1, 0) == 0) &&
      close_range((unsigned)keep + 1, ~0U, 0) == 0)
    return;
#endif
  for (long fd = 3, max = sysconf(_SC_OPEN_MAX); fd < max && fd < 65536; fd++)
    if (fd != keep)
      close((int)fd);
}

/*
 * Make a child forked from a host with other threads (serve's tenants,
 * the listener, engine workers) fit to run: only the forking thread came
 * along, so any lock another thread held stays held here. The log's locks
 * were held across the fork (log_fork_*); the HTTP pool and the pacing
 * table start fresh rather than use the parent's (their locks, sockets
 * and TLS state belong to threads that are gone). Signals: the host's
 * mask (serve blocks SIGTERM for its sigwait thread) is cleared so the
 * stop handler runs; a hangup meant for the host's reload is ignored.
 */
static int child_reinit(int keep) {
  sigset_t none;

  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  signal(SIGHUP, SIG_IGN);
  close_inherited(keep);
  pace_fork_child();
  return http_fork_child();
}

/* The http_client_watch_stats() callback of a child: one writer (under
   the client's lock), the host reads. */
static void publish_http(void *arg, const struct http_stats *st) {
  struct shared_http *sh = arg;

  atomic_store(&sh->requests, st->requests);
  atomic_store(&sh->retries, st->retries);
  atomic_store(&sh->throttled, st->throttled);
  atomic_store(&sh->bytes_in, st->bytes_in);
  atomic_store(&sh->bytes_out, st->bytes_out);
  atomic_store(&sh->errors, st->errors);
  atomic_store(&sh->wait_us, (uint64_t)(st->wait_s * 1e6));
}

/* Open the plugin, sync the instance into the stream, report, exit. */
static _Noreturn void child_main(struct child *ch, const struct engine_opts *o,
                                 pid_t host) {
  struct instance *in = ch->in;
  struct isowire_writer w;
  struct engine_emit emit = {emit_resource, emit_grant, &w};
  struct engine_opts eo = *o;
  struct isowire_status st = {0};
  struct http_stats hs;
  struct ch_err err = {0};
  int rc;

  /* never outlive the host (it may be SIGKILLed) */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != host)
    _exit(1);
  host_pid = host;
  child_shared = ch->shared;
  install_fatal_handlers();
  if (child_reinit(ch->fd) != 0 || isowire_writer_init(&w, ch->fd) != CH_OK)
    _exit(1);
  http_client_watch_stats(in->hctx.http, publish_http, &ch->shared->http);
  isowire_put_hello(&w, &err);
  if (instance_open(in, &err) != CH_OK) {
    instance_fail(in, "open: %s", err.msg);
  } else {
    eo.emit = &emit;
    eo.progress = 0;
    rc = engine_sync(&in, 1, NULL, &eo);
    if (rc == CH_E_NOMEM)
      instance_fail(in, "out of memory during the sync");
    st.stopped = rc == CH_E_STOPPED;
  }
  http_client_stats(in->hctx.http, &hs);
  st.failed = instance_failed(in);
  st.pages = in->pages;
  st.warnings = in->warnings;
  st.requests = hs.requests;
  st.retries = hs.retries;
  st.wait_us = (uint64_t)(hs.wait_s * 1e6);
  st.throttled = hs.throttled;
  st.bytes_in = hs.bytes_in;
  st.bytes_out = hs.bytes_out;
  st.errors = hs.errors;
  snprintf(st.error, sizeof(st.error), "%s", in->error);
  if (isowire_put_status(&w, &st, &err) != CH_OK ||
      isowire_flush(&w, &err) != CH_OK)
    _exit(1);
  /* the plugin's close() runs here too, isolated like its other ops */
  instance_release(in);
  _exit(0);
}

/* ---- the host ----------------------------------------------------------- */

static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;

void isolate_choose(struct instance **insts, size_t n, const struct config *c,
                    enum config_isolation dflt) {
  for (size_t i = 0; i < n; i++) {
    enum config_isolation iso = insts[i]->ci->isolation;
    if (iso == CFG_ISOLATION_UNSET)
      iso = c->isolation;
    if (iso == CFG_ISOLATION_UNSET)
      iso = dflt;
    insts[i]->isolated = iso == CFG_ISOLATION_PROCESS;
  }
}

/* Stop the child for good: its records are no longer wanted. */
static void kill_child(struct child *ch) {
  atomic_store(&ch->killed, 1);
  kill(ch->pid, SIGKILL);
}

/* One frame into the graph, as the in-process sink would add it. */
static int ingest(struct child *ch, const struct isowire_frame *f) {
  struct instance *in = ch->in;
  struct ch_err err = {0};

  switch (f->kind) {
  case ISOWIRE_RESOURCE:
    if (graph_add_resource(ch->graph, in->graph_index, &f->res, &err) !=
        CH_OK) {
      instance_fail(in, "malformed resource: %s", err.msg);
      return -1;
    }
    in->resources++;
    break;
  case ISOWIRE_GRANT:
    if (graph_add_grant(ch->graph, in->graph_index, &f->grant, &err) != CH_OK) {
      instance_fail(in, "malformed grant: %s", err.msg);
      return -1;
    }
    in->grants++;
    break;
  case ISOWIRE_STATUS:
    ch->status = f->status;
    ch->got_status = 1;
    break;
  default:
    break;
  }
  return 0;
}

static void *reader_main(void *arg) {
  struct child *ch = arg;
  struct isowire_reader r;
  struct isowire_frame f;
  struct ch_err err = {0};
  int rc;

  isowire_reader_init(&r, ch->fd);
  while ((rc = isowire_next(&r, &f, &err)) > 0) {
    if (ingest(ch, &f) != 0) {
      kill_child(ch);
      break;
    }
  }
  if (rc < 0) {
    /* reported once the child's end is known: a crash mid-write also
       truncates the stream, and is the better message */
    snprintf(ch->stream_error, sizeof(ch->stream_error), "%s", err.msg);
    kill_child(ch);
  }
  isowire_reader_release(&r);
  close(ch->fd);
  ch->fd = -1;
  atomic_store(&ch->done, 1);
  return NULL;
}

static int start_child(struct child *ch, const struct engine_opts *opts) {
  int nslots = (opts->workers > 0 ? opts->workers : 1) + 1;
  int fds[2];
  pid_t host = getpid();

  ch->shared_size =
      sizeof(struct shared) + (size_t)nslots * sizeof(struct op_slot);
  ch->shared = mmap(NULL, ch->shared_size, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (ch->shared == MAP_FAILED) {
    ch->shared = NULL;
    return -1;
  }
  atomic_store(&ch->shared->crashed, -1);
  ch->shared->nslots = nslots;
  /* close-on-exec: nothing the host or a plugin ever executes may hold
     the pipe open (a fork's copies are closed by close_inherited) */
  if (pipe2(fds, O_CLOEXEC) != 0)
    return -1;
  /* One fork at a time: fflush(NULL) holds stdio's list lock while it
     locks each stream, fork() takes that list lock, and log_fork_prepare
     holds stderr; two tenants forking at once could deadlock on them. */
  pthread_mutex_lock(&fork_lock);
  fflush(NULL); /* nothing buffered may be written twice */
  log_fork_prepare();
  ch->pid = fork();
  if (ch->pid == 0) {
    log_fork_child();
    pthread_mutex_unlock(&fork_lock);
    ch->fd = fds[1];
    child_main(ch, opts, host);
  }
  log_fork_parent();
  pthread_mutex_unlock(&fork_lock);
  if (ch->pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  close(fds[1]);
  ch->fd = fds[0];
  return 0;
}

int isolate_start(struct instance **insts, size_t n, struct graph *g,
                  const struct engine_opts *opts, struct isolate **out) {
  struct isolate *iso;
  size_t count = 0;

  *out = NULL;
  for (size_t i = 0; i < n; i++)
    count += insts[i]->isolated;
  if (!count)
    return CH_OK;
  iso = calloc(1, sizeof(*iso));
  if (!iso || !(iso->kids = calloc(count, sizeof(*iso->kids)))) {
    free(iso);
    return CH_E_NOMEM;
  }
  /* every fork first, before this run's reader threads */
  for (size_t i = 0; i < n; i++) {
    struct child *ch;
    if (!insts[i]->isolated)
      continue;
    ch = &iso->kids[iso->n++];
    ch->in = insts[i];
    ch->graph = g;
    ch->fd = -1;
    if (start_child(ch, opts) != 0) {
      instance_fail(insts[i], "cannot start the plugin's process: %s",
                    strerror(errno));
      ch->pid = 0;
      atomic_store(&ch->done, 1);
    }
  }
  for (size_t i = 0; i < iso->n; i++) {
    struct child *ch = &iso->kids[i];
    if (ch->pid <= 0)
      continue;
    if (pthread_create(&ch->reader, NULL, reader_main, ch) == 0) {
      ch->reader_started = 1;
    } else {
      instance_fail(ch->in, "cannot start reading the plugin's records");
      kill_child(ch);
      atomic_store(&ch->done, 1);
    }
  }
  *out = iso;
  return CH_OK;
}

/* " in list(user)": the op of the thread that faulted, else the ops in
   flight when the child died ("" when none). */
static void ops_in_flight(const struct shared *sh, char *buf, size_t n) {
  size_t len = 0;
  int crashed = atomic_load(&sh->crashed);

  buf[0] = '\0';
  if (crashed >= 0 && crashed < sh->nslots) {
    snprintf(buf, n, " in %s", sh->slots[crashed].op);
    return;
  }
  for (int i = 0; i < sh->nslots && len + 1 < n; i++) {
    if (!atomic_load(&sh->slots[i].busy))
      continue;
    len += (size_t)snprintf(buf + len, n - len, "%s%s", len ? " or " : " in ",
                            sh->slots[i].op);
  }
}

/* What the child has published of its counters so far, as the instance's
   (for the progress line while it runs, and as its figures if it never
   reports them itself). */
static void read_child_http(struct child *ch) {
  const struct shared_http *sh = &ch->shared->http;
  struct http_stats hs = {0};

  hs.requests = atomic_load(&sh->requests);
  hs.retries = atomic_load(&sh->retries);
  hs.throttled = atomic_load(&sh->throttled);
  hs.bytes_in = atomic_load(&sh->bytes_in);
  hs.bytes_out = atomic_load(&sh->bytes_out);
  hs.errors = atomic_load(&sh->errors);
  hs.wait_s = (double)atomic_load(&sh->wait_us) / 1e6;
  instance_set_child_http(ch->in, &hs);
}

/* Turn how the child ended into the instance's result. Its counters are
   what it published, unless its final report came (the same, whole). */
static void conclude(struct child *ch, int wstatus) {
  struct instance *in = ch->in;
  const char *plugin = in->plugin->name;
  struct http_stats hs = {0};
  char ops[256];

  read_child_http(ch);
  ops_in_flight(ch->shared, ops, sizeof(ops));
  if (ch->grace_killed) {
    instance_fail(in,
                  "plugin %s did not stop within %d s of the stop request%s "
                  "for %s/%s: killed",
                  plugin, ISOLATE_GRACE_MS / 1000, ops, in->ci->tenant,
                  in->ci->name);
    return;
  }
  /* a signal of its own, not the host's SIGKILL */
  if (WIFSIGNALED(wstatus) &&
      !(atomic_load(&ch->killed) && WTERMSIG(wstatus) == SIGKILL)) {
    const char *name = stop_signal_name(WTERMSIG(wstatus));
    char num[24];
    if (!name) {
      snprintf(num, sizeof(num), "signal %d", WTERMSIG(wstatus));
      name = num;
    }
    instance_fail(in, "plugin %s crashed (%s)%s for %s/%s", plugin, name, ops,
                  in->ci->tenant, in->ci->name);
    return;
  }
  /* killed because the host failed it (a timeout): that error stands */
  if (atomic_load(&ch->killed) && instance_failed(in))
    return;
  if (ch->stream_error[0]) {
    instance_fail(in, "plugin %s sent a bad record stream for %s/%s: %s",
                  plugin, in->ci->tenant, in->ci->name, ch->stream_error);
    return;
  }
  if (atomic_load(&ch->killed))
    return; /* a malformed record: the reader failed the instance */
  if (!ch->got_status) {
    instance_fail(in,
                  "plugin %s's process for %s/%s exited with status %d "
                  "before reporting its result%s",
                  plugin, in->ci->tenant, in->ci->name,
                  WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1, ops);
    return;
  }
  in->pages = ch->status.pages;
  in->warnings = ch->status.warnings;
  hs.requests = ch->status.requests;
  hs.retries = ch->status.retries;
  hs.wait_s = (double)ch->status.wait_us / 1e6;
  hs.throttled = ch->status.throttled;
  hs.bytes_in = ch->status.bytes_in;
  hs.bytes_out = ch->status.bytes_out;
  hs.errors = ch->status.errors;
  instance_set_child_http(in, &hs);
  if (ch->status.failed)
    /* the child logged it */
    instance_fail_logged(in, ch->status.error[0] ? ch->status.error : "failed");
  else if (ch->status.stopped)
    /* Stopped before its end (a SIGTERM to the whole process group, as
       systemd's stop sends, reaches the child too): what it sent is a
       part, never a complete run to write or record as good. */
    instance_fail(in,
                  "plugin %s's process for %s/%s was stopped before the end "
                  "of its sync: its records are incomplete",
                  plugin, in->ci->tenant, in->ci->name);
}

static int all_done(const struct isolate *iso) {
  for (size_t i = 0; i < iso->n; i++)
    if (!atomic_load(&iso->kids[i].done))
      return 0;
  return 1;
}

void isolate_finish(struct isolate *iso) {
  int64_t deadline = 0;

  if (!iso)
    return;
  while (!all_done(iso)) {
    struct timespec ts = {0, 20 * 1000000L};
    /* failed by the host meanwhile (its `timeout:`): its records are no
       longer wanted, and a plugin blocked in an op would never stop */
    for (size_t i = 0; i < iso->n; i++) {
      struct child *ch = &iso->kids[i];
      if (ch->shared)
        read_child_http(ch); /* the counters so far, for sync_progress */
      if (!atomic_load(&ch->done) && !atomic_load(&ch->killed) &&
          instance_failed(ch->in))
        kill_child(ch);
    }
    if (stop_requested() && !deadline) {
      /* children the terminal signalled have their flag already */
      for (size_t i = 0; i < iso->n; i++)
        if (!atomic_load(&iso->kids[i].done))
          kill(iso->kids[i].pid, SIGTERM);
      deadline = util_mono_us() + ISOLATE_GRACE_MS * 1000LL;
    }
    if (deadline && util_mono_us() >= deadline) {
      for (size_t i = 0; i < iso->n; i++) {
        struct child *ch = &iso->kids[i];
        if (!atomic_load(&ch->done) && !ch->grace_killed) {
          ch->grace_killed = 1;
          kill(ch->pid, SIGKILL);
        }
      }
    }
    nanosleep(&ts, NULL);
  }
  for (size_t i = 0; i < iso->n; i++) {
    struct child *ch = &iso->kids[i];
    int wstatus = 0;

    if (ch->reader_started)
      pthread_join(ch->reader, NULL);
    if (ch->pid > 0) {
      while (waitpid(ch->pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
      conclude(ch, wstatus);
    }
    if (ch->fd >= 0)
      close(ch->fd);
    if (ch->shared)
      munmap(ch->shared, ch->shared_size);
  }
  free(iso->kids);
  free(iso);
}
