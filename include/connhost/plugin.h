/* SPDX-License-Identifier: MIT */
/* The connhost plugin ABI, version 1: the only header a plugin needs. */
#ifndef CONNHOST_PLUGIN_H
#define CONNHOST_PLUGIN_H

/*
 * NAME
 *   connhost plugin ABI 1
 *
 * DESCRIPTION
 *   A plugin is a shared object `<name>.so` in the plugin directory that
 *   exports exactly one symbol:
 *
 *     const struct ch_plugin *connhost_plugin(uint32_t host_abi);
 *
 *   It returns a pointer to a static const descriptor (or NULL when it
 *   cannot serve `host_abi`). The host checks `abi == CH_PLUGIN_ABI`,
 *   `size >= CH_PLUGIN_SIZE_V1`, that `name` equals the file's basename,
 *   that the mandatory ops (open, close, list) are set and that the layout
 *   sizes are sane. It then keeps its own copy of the descriptor and its
 *   tables in the host's layout, so a field the plugin's build lacks reads
 *   as zero, and every op call goes through one dispatch layer.
 *
 *   Host services (logging, HTTP, encoding, time) reach the plugin through
 *   the `struct ch_host` table passed to open(). A plugin has no undefined
 *   references to the host binary and never links libcurl.
 *
 * OWNERSHIP
 *   - `struct ch_cfg` and everything it points to is borrowed for the
 *     duration of open(); copy what you keep.
 *   - The instance pointer returned by open() belongs to the plugin; close()
 *     is called exactly once, and only after a successful open(). A failing
 *     open() frees what it allocated before returning.
 *   - Records given to a sink callback are borrowed for that call only; the
 *     host deep-copies them.
 *   - `struct ch_err` is a fixed buffer owned by the host; fill it with
 *     ch_err_set() or snprintf(). No heap pointer crosses the boundary
 *     except `struct ch_http_resp`, which the host allocates and frees with
 *     host->http_free().
 *
 * THREADS
 *   After open() returns, list/grants (and the provisioning ops) may run
 *   concurrently on several worker threads for one instance. An instance
 *   holds no mutable state that it does not lock itself; all position lives
 *   in the page token. Plugins keep no mutable static data.
 *
 * EVOLUTION (docs/plugin-abi.md has the rules with examples)
 *   ABI 1 only grows. Fields are only ever appended, to the descriptor, to
 *   the host table, to the tables and records a plugin supplies and to the
 *   structures the host hands in; every structure that can grow has a
 *   size, and the side that reads it reads a field only when that size
 *   covers the field. Fields beyond the size take their default (zero,
 *   NULL). Each `CH_*_SIZE_V1` is pinned to the end of the first ABI 1
 *   fields, never `sizeof` of a structure that may grow.
 *   - The descriptor's `size` says which of its fields exist:
 *     CH_PLUGIN_HAS(d, field). Since ABI 1.1 it also carries the size of
 *     every element and record the plugin hands the host (`option_size`,
 *     `type_size`, ..., set by CH_PLUGIN_INIT). A 1.0 descriptor has none:
 *     its tables and records have the 1.0 layout.
 *   - The host table's `size` says which services exist:
 *     CH_HOST_HAS(h, field). Since ABI 1.1 it carries the size of every
 *     structure the host hands in (sinks, cfg, changes, results), tested
 *     with CH_SINK_HAS(h, field) and friends.
 *   - A few small structures are frozen because they are embedded or
 *     handed over as arrays the other side indexes: ch_err, ch_ref, ch_kv
 *     and ch_opt_value. New data goes into a new field next to them.
 *   Removing, reordering or retyping a field bumps CH_PLUGIN_ABI.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CH_PLUGIN_ABI 1u
#define CH_PLUGIN_SYMBOL "connhost_plugin"

#if defined(__GNUC__)
#define CH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define CH_EXPORT __attribute__((visibility("default")))
#else
#define CH_PRINTF(f, a)
#define CH_EXPORT
#endif

/* Whether `size` bytes of a `type` reach the end of `field`. */
#define CH_SIZE_HAS(size, type, field)                                         \
  ((size_t)(size) >= offsetof(type, field) + sizeof(((type *)0)->field))

/* The end of `field`: how the first ABI 1 sizes are pinned. */
#define CH_SIZE_TO(type, field)                                                \
  (offsetof(type, field) + sizeof(((type *)0)->field))

