/* SPDX-License-Identifier: MIT */
/* The option engine's typed half (see options.h). */
#include "autoconfig.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

int options_parse_duration(const char *s, long long *ms) {
  static const struct {
    const char *suffix;
    double ms;
  } units[] = {{"ms", 1}, {"s", 1e3}, {"m", 6e4}, {"h", 3.6e6}, {"", 1e3}};
  char *end = NULL;
  double v;

  if (!s || *s < '0' || *s > '9')
    return -1;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s)
    return -1;
  for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
    if (strcmp(end, units[i].suffix) == 0) {
      v *= units[i].ms;
      /* d - d is 0 only for finite values; 2^53 ms is 285,000 years */
      if (v - v != 0 || v > 9007199254740992.0)
        return -1;
      *ms = (long long)(v + 0.5);
      return 0;
    }
  }
  return -1;
}

/* The value of `text` as a number for a range check. */
static int as_number(enum ch_opt_type type, const char *text, double *out) {
  char *end = NULL;
  long long ms;

  if (!text || !*text)
    return -1;
  if (type == CH_OPT_DURATION) {
    if (options_parse_duration(text, &ms))
      return -1;
    *out = (double)ms;
    return 0;
  }
  errno = 0;
  if (type == CH_OPT_INT)
    *out = (double)strtoll(text, &end, 10);
  else
    *out = strtod(text, &end);
  if (errno || end == text || *end || *out - *out != 0)
    return -1;
  return 0;
}

static int ranged(enum ch_opt_type t) {
  return t == CH_OPT_INT || t == CH_OPT_NUMBER || t == CH_OPT_DURATION;
}

int options_check_range_words(const struct ch_config_key *opt,
                              const struct ch_opt_value *v, const char *noun,
                              char *msg, size_t msgsz) {
  double x, lo, hi;
  const char *sp = noun && *noun ? " " : "";

  if ((!opt->min && !opt->max) || !ranged(opt->type) || !v->set ||
      as_number(opt->type, v->str, &x))
    return 0;
  if ((!opt->min || (!as_number(opt->type, opt->min, &lo) && x >= lo)) &&
      (!opt->max || (!as_number(opt->type, opt->max, &hi) && x <= hi)))
    return 0;
  if (opt->min && opt->max && noun)
    snprintf(msg, msgsz, "must be %s%sbetween %s and %s, not %s", noun, sp,
             opt->min, opt->max, v->str);
  else if (opt->min && opt->max)
    snprintf(msg, msgsz, "must be %s..%s, not %s", opt->min, opt->max, v->str);
  else if (opt->min)
    snprintf(msg, msgsz, "must be %s%sat least %s, not %s", noun ? noun : "",
             sp, opt->min, v->str);
  else
    snprintf(msg, msgsz, "must be %s%sat most %s, not %s", noun ? noun : "", sp,
             opt->max, v->str);
  return -1;
}

int options_check_range(const struct ch_config_key *opt,
                        const struct ch_opt_value *v, char *msg, size_t msgsz) {
  return options_check_range_words(opt, v, NULL, msg, msgsz);
}

size_t options_field_size(enum ch_opt_type type) {
  switch (type) {
  case CH_OPT_INT:
  case CH_OPT_DURATION:
    return sizeof(long long);
  case CH_OPT_BOOL:
    return sizeof(int);
  case CH_OPT_NUMBER:
    return sizeof(double);
  case CH_OPT_LIST:
    return sizeof(const char *const *);
  default:
    return sizeof(const char *);
  }
}

