/* SPDX-License-Identifier: MIT */
/* The option engine's typed half: durations, declared ranges, a table's
   sanity at load time, and the config struct a plugin declares, filled
   from resolved values (fluent-bit's config map; nginx's ngx_command_t). */
#ifndef CONNHOST_OPTIONS_H
#define CONNHOST_OPTIONS_H

#include <stddef.h>
#include <stdint.h>

#include <connhost/plugin.h>

/* "500ms", "30s", "2m", "1h" or plain seconds ("2.5") -> milliseconds.
   Returns 0, or -1 for anything else (negative, empty, overflowing). */
int options_parse_duration(const char *s, long long *ms);

/*
 * Whether resolved value `v` of `opt` lies inside its declared bounds.
 * Returns 0 when it does (or when `opt` has none), else -1 with `msg` set
 * to a phrase such as "must be 1..10000, not 0" (the bounds as declared).
 */
int options_check_range(const struct ch_config_key *opt,
                        const struct ch_opt_value *v, char *msg, size_t msgsz);
/* The same in words, for the host's own keys: "must be [noun ]between
   1 and 256, not 0" (noun "" or e.g. "a number of seconds"). */
int options_check_range_words(const struct ch_config_key *opt,
                              const struct ch_opt_value *v, const char *noun,
                              char *msg, size_t msgsz);

/*
 * A plugin's option table, as the loader sees it before trusting it:
 * known types, bounds only on INT/NUMBER/DURATION and parseable as the
 * option's type, and with `config_size` every option's field inside the
 * struct and no two fields overlapping. `path` names the plugin in errors.
 */
int options_check_table(const struct ch_config_key *table, uint32_t config_size,
                        const char *path, struct ch_err *err);

/*
 * Fill a `size`-byte config struct from `values` (values[i] belongs to
 * table[i]) by each option's offset and type (plugin.h, CH_OPT_AT).
 * Returns a malloc'd block (the struct, then copies of the URLs it
 * points at, trimmed of trailing '/'); other strings point into `values`,
 * which must outlive it. NULL when out of memory.
 */
void *options_fill(const struct ch_config_key *table,
                   const struct ch_opt_value *values, size_t n, size_t size);

/* How many bytes an option of `type` fills in a config struct. */
size_t options_field_size(enum ch_opt_type type);

/* The instance-level `http:` block, filled through the same engine. */
struct options_http {
  const char *ca_file;
  double max_rps;
  long long timeout_ms;
  long long connect_timeout_ms;
};
/* Its keys (NULL-name terminated), with offsets into options_http. */
extern const struct ch_config_key options_http_table[];

/* The instance options that used to be each plugin's and are now keys
   of the instance's `http:` block, under the same names: accepted in
   `options:` with a deprecation warning for a plugin that does not
   declare them itself (NULL-name terminated). */
extern const struct ch_config_key options_http_aliases[];

#endif