/* Status codes. Ops return CH_OK or one of the negative values. */
enum ch_status {
  CH_OK = 0,
  CH_E_NOMEM = -1,       /* out of memory */
  CH_E_CONFIG = -2,      /* bad option value, bad URL, unreadable file */
  CH_E_AUTH = -3,        /* credentials refused (401) */
  CH_E_PERM = -4,        /* authenticated but not allowed (403) */
  CH_E_NOTFOUND = -5,    /* the object is gone (404); a warning during sync */
  CH_E_RETRY = -6,       /* transient: timeout, 429, 5xx (after host retries) */
  CH_E_CONFLICT = -7,    /* conflicting state (409 not meaning "already") */
  CH_E_UNSUPPORTED = -8, /* this plugin or server cannot do that */
  CH_E_PROTOCOL = -9,    /* malformed, truncated or unexpected response */
  CH_E_IO = -10,         /* network failure, refused connection, TLS */
  CH_E_INVALID = -11,    /* bad request or argument (400, unknown key) */
  CH_E_STOPPED = -12,    /* the host asked to stop (sink returned non-zero) */
  CH_E_LIMIT = -13       /* a limit was hit: body cap, page limit */
};

#define CH_ERR_MSG_SIZE 256

/* Host-owned error buffer. `msg` is lowercase, no final period. */
struct ch_err {
  int code;
  char msg[CH_ERR_MSG_SIZE];
};

/* ---- options ---------------------------------------------------------- */

enum ch_opt_type {
  CH_OPT_STRING = 1,
  CH_OPT_INT,    /* YAML integer; `num` */
  CH_OPT_BOOL,   /* YAML true/false; `num` is 0 or 1 */
  CH_OPT_LIST,   /* YAML sequence of scalars, or one comma-separated string */
  CH_OPT_PATH,   /* string; relative paths resolved against the config's dir */
  CH_OPT_URL,    /* string; must be http:// or https:// */
  CH_OPT_NUMBER, /* a decimal number (e.g. 2.5); `str` is its text */
  /* since ABI 1.2 (an older host refuses the plugin: unknown type) */
  CH_OPT_DURATION /* "500ms", "30s", "2m", "1h", or plain seconds ("2.5");
                     `num` is milliseconds */
};

#define CH_OPT_REQUIRED 0x1u
#define CH_OPT_SECRET 0x2u /* never printed; redacted in logs and errors */
/* Since ABI 1.3: the value names something (an id, an email) and is shown
   even when it comes from ${env:} or ${file:}, which otherwise makes the
   host treat it as a secret the plugin did not mark. A host that does not
   know the flag ignores it. */
#define CH_OPT_PUBLIC 0x4u

/* One declared option. The table ends with an entry whose name is NULL.
   Elements are `option_size` bytes apart (CH_PLUGIN_INIT). Frozen at
   source level: tables of it are written positionally in the wild, and an
   appended field would make each such entry a -Wextra warning. Its
   successor is struct ch_config_key. */
struct ch_option {
  const char *name;
  enum ch_opt_type type;
  unsigned flags;
  const char *def; /* default in text form, NULL for none */
  const char *help;
};
#define CH_OPTION_SIZE_V1 CH_SIZE_TO(struct ch_option, help)

/*
 * Since ABI 1.2: one key of a plugin's config map, the declared option
 * grown (fluent-bit's config map). A plugin sets the descriptor's
 * `config_map` instead of `options`. Elements are `config_key_size` bytes
 * apart; the table ends with an entry whose name is NULL. Write entries
 * with designated initializers (CH_OPTION, CH_OPT_RANGE, CH_OPT_AT) so the
 * table keeps building as the structure grows.
 *
 * The host checks what is declared, so open() does not: a required option
 * is present and not empty, a URL is http(s), a value is of its type and
 * inside its bounds. Errors point at the config (FILE:LINE:COL).
 */
struct ch_config_key {
  const char *name; /* the first five fields are those of ch_option */
  enum ch_opt_type type;
  unsigned flags;
  const char *def;
  const char *help;
  /* Inclusive bounds of an INT, NUMBER or DURATION value, in text form
     like `def` ("1", "0.5", "30s"); NULL for none. */
  const char *min, *max;
  /* Where the value goes in the plugin's config struct (descriptor
     `config_size`): CH_OPT_AT(struct, field). The field's C type follows
     the option type (below). */
  size_t offset;
};
#define CH_CONFIG_KEY_SIZE_V1 CH_SIZE_TO(struct ch_config_key, offset)

