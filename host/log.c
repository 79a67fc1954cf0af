/* SPDX-License-Identifier: MIT */
/* Logging to stderr as text or JSON lines, with every known secret
   replaced by "***" before a line leaves the process. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "log.h"
#include "utf8.h"
#include "util.h"

#define LOG_LINE_MAX 4096
#define SECRET_MIN_LEN 4
/* Longest secret a line cut is guaranteed not to split. */
#define LOG_SECRET_WINDOW 8192

static enum ch_log_level cur_level = CH_LOG_INFO;
static enum log_format cur_format = LOG_TEXT;
static int cur_quiet;
static int cur_stamp; /* text lines start with a timestamp */

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
struct secret {
  char *value;
  size_t len;
};
static struct secret *secrets;
static size_t nsecrets;
/* The bytes some secret starts with: the redaction looks for a match only
   there (every debug line of a sync is redacted, each body a kilobyte or
   more; comparing at every byte against every secret was a third of a
   debug sync's CPU). */
static unsigned char secret_first[256];

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum ch_log_level level, enum log_format format, int quiet) {
  cur_level = level;
  cur_format = format;
  cur_quiet = quiet;
  /* A terminal shows lines as they come; a file or a journal needs the
     time on each. */
  cur_stamp = !isatty(STDERR_FILENO);
}

enum log_format log_format(void) { return cur_format; }

int log_parse_level(const char *name, enum ch_log_level *out) {
  for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
    if (strcmp(name, level_names[i]) == 0) {
      *out = (enum ch_log_level)i;
      return 0;
    }
  }
  if (strcmp(name, "warning") == 0) {
    *out = CH_LOG_WARN;
    return 0;
  }
  return -1;
}

void log_add_secret(const char *value) {
  char *copy;
  struct secret *grown;

  if (!value || strlen(value) < SECRET_MIN_LEN)
    return;
  pthread_mutex_lock(&secret_lock);
  for (size_t i = 0; i < nsecrets; i++) {
    if (strcmp(secrets[i].value, value) == 0)
      goto out;
  }
  copy = strdup(value);
  grown = realloc(secrets, (nsecrets + 1) * sizeof(*secrets));
  if (!copy || !grown) {
    free(copy);
    if (grown)
      secrets = grown;
    goto out;
  }
  secrets = grown;
  secrets[nsecrets++] = (struct secret){copy, strlen(copy)};
  secret_first[(unsigned char)copy[0]] = 1;
out:
  pthread_mutex_unlock(&secret_lock);
}

void log_cleanup(void) {
  pthread_mutex_lock(&secret_lock);
  for (size_t i = 0; i < nsecrets; i++)
    free(secrets[i].value);
  free(secrets);
  secrets = NULL;
  nsecrets = 0;
  memset(secret_first, 0, sizeof(secret_first));
  pthread_mutex_unlock(&secret_lock);
}

void log_fork_prepare(void) {
  flockfile(stderr);
  pthread_mutex_lock(&secret_lock);
}

void log_fork_parent(void) {
  pthread_mutex_unlock(&secret_lock);
  funlockfile(stderr);
}

/* The forking thread is the owner on both sides, so unlocking is valid. */
void log_fork_child(void) { log_fork_parent(); }

/* The longest registered secret that starts at `p`, with `left` bytes
   of text from there, or 0. */
static size_t secret_at(const char *p, size_t left) {
  size_t best = 0;

  if (!secret_first[(unsigned char)*p])
    return 0;
  for (size_t i = 0; i < nsecrets; i++) {
    size_t len = secrets[i].len;
    if (len > best && len <= left && memcmp(p, secrets[i].value, len) == 0)
      best = len;
  }
  return best;
}

void log_redact(const char *in, char *out, size_t outsz) {
  const char *end = in + strlen(in);
  size_t o = 0;

  if (!outsz)
    return;
  pthread_mutex_lock(&secret_lock);
  for (const char *p = in; *p && o + 1 < outsz;) {
    size_t len = nsecrets ? secret_at(p, (size_t)(end - p)) : 0;
    if (len) {
      for (const char *m = "***"; *m && o + 1 < outsz; m++)
        out[o++] = *m;
      p += len;
    } else {
      out[o++] = *p++;
    }
  }
  out[o] = '\0';
  pthread_mutex_unlock(&secret_lock);
}

/* "2026-01-31T12:00:00.123Z" (UTC, milliseconds). */
static void timestamp(char *buf, size_t n) {
  struct timespec now;
  struct tm tm;
  size_t len;

  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  len = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + len, n - len, ".%03dZ", (int)(now.tv_nsec / 1000000L % 1000));
}

