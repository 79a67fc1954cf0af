/* SPDX-License-Identifier: MIT */
/* Config errors that point at a node, the scalar forms host keys and
   options share (integers, booleans, seconds, durations, URLs, names), and
   unknown keys with a did-you-mean (see cfg_int.h). */
#include "autoconfig.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"
#include "log.h"
#include "util.h"

#define CH_VPRINTF(f) __attribute__((format(printf, f, 0)))

/* ---- errors ------------------------------------------------------------- */

static int fail_vat(struct ch_err *err, const char *file, unsigned line,
                    unsigned col, const char *fmt, va_list ap) CH_VPRINTF(5);
static int fail_vat(struct ch_err *err, const char *file, unsigned line,
                    unsigned col, const char *fmt, va_list ap) {
  int len;

  if (!err)
    return CH_E_CONFIG;
  err->code = CH_E_CONFIG;
  len = snprintf(err->msg, sizeof(err->msg), "%s:%u:%u: ", file, line, col);
  if (len >= 0 && (size_t)len < sizeof(err->msg))
    vsnprintf(err->msg + len, sizeof(err->msg) - (size_t)len, fmt, ap);
  return CH_E_CONFIG;
}

int cfg_fail_at(struct ch_err *err, const char *file, unsigned line,
                unsigned col, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_vat(err, file, line, col, fmt, ap);
  va_end(ap);
  return CH_E_CONFIG;
}

int cfg_fail(struct ch_err *err, const struct cfg_node *n, const char *fmt,
             ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_vat(err, n->file, n->line, n->col, fmt, ap);
  va_end(ap);
  return CH_E_CONFIG;
}

int cfg_nomem(struct ch_err *err) {
  return ch_err_set(err, CH_E_NOMEM, "out of memory");
}
static int is_name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
         (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
}

/* Tenant and instance names end up in graph keys and log prefixes. */
int cfg_valid_name(const char *s) {
  if (!*s)
    return 0;
  for (; *s; s++) {
    if (!is_name_char(*s))
      return 0;
  }
  return 1;
}

static int ascii_ieq(const char *a, const char *b) {
  for (; *a && *b; a++, b++) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z')
      x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z')
      y = (char)(y - 'A' + 'a');
    if (x != y)
      return 0;
  }
  return *a == *b;
}

/* YAML's null: an empty plain value (`key:`), `~` or `null`. */
int cfg_is_null(const struct cfg_node *n) {
  if (!n || n->kind != CFG_SCALAR || !n->plain)
    return 0;
  return !n->value[0] || strcmp(n->value, "~") == 0 ||
         strcmp(n->value, "null") == 0 || strcmp(n->value, "Null") == 0 ||
         strcmp(n->value, "NULL") == 0;
}

/* Decimal only: "010" is ten, not eight, and no "0x" surprises. */
int cfg_parse_ll(const char *s, long long *out) {
  const char *p = s;
  long long v = 0;
  int neg = 0;

  if (*p == '+' || *p == '-')
    neg = *p++ == '-';
  if (!*p)
    return -1;
  for (; *p; p++) {
    int d;
    if (*p < '0' || *p > '9')
      return -1;
    d = *p - '0';
    if (v > (LLONG_MAX - d) / 10)
      return -1;
    v = v * 10 + d;
  }
  *out = neg ? -v : v;
  return 0;
}

int cfg_parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"true", "yes", "on"};
  static const char *const no[] = {"false", "no", "off"};
  for (size_t i = 0; i < 3; i++) {
    if (ascii_ieq(s, yes[i])) {
      *out = 1;
      return 0;
    }
    if (ascii_ieq(s, no[i])) {
      *out = 0;
      return 0;
    }
  }
  return -1;
}

/* "30", "2.5", "0.25" seconds -> milliseconds, without strtod's locale. */
static int parse_seconds_ms(const char *s, long max_s, long *out_ms) {
  long whole = 0, frac = 0, scale = 100;
  const char *p = s;

  if (*p < '0' || *p > '9')
    return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    whole = whole * 10 + (*p - '0');
    if (whole > max_s)
      return -1;
  }
  if (*p == '.') {
    p++;
    if (*p < '0' || *p > '9')
      return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
      frac += (*p - '0') * scale;
      scale /= 10;
    }
  }
  if (*p)
    return -1;
  *out_ms = whole * 1000 + frac;
  if (*out_ms <= 0 || *out_ms > max_s * 1000)
    return -1;
  return 0;
}

int config_parse_duration(const char *s, long *out_ms) {
  static const struct {
    const char *suffix;
    long ms;
  } units[] = {{"ms", 1},       {"s", 1000},      {"m", 60000},
               {"h", 3600000L}, {"d", 86400000L}, {"", 1000}};
  size_t len = strlen(s), num = 0;
  char digits[32];
  long whole_ms;

  while (num < len && ((s[num] >= '0' && s[num] <= '9') || s[num] == '.'))
    num++;
  if (!num || num >= sizeof(digits))
    return -1;
  memcpy(digits, s, num);
  digits[num] = '\0';
  for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
    long max_s = 30L * 86400L * 1000L / units[u].ms; /* 30 days in all */
    if (strcmp(s + num, units[u].suffix) != 0)
      continue;
    /* parse_seconds_ms reads "N[.F]" as N.F thousandths of the unit */
    if (parse_seconds_ms(digits, max_s, &whole_ms))
      return -1;
    *out_ms = (long)((double)whole_ms * (double)units[u].ms / 1000.0);
    return *out_ms > 0 ? 0 : -1;
  }
  return -1;
}

/* http:// or https:// followed by a host; no spaces or control bytes. */
int cfg_valid_url(const char *s) {
  const char *host;

  if (strncmp(s, "https://", 8) == 0)
    host = s + 8;
  else if (strncmp(s, "http://", 7) == 0)
    host = s + 7;
  else
    return 0;
  if (!*host || *host == '/' || *host == '?' || *host == '#')
    return 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p <= 0x20 || *p == 0x7f)
      return 0;
  }
  return 1;
}
/* "<what>; did you mean 'y'? (<label>: a, b)". The list is never cut: when
   the message outgrows a ch_err, the list is logged on a line of its own
   ("<listed>: a, b") and the error points at it. `names` is a table whose
   rows start with a name, `stride` bytes apart. */
int cfg_fail_unknown(struct ch_err *err, const struct cfg_node *key,
                     const char *what, const char *label, const char *listed,
                     const void *names, size_t n, size_t stride) {
  const char *near = util_closest(key->value, names, n, stride);
  char hint[160] = "";
  size_t len = sizeof("none");
  int head;
  char *list;

  if (near)
    snprintf(hint, sizeof(hint), "; did you mean '%s'?", near);
  for (size_t j = 0; j < n; j++)
    len += strlen(*(const char *const *)((const char *)names + j * stride)) + 2;
  list = malloc(len);
  if (!list)
    return cfg_nomem(err);
  strcpy(list, n ? "" : "none");
  for (size_t j = 0; j < n; j++) {
    if (j)
      strcat(list, ", ");
    strcat(list, *(const char *const *)((const char *)names + j * stride));
  }
  head = snprintf(NULL, 0, "%s:%u:%u: %s%s (%s: ", key->file, key->line,
                  key->col, what, hint, label);
  if (head < 0 || (size_t)head + strlen(list) + 2 > sizeof(err->msg)) {
    log_error("%s:%u:%u: %s: %s", key->file, key->line, key->col, listed, list);
    strcpy(list, "on the line above");
  }
  cfg_fail(err, key, "%s%s (%s: %s)", what, hint, label, list);
  free(list);
  return CH_E_CONFIG;
}