/*
 * The config struct field a key fills, by option type:
 *   STRING, PATH, URL  const char *   NULL when unset; a URL has no
 *                                     trailing '/', so "/path" appends
 *   INT                long long
 *   BOOL               int            0 or 1
 *   NUMBER             double
 *   DURATION           long long      milliseconds
 *   LIST               const char *const *  NULL-terminated; NULL when
 *                                     unset
 * Unset options without a default leave their field zero. The struct and
 * its strings are the host's, valid until close() returns: keep pointers,
 * copy nothing.
 */
#define CH_OPT_AT(type, field) .offset = offsetof(type, field)

/* Bounds in text form: CH_OPT_RANGE("1", "10000"); NULL for an open end. */
#define CH_OPT_RANGE(lo, hi) .min = (lo), .max = (hi)

/* The first five fields of an entry, designated:
     {CH_OPTION("page_size", CH_OPT_INT, 0, "100", "records per page"),
      CH_OPT_RANGE("1", "10000"), CH_OPT_AT(struct my_conf, page_size)},
     {CH_OPTION_END} */
#define CH_OPTION(n, t, f, d, h)                                               \
  .name = (n), .type = (t), .flags = (f), .def = (d), .help = (h)
#define CH_OPTION_END .name = NULL

/* One option's value as the host resolved it. Frozen: the host hands an
   array of them, indexed by the plugin. */
struct ch_opt_value {
  const char *name;
  int set;         /* 1 if given in the config or by a default */
  const char *str; /* text form (STRING/PATH/URL/INT/BOOL); NULL if unset */
  long long num;   /* INT and BOOL */
  const char *const *list; /* LIST: items, NULL-terminated */
  size_t nlist;
};

/* Configuration handed to open(). `values[i]` belongs to options[i]. */
struct ch_cfg {
  const char *tenant;
  const char *instance;
  const char *config_dir; /* directory of the config file */
  int provisioning;       /* writes allowed (the host enforces it too) */
  size_t nvalues;
  const struct ch_opt_value *values;

  /* ---- since ABI 1.2 (test with CH_CFG_HAS(host, config)) ---- */

  /* The plugin's config struct (descriptor `config_size`), filled from
     the option table; NULL when the plugin declares none. */
  const void *config;
};
#define CH_CFG_SIZE_V1 CH_SIZE_TO(struct ch_cfg, values)

/* ---- resource types ---------------------------------------------------- */

#define CH_TRAIT_USER 0x1u
#define CH_TRAIT_GROUP 0x2u
#define CH_TRAIT_ROLE 0x4u
#define CH_TRAIT_APP 0x8u
#define CH_TRAIT_WORKSPACE 0x10u

#define CH_CAP_SYNC 0x1u      /* resources of this type are listed */
#define CH_CAP_GRANT 0x2u     /* grant op supports this type's entitlements */
#define CH_CAP_REVOKE 0x4u    /* revoke op supports them */
#define CH_CAP_PROVISION 0x8u /* provision_account creates this type */

/* Type flags */
/* The host calls grants() once per listed resource (page by page) for
   every type without this flag, whether or not the type declares
   entitlements: a user's role assignments may be read from the user. */
#define CH_TYPE_NO_GRANTS_CALL                                                 \
  0x1u /* grants come from other ops; the host                                 \
          never calls grants() for this type */

/* An entitlement slug a resource type carries. Elements are
   `entitlement_size` bytes apart. */
struct ch_entitlement_def {
  const char *slug;         /* "member", "assigned", "role:atlassian/admin" */
  const char *display_name; /* "Member" */
  const char *const *grantable_to; /* principal type ids, NULL-terminated */
};
#define CH_ENTITLEMENT_SIZE_V1                                                 \
  CH_SIZE_TO(struct ch_entitlement_def, grantable_to)

/* A resource type. The table ends with an entry whose id is NULL.
   Elements are `type_size` bytes apart. */
struct ch_resource_type {
  const char *id;           /* [a-z0-9_]+: "user", "project_role" */
  const char *display_name; /* "Project role" */
  unsigned traits;          /* CH_TRAIT_* */
  const char *parent;       /* parent type id; listed once per parent */
  const struct ch_entitlement_def *entitlements; /* ends with slug NULL */
  unsigned caps;                                 /* CH_CAP_* */
  unsigned flags;                                /* CH_TYPE_* */
};
#define CH_TYPE_SIZE_V1 CH_SIZE_TO(struct ch_resource_type, flags)

/* A named action a plugin offers (suspend a user, open a ticket).
   Elements are `action_size` bytes apart. */