/* The source members of a JSON line. A prefix of the instance label's form
   "plugin:tenant/instance" (instance.h; tenant and instance names hold no
   ':' or '/') is split into three members; any other is "source". */
static void add_source(struct json_object *o, const char *prefix) {
  const char *colon = strrchr(prefix, ':');
  const char *slash = colon ? strchr(colon, '/') : NULL;

  if (!slash || colon == prefix || slash == colon + 1 || !slash[1] ||
      strchr(slash + 1, '/')) {
    json_object_object_add(o, "source", json_object_new_string(prefix));
    return;
  }
  json_object_object_add(
      o, "plugin", json_object_new_string_len(prefix, (int)(colon - prefix)));
  json_object_object_add(
      o, "tenant",
      json_object_new_string_len(colon + 1, (int)(slash - colon - 1)));
  json_object_object_add(o, "instance", json_object_new_string(slash + 1));
}

/* Print one JSON line built from `head` (time, level, ...) and the members
   of `rest`; takes both. Redacted as a whole, so a secret inside any value
   is caught. */
static void emit_json(struct json_object *head, struct json_object *rest) {
  const char *text;
  char *clean;
  size_t n;

  if (rest) {
    json_object_object_foreach(rest, key, val) {
      json_object_object_add(head, key, json_object_get(val));
    }
    json_object_put(rest);
  }
  text = json_object_to_json_string_ext(
      head, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  n = strlen(text) + 1;
  clean = malloc(n);
  if (clean) {
    log_redact(text, clean, n);
    fprintf(stderr, "%s\n", clean);
    free(clean);
  }
  json_object_put(head);
}

static struct json_object *json_head(enum ch_log_level level) {
  char ts[40];
  struct json_object *o = json_object_new_object();

  timestamp(ts, sizeof(ts));
  json_object_object_add(o, "time", json_object_new_string(ts));
  json_object_object_add(o, "level",
                         json_object_new_string(level_names[level]));
  return o;
}

int log_enabled(enum ch_log_level level) {
  return level <= cur_level && (!cur_quiet || level == CH_LOG_ERROR);
}

struct json_object *log_json_seconds(double v) {
  char text[32];
  snprintf(text, sizeof(text), "%.3f", v);
  return json_object_new_double_s(v, text);
}

void log_event(enum ch_log_level level, const char *event,
               struct json_object *fields) {
  struct json_object *head;

  if (cur_format != LOG_JSON || !log_enabled(level)) {
    json_object_put(fields);
    return;
  }
  head = json_head(level);
  json_object_object_add(head, "event", json_object_new_string(event));
  flockfile(stderr);
  emit_json(head, fields);
  funlockfile(stderr);
}

void log_vmsg(const char *prefix, enum ch_log_level level, const char *fmt,
              va_list ap) {
  /* Formatted and redacted wider than a line and only then cut, so the
     cut cannot leave half a secret behind. */
  char raw[LOG_LINE_MAX + LOG_SECRET_WINDOW], clean[sizeof(raw)];
  size_t n;

  if (!log_enabled(level))
    return;
  vsnprintf(raw, sizeof(raw), fmt, ap);
  log_redact(raw, clean, sizeof(clean));
  /* A plugin's words may quote bytes that are not UTF-8 (a name as the
     server sent it): U+FFFD keeps the line valid text, and JSON. */
  utf8_repair(clean, raw, sizeof(raw));
  memcpy(clean, raw, strlen(raw) + 1);
  n = strlen(clean);
  if (n >= LOG_LINE_MAX) {
    n = LOG_LINE_MAX - 1;
    while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80)
      n--;
    clean[n] = '\0';
  }

  flockfile(stderr);
  if (cur_format == LOG_JSON) {
    struct json_object *head = json_head(level);
    if (prefix)
      add_source(head, prefix);
    json_object_object_add(head, "msg", json_object_new_string(clean));
    emit_json(head, NULL);
  } else {
    if (cur_stamp) {
      char ts[40];
      timestamp(ts, sizeof(ts));
      fprintf(stderr, "%s ", ts);
    }
    fprintf(stderr, "connhost: %s: ", level_names[level]);
    if (prefix)
      fprintf(stderr, "[%s] ", prefix);
    util_fput_text(clean, stderr);
    putc('\n', stderr);
  }
  funlockfile(stderr);
}

void log_msg(const char *prefix, enum ch_log_level level, const char *fmt,
             ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(prefix, level, fmt, ap);
  va_end(ap);
}
