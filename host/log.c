/* SPDX-License-Identifier: MIT */
/* Logging to stderr as text or JSON lines, with every known secret
   replaced by "***" before a line leaves the process. */
#include "autoconfig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define LOG_LINE_MAX 4096
#define SECRET_MIN_LEN 4
/* Longest secret a line cut is guaranteed not to split. */
#define LOG_SECRET_WINDOW 8192

static enum ch_log_level cur_level = CH_LOG_INFO;
static enum log_format cur_format = LOG_TEXT;
static int cur_quiet;

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static char **secrets;
static size_t nsecrets;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(enum ch_log_level level, enum log_format format, int quiet) {
  cur_level = level;
  cur_format = format;
  cur_quiet = quiet;
}

enum ch_log_level log_level(void) { return cur_level; }

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
  char **grown;

  if (!value || strlen(value) < SECRET_MIN_LEN)
    return;
  pthread_mutex_lock(&secret_lock);
  for (size_t i = 0; i < nsecrets; i++) {
    if (strcmp(secrets[i], value) == 0)
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
  secrets[nsecrets++] = copy;
out:
  pthread_mutex_unlock(&secret_lock);
}

void log_cleanup(void) {
  pthread_mutex_lock(&secret_lock);
  for (size_t i = 0; i < nsecrets; i++)
    free(secrets[i]);
  free(secrets);
  secrets = NULL;
  nsecrets = 0;
  pthread_mutex_unlock(&secret_lock);
}

/* The registered secret that starts at `p`, longest first, or 0. */
static size_t secret_at(const char *p) {
  size_t best = 0;
  for (size_t i = 0; i < nsecrets; i++) {
    size_t len = strlen(secrets[i]);
    if (len > best && strncmp(p, secrets[i], len) == 0)
      best = len;
  }
  return best;
}

void log_redact(const char *in, char *out, size_t outsz) {
  size_t o = 0;

  if (!outsz)
    return;
  pthread_mutex_lock(&secret_lock);
  for (const char *p = in; *p && o + 1 < outsz;) {
    size_t len = nsecrets ? secret_at(p) : 0;
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

static void json_escape(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
}

void log_vmsg(const char *prefix, enum ch_log_level level, const char *fmt,
              va_list ap) {
  /* Formatted and redacted wider than a line and only then cut, so the
     cut cannot leave half a secret behind. */
  char raw[LOG_LINE_MAX + LOG_SECRET_WINDOW], clean[sizeof(raw)];
  size_t n;

  if (level > cur_level || (cur_quiet && level > CH_LOG_ERROR))
    return;
  vsnprintf(raw, sizeof(raw), fmt, ap);
  log_redact(raw, clean, sizeof(clean));
  n = strlen(clean);
  if (n >= LOG_LINE_MAX) {
    n = LOG_LINE_MAX - 1;
    while (n > 0 && ((unsigned char)clean[n] & 0xC0) == 0x80)
      n--;
    clean[n] = '\0';
  }

  flockfile(stderr);
  if (cur_format == LOG_JSON) {
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "{\"time\":\"%s.%03ldZ\",\"level\":\"%s\"", ts,
            now.tv_nsec / 1000000L, level_names[level]);
    if (prefix) {
      fputs(",\"source\":\"", stderr);
      json_escape(stderr, prefix);
      fputc('"', stderr);
    }
    fputs(",\"msg\":\"", stderr);
    json_escape(stderr, clean);
    fputs("\"}\n", stderr);
  } else {
    fprintf(stderr, "connhost: %s: ", level_names[level]);
    if (prefix)
      fprintf(stderr, "[%s] ", prefix);
    fprintf(stderr, "%s\n", clean);
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