struct ch_action_def {
  const char *name;
  const char *help;
  const char *const *args;     /* argument names, NULL-terminated */
  const char *const *required; /* required ones, NULL-terminated or NULL */
};
#define CH_ACTION_SIZE_V1 CH_SIZE_TO(struct ch_action_def, required)

/* ---- records ----------------------------------------------------------- */

enum ch_res_status {
  CH_RES_UNSPECIFIED = 0,
  CH_RES_ENABLED,
  CH_RES_DISABLED,
  CH_RES_DELETED
};

enum ch_account_type {
  CH_ACCOUNT_NONE = 0,
  CH_ACCOUNT_HUMAN,
  CH_ACCOUNT_SERVICE,
  CH_ACCOUNT_CUSTOMER
};

/* A reference to a resource of the same instance. Frozen: embedded in
   grants and changes. */
struct ch_ref {
  const char *type;
  const char *id; /* any bytes but NUL; ':' and '/' are fine */
};

/* A resource as a plugin emits it. All strings are UTF-8. The host reads
   `resource_size` bytes of it (CH_PLUGIN_INIT). */
struct ch_resource {
  const char *type;
  const char *id;
  const char *display_name;
  enum ch_res_status status;
  enum ch_account_type account_type;
  const char *const *emails;     /* NULL-terminated or NULL; first = primary */
  const char *const *match_keys; /* "name=value", NULL-terminated or NULL */
  const char *profile_json;      /* a small JSON object, or NULL */
  const char *parent_type;       /* NULL for a root resource */
  const char *parent_id;
  const char *const *entitlements; /* slugs this resource carries;
                                      NULL means every declared slug */
};
#define CH_RESOURCE_SIZE_V1 CH_SIZE_TO(struct ch_resource, entitlements)

#define CH_GRANT_EXPANDABLE                                                    \
  0x1u /* the principal's holders of                                           \
          `expand_slug` inherit this grant */

/* A grant: `principal` holds entitlement `resource#slug`. The host reads
   `grant_size` bytes of it. */
struct ch_grant {
  struct ch_ref resource;
  const char *slug;
  struct ch_ref principal;
  unsigned flags;
  const char *expand_slug;  /* with CH_GRANT_EXPANDABLE, e.g. "member" */
  const char *profile_json; /* a small JSON object, or NULL */
};
#define CH_GRANT_SIZE_V1 CH_SIZE_TO(struct ch_grant, profile_json)

/*
 * Where list() and grants() put their output. Each callback returns 0 to go
 * on or non-zero to ask the op to stop (it then returns CH_E_STOPPED).
 * Grants may be emitted by any sync op, for any resource of the instance.
 * The host owns the sink; a callback appended later exists when
 * CH_SINK_HAS(host, field).
 */
struct ch_sink {
  int (*resource)(struct ch_sink *sink, const struct ch_resource *res);
  int (*grant)(struct ch_sink *sink, const struct ch_grant *grant);
  /* The token for the next page; not calling it (or NULL/"") means done. */
  int (*next_page)(struct ch_sink *sink, const char *token);
  /* ---- since ABI 1.2 (test with CH_SINK_HAS(host, expect)) ---- */
  /* How many records this chain (this list or grants call with all its
     later pages) yields in all, when the API says so: Jira's PageBean
     `total`, the Organizations users/count. Only for progress (percent,
     ETA); once per chain, on any of its pages. */
  int (*expect)(struct ch_sink *sink, uint64_t total);
};
#define CH_SINK_SIZE_V1 CH_SIZE_TO(struct ch_sink, next_page)

/* ---- provisioning ------------------------------------------------------- */

enum ch_outcome {
  CH_DONE = 0, /* the change was made */
  CH_ALREADY,  /* nothing to do: already granted / already absent */
  CH_DRY_RUN,  /* requests were printed, nothing was sent */
  CH_PENDING,  /* accepted; an operator or the service must finish it */
  /* ---- since ABI 1.3 (return it only when the host's max_outcome says
     it knows it; deprovision_account may always) ----
     The plugin cannot make this change itself: a person must. `message`
     says what to do and where. The host opens a ticket for it when the
     tenant has `tickets:` configured (docs/plugin-abi.md §9). */
  CH_MANUAL
};

/* What a provisioning op reports back (host-owned; write a field appended
   later only when CH_RESULT_HAS(host, field)). */
struct ch_result {
  enum ch_outcome outcome;
  char key[256];     /* e.g. the new account id or issue key; may be empty */
  char message[256]; /* one human line, e.g. "linked to existing account" */

