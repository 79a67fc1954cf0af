/* SPDX-License-Identifier: MIT */
/* The plugin SDK: JSON over the host HTTP service, growable strings, page
   tokens. Installed with its library libconnhost-sdk and connhost-sdk.pc;
   it needs only <connhost/plugin.h> and json-c (no build-tree header). */
#ifndef CONNHOST_SDK_H
#define CONNHOST_SDK_H

#include <stddef.h>

#include <json-c/json.h>

#include <connhost/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Who a plugin instance talks to and as whom. */
struct pj_client {
  const struct ch_host *host;
  struct ch_hctx *hc;
  const char *basic_user; /* Basic auth, or NULL */
  const char *basic_secret;
  const char *bearer; /* Bearer token, or NULL */
};

/* Lookups in a plain option table (ch_opt_get); a plugin with a config
   map reads its filled struct instead. */
/* The value of option `name` in `cfg` (declared in `table`), or NULL. */
const struct ch_opt_value *pj_opt(const struct ch_cfg *cfg,
                                  const struct ch_option *table,
                                  const char *name);
/* Its text, or `def` when unset. */
const char *pj_opt_str(const struct ch_cfg *cfg, const struct ch_option *table,
                       const char *name, const char *def);
long long pj_opt_num(const struct ch_cfg *cfg, const struct ch_option *table,
                     const char *name, long long def);

/* A growable NUL-terminated string. All functions return CH_OK or
   CH_E_NOMEM; after a failure the buffer stays valid. */
struct pj_buf {
  char *s;
  size_t len, cap;
};
int pj_buf_add(struct pj_buf *b, const char *s);
/* Append the `n` bytes at `s`. */
int pj_buf_addn(struct pj_buf *b, const char *s, size_t n);
int pj_buf_addf(struct pj_buf *b, const char *fmt, ...) CH_PRINTF(2, 3);
/* Append `s` percent-encoded with host->url_encode. */
int pj_buf_add_enc(struct pj_buf *b, const struct ch_host *host, const char *s);
void pj_buf_free(struct pj_buf *b);

/*
 * Send `method url` with an optional JSON `body` and parse the reply.
 * On a 2xx: CH_OK, *status set, *out the parsed JSON (NULL for an empty
 * body; caller json_object_put()s it). On another status: the mapped
 * negative code with err from host->http_error(`what`), *status set, and
 * *out the parsed error body when it was JSON (so callers can inspect
 * error codes), else NULL. A 2xx body that is not valid JSON is
 * CH_E_PROTOCOL ("<what>: malformed JSON: ..."), after a GET answered
 * that way has been sent twice more (a truncated body is transient). In a
 * dry run: CH_OK, *status 0, *out NULL. `out` may be NULL when the body is
 * not needed.
 */
int pj_request(const struct pj_client *c, const char *method, const char *url,
               json_object *body, unsigned flags, const char *what,
               long *status, json_object **out, struct ch_err *err);
/* The same naming the endpoint's path template (ch_http_req.route), which
   the host paces by; NULL lets the host derive one. */
int pj_request_route(const struct pj_client *c, const char *route,
                     const char *method, const char *url, json_object *body,
                     unsigned flags, const char *what, long *status,
                     json_object **out, struct ch_err *err);

/*
 * Answers read without a tree. A struct pj_doc holds a body and one token
 * per value (a single allocation besides the body, strings unescaped in
 * place); a struct pj_val is a value inside it, valid until pj_doc_free().
 * What it accepts is RFC 8259 JSON, one value per text, nested at most 32
 * deep (json-c's limit). Strings are unescaped as json-c does, except
 * \u0000: it reads as U+FFFD, as a lone surrogate does, since a NUL would
 * cut the C string a name or an id is handed on in. Text that is not
 * UTF-8 reads with U+FFFD for each maximal invalid subpart (as WHATWG's
 * decoder does) instead of failing, so one broken name does not cost a
 * page; pj_doc_replaced() counts them. A missing
 * value (v.i < 0) is PJ_NONE, and every accessor takes one.
 */
struct pj_doc;
struct pj_val {
  struct pj_doc *doc;
  int i; /* token index; < 0: no value */
};
enum pj_type { PJ_NONE, PJ_NULL, PJ_BOOL, PJ_NUM, PJ_STR, PJ_ARR, PJ_OBJ };

/* pj_request_route() reading the answer into *out (NULL for an empty
   body, a dry run or a status that is not 2xx; pj_doc_free() it). The
   same errors and the same retry of a malformed 2xx GET answer. */