int options_check_table(const struct ch_config_key *table, uint32_t config_size,
                        const char *path, struct ch_err *err) {
  double x;

  for (const struct ch_config_key *o = table; o && o->name; o++) {
    size_t w = options_field_size(o->type);

    if (o->type < CH_OPT_STRING || o->type > CH_OPT_DURATION)
      return ch_err_set(err, CH_E_CONFIG, "%s: option '%s' has unknown type %d",
                        path, o->name, (int)o->type);
    if ((o->min || o->max) && !ranged(o->type))
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: option '%s' has bounds but is not a number, "
                        "integer or duration",
                        path, o->name);
    if ((o->min && as_number(o->type, o->min, &x)) ||
        (o->max && as_number(o->type, o->max, &x)))
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: option '%s' has a bound that is not of its type",
                        path, o->name);
    if (!config_size)
      continue;
    if (o->offset % w || o->offset > config_size || config_size - o->offset < w)
      return ch_err_set(err, CH_E_CONFIG,
                        "%s: option '%s' has offset %zu, outside (or "
                        "misaligned in) its %u-byte config struct",
                        path, o->name, o->offset, config_size);
    for (const struct ch_config_key *p = table; p != o; p++) {
      if (o->offset < p->offset + options_field_size(p->type) &&
          p->offset < o->offset + w)
        return ch_err_set(err, CH_E_CONFIG,
                          "%s: options '%s' and '%s' share bytes of the "
                          "config struct (a missing CH_OPT_AT?)",
                          path, p->name, o->name);
    }
  }
  return CH_OK;
}

/* The length of `url` without its trailing slashes. */
static size_t url_len(const char *url) {
  size_t n = strlen(url);
  while (n && url[n - 1] == '/')
    n--;
  return n;
}

void *options_fill(const struct ch_config_key *table,
                   const struct ch_opt_value *values, size_t n, size_t size) {
  size_t extra = 0;
  char *blk, *strs;

  for (size_t i = 0; i < n; i++) {
    if (table[i].type == CH_OPT_URL && values[i].set)
      extra += url_len(values[i].str) + 1;
  }
  blk = calloc(1, size + extra);
  if (!blk)
    return NULL;
  strs = blk + size;
  for (size_t i = 0; i < n; i++) {
    const struct ch_opt_value *v = &values[i];
    char *at = blk + table[i].offset;
    long long num = v->num;
    double d;
    int b = (int)v->num;
    const char *s = v->str;

    if (!v->set)
      continue;
    switch (table[i].type) {
    case CH_OPT_INT:
    case CH_OPT_DURATION:
      memcpy(at, &num, sizeof(num));
      break;
    case CH_OPT_BOOL:
      memcpy(at, &b, sizeof(b));
      break;
    case CH_OPT_NUMBER:
      d = strtod(v->str, NULL);
      memcpy(at, &d, sizeof(d));
      break;
    case CH_OPT_LIST:
      memcpy(at, &v->list, sizeof(v->list));
      break;
    case CH_OPT_URL:
      memcpy(strs, v->str, url_len(v->str));
      s = strs;
      strs += url_len(v->str) + 1;
      /* fall through */
    default:
      memcpy(at, &s, sizeof(s));
      break;
    }
  }
  return blk;
}

#define HTTP_AT(f) CH_OPT_AT(struct options_http, f)

const struct ch_config_key options_http_table[] = {
    {CH_OPTION("ca_file", CH_OPT_PATH, 0, NULL,
               "PEM bundle to trust instead of the system store"),
     HTTP_AT(ca_file)},
    {CH_OPTION("max_requests_per_second", CH_OPT_NUMBER, 0, NULL,
               "client-side request rate cap (a number, e.g. 2.5); unset or "
               "0 = none"),
     CH_OPT_RANGE("0", NULL), HTTP_AT(max_rps)},
    {CH_OPTION("timeout_seconds", CH_OPT_DURATION, 0, NULL,
               "total time per attempt (seconds, or 500ms, 2m); default: the "
               "host's"),
     CH_OPT_RANGE("1ms", "86400"), HTTP_AT(timeout_ms)},
    {CH_OPTION("connect_timeout_seconds", CH_OPT_DURATION, 0, NULL,
               "time to connect (seconds, or 500ms, 2m); default: the host's"),
     CH_OPT_RANGE("1ms", "86400"), HTTP_AT(connect_timeout_ms)},
    {CH_OPTION_END}};

const struct ch_config_key options_http_aliases[] = {
    {CH_OPTION("ca_file", CH_OPT_PATH, 0, NULL,
               "deprecated: set ca_file in the instance's http: block")},
    {CH_OPTION("max_requests_per_second", CH_OPT_NUMBER, 0, NULL,
               "deprecated: set max_requests_per_second in the instance's "
               "http: block"),
     CH_OPT_RANGE("0", NULL)},
    {CH_OPTION_END}};