  /* ---- since ABI 1.2 (test with CH_RESULT_HAS(host, output)) ----
     An answer longer than `message` (a ticket schema, a ticket's state):
     UTF-8 text, usually one JSON document, that the host prints on stdout
     after the outcome line when the op succeeds. Calls append; `text` is
     borrowed for the call. Returns CH_OK or CH_E_NOMEM. NULL when the
     host has nowhere to put it: then `message` is all there is. */
  int (*output)(struct ch_result *result, const char *text);
};
#define CH_RESULT_SIZE_V1 CH_SIZE_TO(struct ch_result, message)

/* Frozen: handed over in arrays. */
struct ch_kv {
  const char *key;
  const char *value;
};

/* A provisioning request: grant/revoke `principal` on `resource#slug`. */
struct ch_change {
  struct ch_ref resource;
  const char *slug;
  struct ch_ref principal;
  int dry_run;
};
#define CH_CHANGE_SIZE_V1 CH_SIZE_TO(struct ch_change, dry_run)

/* An account to create. Fields not used by a plugin are ignored. */
struct ch_account {
  const char *email;
  const char *display_name;
  const char *given_name;
  const char *family_name;
  const struct ch_kv *attrs; /* plugin-specific ("products"), or NULL */
  size_t nattrs;
  int dry_run;
};
#define CH_ACCOUNT_SIZE_V1 CH_SIZE_TO(struct ch_account, dry_run)

/* ---- host services ------------------------------------------------------ */

enum ch_log_level { CH_LOG_ERROR = 0, CH_LOG_WARN, CH_LOG_INFO, CH_LOG_DEBUG };

/* Opaque per-instance handle: logs carry its "[plugin:tenant/instance]"
   prefix, HTTP counters and settings are kept per handle. */
struct ch_hctx;

#define CH_HTTP_RETRY_SAFE 0x1u /* a write the plugin knows is idempotent */
#define CH_HTTP_NO_RETRY 0x2u   /* never retry this request */

/* A request (plugin-owned; the host reads `http_req_size` bytes). */
struct ch_http_req {
  const char *method; /* "GET", "POST", "PUT", "PATCH", "DELETE" */
  const char *url;    /* absolute URL; query already encoded */
  const char *body;   /* NULL for none */
  size_t body_len;
  const char *content_type;   /* default "application/json" with a body */
  const char *const *headers; /* extra "Name: value" lines, NULL-terminated */
  const char *basic_user;     /* Basic auth user, or NULL */
  const char *basic_secret;   /* Basic auth password/token (never logged) */
  const char *bearer;         /* Bearer token (never logged), or NULL */
  unsigned flags;             /* CH_HTTP_* */
  /* ---- since ABI 1.2 ---- */
  /* The endpoint's path template, e.g. "/v2/orgs/{orgId}/directories/
     {directoryId}/users/{accountId}/role-assignments": requests with the
     same route, method, base URL and credential share one pacing budget.
     NULL: the host derives one from the path, every id-like segment
     replaced (see docs/pacing.md). */
  const char *route;
};
#define CH_HTTP_REQ_SIZE_V1 CH_SIZE_TO(struct ch_http_req, flags)

/* A response (plugin-owned storage; the host fills `http_resp_size`
   bytes and zeroes them first). */
struct ch_http_resp {
  long status; /* HTTP status; 0 when none arrived */
  char *body;  /* NUL-terminated; host-owned; NULL when empty */
  size_t body_len;
  char *content_type; /* host-owned, may be NULL */
  int dry_run;        /* 1: not sent (dry run); status is 0 */
};
#define CH_HTTP_RESP_SIZE_V1 CH_SIZE_TO(struct ch_http_resp, dry_run)

/* HTTP settings of one instance; set once from open(). The host reads
   `http_conf_size` bytes. */
struct ch_http_conf {
  const char *ca_file; /* PEM bundle to trust; NULL = system store */
  double max_rps;      /* client-side request cap; 0 = none */
  long timeout_ms;     /* total per attempt; 0 = host default */
  long connect_timeout_ms;
};
#define CH_HTTP_CONF_SIZE_V1 CH_SIZE_TO(struct ch_http_conf, connect_timeout_ms)

/*
 * The host table. Passed to open(); valid until close() returns.
 * All functions are thread-safe. A host may be older than the header a
 * plugin was built with: test a field appended after the first ABI 1
 * fields with CH_HOST_HAS(host, field) before using it.
 */
