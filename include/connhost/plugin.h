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
 *   `size >= CH_PLUGIN_SIZE_V1`, that `name` equals the file's basename and
 *   that the mandatory ops (open, close, list) are set.
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
 * EVOLUTION
 *   Fields are only ever appended to `struct ch_plugin` and `struct ch_host`.
 *   A plugin built against a later minor revision of ABI 1 is loaded when its
 *   `size` covers the fields the host reads; the host reads a field only when
 *   `size` covers it. Any incompatible change bumps CH_PLUGIN_ABI.
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
  CH_OPT_INT,   /* YAML integer; `num` */
  CH_OPT_BOOL,  /* YAML true/false; `num` is 0 or 1 */
  CH_OPT_LIST,  /* YAML sequence of scalars, or one comma-separated string */
  CH_OPT_PATH,  /* string; relative paths resolved against the config's dir */
  CH_OPT_URL,   /* string; must be http:// or https:// */
  CH_OPT_NUMBER /* a decimal number (e.g. 2.5); `str` is its text */
};

#define CH_OPT_REQUIRED 0x1u
#define CH_OPT_SECRET 0x2u /* never printed; redacted in logs and errors */

/* One declared option. The table ends with an entry whose name is NULL. */
struct ch_option {
  const char *name;
  enum ch_opt_type type;
  unsigned flags;
  const char *def; /* default in text form, NULL for none */
  const char *help;
};

/* One option's value as the host resolved it. */
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
};

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

/* An entitlement slug a resource type carries. */
struct ch_entitlement_def {
  const char *slug;         /* "member", "assigned", "role:atlassian/admin" */
  const char *display_name; /* "Member" */
  const char *const *grantable_to; /* principal type ids, NULL-terminated */
};

/* A resource type. The table ends with an entry whose id is NULL. */
struct ch_resource_type {
  const char *id;           /* [a-z0-9_]+: "user", "project_role" */
  const char *display_name; /* "Project role" */
  unsigned traits;          /* CH_TRAIT_* */
  const char *parent;       /* parent type id; listed once per parent */
  const struct ch_entitlement_def *entitlements; /* ends with slug NULL */
  unsigned caps;                                 /* CH_CAP_* */
  unsigned flags;                                /* CH_TYPE_* */
};

/* A named action a plugin offers (suspend a user, open a ticket). */
struct ch_action_def {
  const char *name;
  const char *help;
  const char *const *args;     /* argument names, NULL-terminated */
  const char *const *required; /* required ones, NULL-terminated or NULL */
};

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

/* A reference to a resource of the same instance. */
struct ch_ref {
  const char *type;
  const char *id; /* any bytes but NUL; ':' and '/' are fine */
};

/* A resource as a plugin emits it. All strings are UTF-8. */
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

#define CH_GRANT_EXPANDABLE                                                    \
  0x1u /* the principal's holders of                                           \
          `expand_slug` inherit this grant */

/* A grant: `principal` holds entitlement `resource#slug`. */
struct ch_grant {
  struct ch_ref resource;
  const char *slug;
  struct ch_ref principal;
  unsigned flags;
  const char *expand_slug;  /* with CH_GRANT_EXPANDABLE, e.g. "member" */
  const char *profile_json; /* a small JSON object, or NULL */
};

/*
 * Where list() and grants() put their output. Each callback returns 0 to go
 * on or non-zero to ask the op to stop (it then returns CH_E_STOPPED).
 * Grants may be emitted by any sync op, for any resource of the instance.
 */
struct ch_sink {
  int (*resource)(struct ch_sink *sink, const struct ch_resource *res);
  int (*grant)(struct ch_sink *sink, const struct ch_grant *grant);
  /* The token for the next page; not calling it (or NULL/"") means done. */
  int (*next_page)(struct ch_sink *sink, const char *token);
};

/* ---- provisioning ------------------------------------------------------- */

enum ch_outcome {
  CH_DONE = 0, /* the change was made */
  CH_ALREADY,  /* nothing to do: already granted / already absent */
  CH_DRY_RUN,  /* requests were printed, nothing was sent */
  CH_PENDING   /* accepted; an operator or the service must finish it */
};

/* What a provisioning op reports back (host-owned, fixed size). */
struct ch_result {
  enum ch_outcome outcome;
  char key[256];     /* e.g. the new account id or issue key; may be empty */
  char message[256]; /* one human line, e.g. "linked to existing account" */
};

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

/* ---- host services ------------------------------------------------------ */

enum ch_log_level { CH_LOG_ERROR = 0, CH_LOG_WARN, CH_LOG_INFO, CH_LOG_DEBUG };

/* Opaque per-instance handle: logs carry its "[plugin:tenant/instance]"
   prefix, HTTP counters and settings are kept per handle. */
struct ch_hctx;

#define CH_HTTP_RETRY_SAFE 0x1u /* a write the plugin knows is idempotent */
#define CH_HTTP_NO_RETRY 0x2u   /* never retry this request */

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
};

struct ch_http_resp {
  long status; /* HTTP status; 0 when none arrived */
  char *body;  /* NUL-terminated; host-owned; NULL when empty */
  size_t body_len;
  char *content_type; /* host-owned, may be NULL */
  int dry_run;        /* 1: not sent (dry run); status is 0 */
};

/* HTTP settings of one instance; set once from open(). */
struct ch_http_conf {
  const char *ca_file; /* PEM bundle to trust; NULL = system store */
  double max_rps;      /* client-side request cap; 0 = none */
  long timeout_ms;     /* total per attempt; 0 = host default */
  long connect_timeout_ms;
};

/*
 * The host table. Passed to open(); valid until close() returns.
 * All functions are thread-safe.
 */
struct ch_host {
  uint32_t abi;  /* CH_PLUGIN_ABI */
  uint32_t size; /* sizeof(struct ch_host) of the host */

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
};

#define CH_HOST_SIZE_V1 sizeof(struct ch_host)

/* ---- the descriptor ------------------------------------------------------ */

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
};

/* The size of a version-1 descriptor: the host rejects anything smaller. */
#define CH_PLUGIN_SIZE_V1                                                      \
  (offsetof(struct ch_plugin, action) + sizeof(((struct ch_plugin *)0)->action))

/* The one symbol a plugin exports. */
typedef const struct ch_plugin *(*ch_plugin_entry_fn)(uint32_t host_abi);

/* ---- small inline helpers (no host linkage needed) ------------------------
 */

#include <stdio.h>

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