int pj_request_doc(const struct pj_client *c, const char *route,
                   const char *method, const char *url, json_object *body,
                   unsigned flags, const char *what, long *status,
                   struct pj_doc **out, struct ch_err *err);
/* Read `len` bytes of `text` (copied) into *out: CH_OK, or CH_E_PROTOCOL
   (CH_E_NOMEM) with *why saying what is wrong ("truncated document",
   "trailing data after the document", json-c's words for the rest). */
int pj_doc_parse(const char *text, size_t len, struct pj_doc **out,
                 const char **why);
/* The same over a response body, without a copy: the doc takes `resp`
   (host->http_free()s it when freed, or now on failure). */
int pj_doc_take(const struct ch_host *host, struct ch_http_resp *resp,
                struct pj_doc **out, const char **why);
void pj_doc_free(struct pj_doc *d);
/* How many invalid UTF-8 sequences the text had (each read as U+FFFD). */
size_t pj_doc_replaced(const struct pj_doc *d);

/* The document's value (none for a NULL doc). */
struct pj_val pj_doc_root(struct pj_doc *d);
enum pj_type pj_val_type(struct pj_val v);
/* Elements of an array, members of an object; 0 for anything else. */
size_t pj_val_len(struct pj_val v);
/* Walk an array's elements, or an object's keys (strings; the member's
   value is pj_member_value(key)): pj_val_first, then pj_val_next until
   the value is none (.i < 0). */
struct pj_val pj_val_first(struct pj_val v);
struct pj_val pj_val_next(struct pj_val v);
struct pj_val pj_member_value(struct pj_val key);
/* A string's unescaped bytes, NUL-terminated (*len, when not NULL, its
   length; no NUL inside); NULL for another type. */
const char *pj_val_str(struct pj_val v, size_t *len);
/* A boolean, or `def` for another type. */
int pj_val_bool(struct pj_val v, int def);
/* 1 and *out for a number without fraction or exponent (clamped to
   long long), else 0. */
int pj_val_int(struct pj_val v, long long *out);
/* Member `key` of an object (the last one when repeated, as json-c);
   none when missing or `obj` is no object. */
struct pj_val pj_get(struct pj_val obj, const char *key);
/* pj_str() and friends over a pj_val: NULL / none / `def` when missing or
   of another type. */
const char *pj_get_str(struct pj_val obj, const char *key);
struct pj_val pj_get_arr(struct pj_val obj, const char *key);
struct pj_val pj_get_obj(struct pj_val obj, const char *key);
int pj_get_bool(struct pj_val obj, const char *key, int def);
long long pj_get_int(struct pj_val obj, const char *key, long long def);
/* Append `v` as compact JSON text (a missing value as null), or the `n`
   bytes of `s` as a JSON string. */
int pj_buf_add_val(struct pj_buf *b, struct pj_val v);
int pj_buf_add_jstr(struct pj_buf *b, const char *s, size_t n);
/* Append an object member's `"key":`, after a comma unless `b` is empty or
   ends with '{'; the value is the caller's to append. */
int pj_buf_add_key(struct pj_buf *b, const char *key);

/* Typed accessors: NULL / `def` when missing or of another type. */
const char *pj_str(json_object *o, const char *key);
json_object *pj_arr(json_object *o, const char *key);
json_object *pj_obj(json_object *o, const char *key);
int pj_bool(json_object *o, const char *key, int def);
long long pj_int(json_object *o, const char *key, long long def);

/* A copy of a base URL without trailing slashes (so paths can be appended
   with "/..."); NULL when out of memory. */
char *pj_base_url(const char *url);

/* A page token carrying up to a few string fields, encoded as a compact
   JSON object ("{\"s\":50}"). Decoding a NULL or empty token gives an empty
   object. Returns NULL (err set, CH_E_INVALID) for a token that is not a
   JSON object. */
json_object *pj_token_decode(const char *token, struct ch_err *err);
/* Compact JSON text of `o` (a page token for sink->next_page, a profile);
   borrowed from `o`. */
const char *pj_json_text(json_object *o);

/* Fill `err` with "out of memory" and return CH_E_NOMEM. */
int pj_nomem(struct ch_err *err);

/* qsort/bsearch comparator for an array of C strings. */
int pj_cmp_str(const void *a, const void *b);

/* 1 when `s` is a name of the [a-z0-9_]+ alphabet (resource type ids,
   plugin names, match keys), else 0. */
int pj_valid_name(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* CONNHOST_SDK_H */