struct ch_host {
  uint32_t abi;  /* CH_PLUGIN_ABI */
  uint32_t size; /* sizeof(struct ch_host) of the host's build */

  void (*log)(struct ch_hctx *hc, enum ch_log_level level, const char *fmt, ...)
      CH_PRINTF(3, 4);
  void (*vlog)(struct ch_hctx *hc, enum ch_log_level level, const char *fmt,
               va_list ap);

  /* Apply HTTP settings for this instance (CA file, rate cap, timeouts). */
  int (*http_setup)(struct ch_hctx *hc, const struct ch_http_conf *conf,
                    struct ch_err *err);

  /*
   * Send one request, retrying 429/503 (Retry-After, X-RateLimit-Reset),
   * other 5xx and timeouts (backoff with jitter) within bounded attempts;
   * a non-GET is retried only after a 429 or with CH_HTTP_RETRY_SAFE.
   * Returns CH_OK for any final response with a status, 2xx or not: the
   * plugin reads `resp->status`. Returns a negative status with `err` set
   * when no usable response arrived (I/O, TLS, body over the cap, retries
   * exhausted, stop requested). Always call http_free() on `resp`.
   * In a dry run every request is printed (secrets redacted) and not sent;
   * `resp->dry_run` is 1.
   */
  int (*http)(struct ch_hctx *hc, const struct ch_http_req *req,
              struct ch_http_resp *resp, struct ch_err *err);
  void (*http_free)(struct ch_http_resp *resp);

  /*
   * Turn a non-2xx response into a status and a message in `err`:
   * 400 → INVALID, 401 → AUTH, 403 → PERM, 404 → NOTFOUND, 409 → CONFLICT,
   * 429/5xx → RETRY, else PROTOCOL. The message is "`what`: HTTP <code>:
   * <summary>", the summary taken from the usual JSON error shapes
   * (errorMessages/errors, errors[].title/detail/code, message, detail,
   * error) or the start of a text body. Returns the status.
   */
  int (*http_error)(struct ch_hctx *hc, const struct ch_http_resp *resp,
                    const char *what, struct ch_err *err);

  /* Percent-encode `in` for a URL query value or path segment (RFC 3986
     unreserved kept). Returns the length written, or the size needed
     (excluding NUL) when `outsz` is too small: like snprintf. */
  size_t (*url_encode)(const char *in, char *out, size_t outsz);

  /* Copy the decoded value of query parameter `name` of `url` into `out`.
     Returns 1 when found, 0 when not (out = ""). */
  int (*url_query_get)(const char *url, const char *name, char *out,
                       size_t outsz);

  /* Wall-clock milliseconds since the epoch. */
  int64_t (*now_ms)(void);

  /* Non-zero when the run is stopping (SIGINT/SIGTERM): finish quickly. */
  int (*stopping)(struct ch_hctx *hc);

  /* Whether this instance runs in dry-run mode (writes are not sent). */
  int (*dry_run)(struct ch_hctx *hc);

  /* ---- since ABI 1.1 (test with CH_HOST_HAS) ---- */

  /* Non-zero when a message at `level` would be printed: skip building
     costly debug text otherwise. */
  int (*log_enabled)(struct ch_hctx *hc, enum ch_log_level level);

  /* The sizes of the structures this host hands in (its build's sizeof);
     read them through CH_SINK_HAS and friends. */
  uint32_t sink_size;
  uint32_t cfg_size;
  uint32_t change_size;
  uint32_t account_size;
  uint32_t result_size;

  /* ---- since ABI 1.3 (test with CH_HOST_HAS) ---- */

  /* The last enum ch_outcome this host understands (CH_MANUAL since 1.3).
     Absent: CH_PENDING. */
  uint32_t max_outcome;
};

/* The first ABI 1 host table: what every host provides. */
#define CH_HOST_SIZE_V1 CH_SIZE_TO(struct ch_host, dry_run)

/* Whether the host table has `field` (a service or a size). */
#define CH_HOST_HAS(h, field) CH_SIZE_HAS((h)->size, struct ch_host, field)

/* The size of the host's `what` structures: `what_size` from the table,
   or the first ABI 1 size `v1` for a host that predates the sizes. */
