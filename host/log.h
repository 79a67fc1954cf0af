/* SPDX-License-Identifier: MIT */
/* Logging: level filter, text or JSON lines on stderr, secret redaction. */
#ifndef CONNHOST_LOG_H
#define CONNHOST_LOG_H

#include <stdarg.h>
#include <stddef.h>

#include <connhost/plugin.h>

enum log_format { LOG_TEXT = 0, LOG_JSON };

struct json_object;

/* Set once in main before threads start. */
void log_setup(enum ch_log_level level, enum log_format format, int quiet);
int log_parse_level(const char *name, enum ch_log_level *out);
/* Whether a message at `level` would be printed. */
int log_enabled(enum ch_log_level level);

/*
 * Register a secret value: from now on every log line, error message passed
 * through log_redact() and dry-run print replaces it with "***". Values
 * shorter than 4 bytes are ignored (they would blank out ordinary words).
 * Thread-safe; the string is copied.
 */
void log_add_secret(const char *value);

/* Copy `in` to `out` with every registered secret replaced by "***". */
void log_redact(const char *in, char *out, size_t outsz);

/* Log one line. `prefix` is e.g. "jira_cloud:acme/jira" or NULL. */
void log_msg(const char *prefix, enum ch_log_level level, const char *fmt, ...)
    CH_PRINTF(3, 4);
void log_vmsg(const char *prefix, enum ch_log_level level, const char *fmt,
              va_list ap);

/* The format log_setup chose: commands print their summaries as events in
   JSON mode, so that every line on stderr is one JSON object. */
enum log_format log_format(void);

/*
 * JSON mode: one line {"time", "level", "event": event, then the members
 * of `fields`} on stderr, redacted, subject to the level filter. Does not
 * take `fields`. Text mode: does nothing (commands print text themselves).
 */
void log_event(enum ch_log_level level, const char *event,
               struct json_object *fields);
/* A seconds member of an event's `fields`: the number, written to the
   millisecond (12.804, not the 17 digits of a difference of two times). */
struct json_object *log_json_seconds(double v);

/* Release the secret registry (at exit). */
void log_cleanup(void);

/* Around a fork() in a process with other threads (isolate.c): prepare
   takes the log's locks (stderr, then the secret list, the order a log
   line takes them), so no other thread holds them in the child; parent
   and child release them on each side. */
void log_fork_prepare(void);
void log_fork_parent(void);
void log_fork_child(void);

#define log_error(...) log_msg(NULL, CH_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(NULL, CH_LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(NULL, CH_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(NULL, CH_LOG_DEBUG, __VA_ARGS__)

#endif