#define CH_HOST_SIZEOF(h, what, v1)                                            \
  (CH_HOST_HAS(h, what##_size) && (h)->what##_size ? (h)->what##_size : (v1))

/* Whether the structures this host hands in have `field`. */
#define CH_SINK_HAS(h, field)                                                  \
  CH_SIZE_HAS(CH_HOST_SIZEOF(h, sink, CH_SINK_SIZE_V1), struct ch_sink, field)
#define CH_CFG_HAS(h, field)                                                   \
  CH_SIZE_HAS(CH_HOST_SIZEOF(h, cfg, CH_CFG_SIZE_V1), struct ch_cfg, field)
#define CH_CHANGE_HAS(h, field)                                                \
  CH_SIZE_HAS(CH_HOST_SIZEOF(h, change, CH_CHANGE_SIZE_V1), struct ch_change,  \
              field)
#define CH_ACCOUNT_HAS(h, field)                                               \
  CH_SIZE_HAS(CH_HOST_SIZEOF(h, account, CH_ACCOUNT_SIZE_V1),                  \
              struct ch_account, field)
#define CH_RESULT_HAS(h, field)                                                \
  CH_SIZE_HAS(CH_HOST_SIZEOF(h, result, CH_RESULT_SIZE_V1), struct ch_result,  \
              field)

/* ---- the descriptor ------------------------------------------------------ */

/*
 * The descriptor. Start its initializer with CH_PLUGIN_INIT, which sets
 * `abi`, `size` and the ABI 1.1 layout sizes to this header's values.
 */
struct ch_plugin {
  uint32_t abi;            /* CH_PLUGIN_ABI */
  uint32_t size;           /* sizeof(struct ch_plugin) at the plugin's build */
  const char *name;        /* must equal the .so basename */
  const char *version;     /* the plugin's own version, e.g. "1.2.0" */
  const char *description; /* one line */
  const struct ch_option *options;      /* NULL-name terminated */
  const struct ch_resource_type *types; /* NULL-id terminated */
  const struct ch_action_def *actions;  /* NULL-name terminated, or NULL */

  /* Mandatory. Create an instance. `hc` stays valid until close(). */
  int (*open)(const struct ch_host *host, struct ch_hctx *hc,
              const struct ch_cfg *cfg, void **inst, struct ch_err *err);
  /* Mandatory. Free the instance. */
  void (*close)(void *inst);
  /* Optional. Prove the credentials work with one cheap call. */
  int (*check)(void *inst, struct ch_err *err);
  /* Mandatory. One page of resources of `type`, under `parent` (NULL for
     root types). `page_token` is NULL or "" for the first page. */
  int (*list)(void *inst, const char *type, const struct ch_ref *parent,
              const char *page_token, struct ch_sink *sink, struct ch_err *err);
  /* Optional. One page of grants on `resource`'s entitlements. */
  int (*grants)(void *inst, const struct ch_ref *resource,
                const char *page_token, struct ch_sink *sink,
                struct ch_err *err);
  /* Optional. Give / take away an entitlement. "Already so" is CH_OK with
     outcome CH_ALREADY. */
  int (*grant)(void *inst, const struct ch_change *change,
               struct ch_result *result, struct ch_err *err);
  int (*revoke)(void *inst, const struct ch_change *change,
                struct ch_result *result, struct ch_err *err);
  /* Optional. Create (or link) an account; put its id in result->key. */
  int (*provision_account)(void *inst, const struct ch_account *account,
                           struct ch_result *result, struct ch_err *err);
  /* Optional. Run one of `actions` by name. */
  int (*action)(void *inst, const char *name, const struct ch_kv *args,
                size_t nargs, struct ch_result *result, struct ch_err *err);

  /* ---- since ABI 1.1 ----
     The size of each element and record this plugin hands the host, as
     built. Absent (a 1.0 descriptor) or 0, the host assumes the 1.0
     layout; a size smaller than the first ABI 1 one is refused. Tables
     are walked with these strides, and fields beyond them read as zero. */
  uint32_t option_size;      /* struct ch_option */
  uint32_t type_size;        /* struct ch_resource_type */
  uint32_t entitlement_size; /* struct ch_entitlement_def */
  uint32_t action_size;      /* struct ch_action_def */
  uint32_t resource_size;    /* struct ch_resource */
  uint32_t grant_size;       /* struct ch_grant */
  uint32_t http_req_size;    /* struct ch_http_req */
  uint32_t http_resp_size;   /* struct ch_http_resp */
  uint32_t http_conf_size;   /* struct ch_http_conf */

  /* ---- since ABI 1.2 ----
     The config map, in place of `options` (which is then NULL), and its
     element size (CH_PLUGIN_LAYOUT). With `config_size`, the size of the
     plugin's config struct, the host fills one before open(): every key
     at its CH_OPT_AT offset, handed over as `cfg->config`. */
  const struct ch_config_key *config_map;
  uint32_t config_key_size;
  uint32_t config_size;

  /* ---- since ABI 1.3 ----
     Optional. Remove (or deactivate) the account `change->principal`;
     `resource` and `slug` are unset. "Already gone" is CH_OK with
     CH_ALREADY; a removal only a person can do is CH_OK with CH_MANUAL
     and the steps in `message` (the host then opens a ticket). */
  int (*deprovision_account)(void *inst, const struct ch_change *change,
                             struct ch_result *result, struct ch_err *err);
};

/* The size of a version-1 descriptor: the host rejects anything smaller. */
#define CH_PLUGIN_SIZE_V1 CH_SIZE_TO(struct ch_plugin, action)

/* Whether a descriptor has `field` (an op, or a size). */
#define CH_PLUGIN_HAS(d, field) CH_SIZE_HAS((d)->size, struct ch_plugin, field)

/* The first designated initializers of every descriptor. */
#define CH_PLUGIN_INIT                                                         \
  .abi = CH_PLUGIN_ABI, .size = sizeof(struct ch_plugin), CH_PLUGIN_LAYOUT

/* The ABI 1.1 layout sizes alone, for a descriptor that sets `abi` and
   `size` itself (e.g. positionally: put it last). */
#define CH_PLUGIN_LAYOUT                                                       \
  .option_size = sizeof(struct ch_option),                                     \
  .type_size = sizeof(struct ch_resource_type),                                \
  .entitlement_size = sizeof(struct ch_entitlement_def),                       \
  .action_size = sizeof(struct ch_action_def),                                 \
  .resource_size = sizeof(struct ch_resource),                                 \
  .grant_size = sizeof(struct ch_grant),                                       \
  .http_req_size = sizeof(struct ch_http_req),                                 \
  .http_resp_size = sizeof(struct ch_http_resp),                               \
  .http_conf_size = sizeof(struct ch_http_conf),                               \
  .config_key_size = sizeof(struct ch_config_key)

/* The one symbol a plugin exports. */
typedef const struct ch_plugin *(*ch_plugin_entry_fn)(uint32_t host_abi);

/* ---- small inline helpers (no host linkage needed) ------------------------
 */

#include <stdio.h>
#include <string.h>

/* Fill `err` and return `code`, so ops can `return ch_err_set(...)`. */
static inline int ch_err_set(struct ch_err *err, int code, const char *fmt, ...)
    CH_PRINTF(3, 4);
static inline int ch_err_set(struct ch_err *err, int code, const char *fmt,
                             ...) {
  va_list ap;
  if (err) {
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
  }
  return code;
}

/* The value of option `name` of a plain option table (values[i] belongs
   to table[i]), or NULL when it has none. */
static inline const struct ch_opt_value *
ch_opt_get(const struct ch_cfg *cfg, const struct ch_option *table,
           const char *name) {
  for (size_t i = 0; table && table[i].name && i < cfg->nvalues; i++) {
    if (strcmp(table[i].name, name) == 0)
      return cfg->values[i].set ? &cfg->values[i] : NULL;
  }
  return NULL;
}

/* The config struct open() was given (descriptor `config_size`), or NULL
   when the host predates ABI 1.2: fail open() then, the host is too old. */
static inline const void *ch_cfg_config(const struct ch_host *host,
                                        const struct ch_cfg *cfg) {
  return CH_CFG_HAS(host, config) ? cfg->config : NULL;
}

/* A short text for a status code. */
static inline const char *ch_strerror(int code) {
  switch (code) {
  case CH_OK:
    return "ok";
  case CH_E_NOMEM:
    return "out of memory";
  case CH_E_CONFIG:
    return "configuration error";
  case CH_E_AUTH:
    return "authentication failed";
  case CH_E_PERM:
    return "permission denied";
  case CH_E_NOTFOUND:
    return "not found";
  case CH_E_RETRY:
    return "temporary failure";
  case CH_E_CONFLICT:
    return "conflict";
  case CH_E_UNSUPPORTED:
    return "not supported";
  case CH_E_PROTOCOL:
    return "malformed response";
  case CH_E_IO:
    return "network error";
  case CH_E_INVALID:
    return "invalid request";
  case CH_E_STOPPED:
    return "stopped";
  case CH_E_LIMIT:
    return "limit exceeded";
  default:
    return "unknown error";
  }
}

#ifdef __cplusplus
}
#endif

#endif /* CONNHOST_PLUGIN_H */
