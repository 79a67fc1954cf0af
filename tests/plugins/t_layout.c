/* SPDX-License-Identifier: MIT */
/* One plugin, two ABI 1 builds: the oldest and a later header's layout. */

/*
 * Build with exactly one of:
 *   -DT_OLD     t_old.so: against the ABI 1.0 header kept in
 *               tests/plugins/abi-1.0 (no layout sizes, 1.0 descriptor);
 *               it stands for every binary built before ABI 1.1.
 *   -DT_FUTURE  t_future.so: against today's header, laid out as a later
 *               one might be: the descriptor, every table element and
 *               every record carries a field this host does not know, and
 *               the layout sizes say so. It uses the ABI 1.1 host service
 *               log_enabled only when CH_HOST_HAS says the host has it.
 * Both serve the same data, so their graphs compare equal.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <connhost/plugin.h>

#if defined(T_OLD)
#define T_NAME "t_old"
#ifdef CH_PLUGIN_INIT
#error "t_old must be built against tests/plugins/abi-1.0, not include/"
#endif
#elif defined(T_FUTURE)
#define T_NAME "t_future"
#else
#error "build with -DT_OLD or -DT_FUTURE"
#endif

#if defined(T_FUTURE)
/* Each element and record as a later header might grow it: the host must
   step over `later` and never read it. */
#define GROWN(type, name)                                                      \
  typedef struct {                                                             \
    type v;                                                                    \
    const char *later;                                                         \
  } name
#define E(...)                                                                 \
  { {__VA_ARGS__}, "unknown to this host" }
#define V(x) ((x).v)
#else
#define GROWN(type, name) typedef type name
#define E(...)                                                                 \
  { __VA_ARGS__ }
#define V(x) (x)
#endif
GROWN(struct ch_option, tl_option_t);
GROWN(struct ch_entitlement_def, tl_ent_t);
GROWN(struct ch_resource_type, tl_type_t);
GROWN(struct ch_action_def, tl_action_t);
GROWN(struct ch_resource, tl_resource_t);
GROWN(struct ch_grant, tl_grant_t);

static const tl_option_t tl_options[] = {
    E("users", CH_OPT_INT, 0, "3", "number of users"),
    E("prefix", CH_OPT_STRING, 0, "User", "display name prefix"),
    E("token", CH_OPT_STRING, CH_OPT_SECRET, NULL, "unused secret"),
    E(NULL, 0, 0, NULL, NULL)};

static const char *const tl_to_user[] = {"user", NULL};
static const char *const tl_to_user_group[] = {"user", "group", NULL};

static const tl_ent_t tl_group_ents[] = {E("member", "Member", tl_to_user),
                                         E("owner", "Owner", tl_to_user_group),
                                         E(NULL, NULL, NULL)};
static const tl_ent_t tl_project_ents[] = {
    E("viewer", "Viewer", tl_to_user_group), E(NULL, NULL, NULL)};

static const tl_type_t tl_types[] = {
    E("user", "User", CH_TRAIT_USER, NULL, NULL, CH_CAP_SYNC,
      CH_TYPE_NO_GRANTS_CALL),
    E("group", "Group", CH_TRAIT_GROUP, NULL, &V(tl_group_ents[0]), CH_CAP_SYNC,
      0),
    E("project", "Project", CH_TRAIT_WORKSPACE, "group", &V(tl_project_ents[0]),
      CH_CAP_SYNC, 0),
    E(NULL, NULL, 0, NULL, NULL, 0, 0)};

static const char *const tl_ping_args[] = {"who", "note", NULL};
static const char *const tl_ping_required[] = {"who", NULL};
static const char *const tl_echo_args[] = {"text", NULL};

static const tl_action_t tl_actions[] = {
    E("ping", "answer pong", tl_ping_args, tl_ping_required),
    E("echo", "say it back", tl_echo_args, NULL), E(NULL, NULL, NULL, NULL)};

struct tl_inst {
  long long users;
  char prefix[64];
  const struct ch_host *host;
};

static const struct ch_opt_value *tl_opt(const struct ch_cfg *cfg,
                                         const char *name) {
  for (size_t i = 0; V(tl_options[i]).name && i < cfg->nvalues; i++) {
    if (strcmp(V(tl_options[i]).name, name) == 0)
      return cfg->values[i].set ? &cfg->values[i] : NULL;
  }
  return NULL;
}

static int tl_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **instp, struct ch_err *err) {
  const struct ch_opt_value *users = tl_opt(cfg, "users");
  const struct ch_opt_value *prefix = tl_opt(cfg, "prefix");
  struct tl_inst *ti = calloc(1, sizeof(*ti));

  if (!ti)
    return ch_err_set(err, CH_E_NOMEM, "out of memory");
  ti->users = users ? users->num : 0;
  ti->host = host;
  snprintf(ti->prefix, sizeof(ti->prefix), "%s",
           prefix && prefix->str ? prefix->str : "");
#if defined(T_FUTURE)
  /* The point of t_future: a newer plugin on whatever host it meets. */
  if (CH_HOST_HAS(host, log_enabled))
    host->log(hc, CH_LOG_INFO,
              "host table %u bytes: log_enabled yes (debug %s), sink %u, "
              "result %u bytes",
              host->size, host->log_enabled(hc, CH_LOG_DEBUG) ? "on" : "off",
              (unsigned)CH_HOST_SIZEOF(host, sink, CH_SINK_SIZE_V1),
              (unsigned)CH_HOST_SIZEOF(host, result, CH_RESULT_SIZE_V1));
  else
    host->log(hc, CH_LOG_INFO,
              "host table %u bytes: log_enabled no, sink %u, result %u bytes",
              host->size, (unsigned)CH_HOST_SIZEOF(host, sink, CH_SINK_SIZE_V1),
              (unsigned)CH_HOST_SIZEOF(host, result, CH_RESULT_SIZE_V1));
#endif
  *instp = ti;
  return CH_OK;
}

static void tl_close(void *inst) { free(inst); }

static int tl_emit(struct ch_sink *sink, const char *type, const char *id,
                   const char *name, const char *ptype, const char *pid) {
  tl_resource_t r =
      E(.type = type, .id = id, .display_name = name, .status = CH_RES_ENABLED,
        .parent_type = ptype, .parent_id = pid);
  return sink->resource(sink, &V(r));
}

static int tl_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *page_token, struct ch_sink *sink,
                   struct ch_err *err) {
  struct tl_inst *ti = inst;
  char id[32], name[128];
  int stop = 0;

  if (strcmp(type, "user") == 0) {
    for (long long i = 0; i < ti->users && !stop; i++) {
      snprintf(id, sizeof(id), "u%lld", i);
      snprintf(name, sizeof(name), "%s %lld", ti->prefix, i);
      stop = tl_emit(sink, "user", id, name, NULL, NULL);
    }
  } else if (strcmp(type, "group") == 0) {
    stop = tl_emit(sink, "group", "staff", "Staff", NULL, NULL) ||
           tl_emit(sink, "group", "admins", "Admins", NULL, NULL);
  } else if (strcmp(type, "project") == 0) {
    snprintf(id, sizeof(id), "%s-wiki", parent->id);
    stop = tl_emit(sink, "project", id, "Wiki", parent->type, parent->id);
  }
  return stop ? ch_err_set(err, CH_E_STOPPED, "stopped by the host") : CH_OK;
}

static int tl_grant_to(struct ch_sink *sink, const struct ch_ref *res,
                       const char *slug, const char *ptype, const char *pid) {
  tl_grant_t g = E(.resource = *res, .slug = slug, .principal = {ptype, pid});
  return sink->grant(sink, &V(g));
}

/* Every user is a member of staff, u0 owns admins, admins view each
   project. */
static int tl_grants(void *inst, const struct ch_ref *res,
                     const char *page_token, struct ch_sink *sink,
                     struct ch_err *err) {
  struct tl_inst *ti = inst;
  char id[32];
  int stop = 0;

  if (strcmp(res->type, "group") == 0 && strcmp(res->id, "staff") == 0) {
    for (long long i = 0; i < ti->users && !stop; i++) {
      snprintf(id, sizeof(id), "u%lld", i);
      stop = tl_grant_to(sink, res, "member", "user", id);
    }
  } else if (strcmp(res->type, "group") == 0 && ti->users > 0) {
    stop = tl_grant_to(sink, res, "owner", "user", "u0");
  } else if (strcmp(res->type, "project") == 0) {
    stop = tl_grant_to(sink, res, "viewer", "group", "admins");
  }
  return stop ? ch_err_set(err, CH_E_STOPPED, "stopped by the host") : CH_OK;
}

static int tl_action(void *inst, const char *name, const struct ch_kv *args,
                     size_t nargs, struct ch_result *result,
                     struct ch_err *err) {
  const char *who = "";

  for (size_t i = 0; i < nargs; i++) {
    if (strcmp(args[i].key, "who") == 0 || strcmp(args[i].key, "text") == 0)
      who = args[i].value;
  }
  result->outcome = CH_DONE;
  snprintf(result->message, sizeof(result->message), "%s %s",
           strcmp(name, "ping") == 0 ? "pong" : "echo", who);
#if defined(T_FUTURE)
  /* ABI 1.2: a longer answer, only where the host's result has room. */
  if (CH_RESULT_HAS(((struct tl_inst *)inst)->host, output) && result->output &&
      strcmp(name, "echo") == 0)
    return result->output(result, who);
#endif
  return CH_OK;
}

#if defined(T_FUTURE)
/* ABI 1.3: manual work, reported as such only to a host that knows
   CH_MANUAL; an older one gets an error with the same steps. */
static int tl_deprovision(void *inst, const struct ch_change *change,
                          struct ch_result *result, struct ch_err *err) {
  const struct ch_host *host = ((struct tl_inst *)inst)->host;

  if (!(CH_HOST_HAS(host, max_outcome) && host->max_outcome >= CH_MANUAL))
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "remove %s by hand (this host predates manual work)",
                      change->principal.id);
  result->outcome = CH_MANUAL;
  snprintf(result->message, sizeof(result->message), "remove %s by hand",
           change->principal.id);
  return CH_OK;
}

/* The descriptor of a later header: one op past this host's fields. */
static const struct {
  struct ch_plugin v;
  int (*later_op)(void *inst);
} tl_plugin = {{.abi = CH_PLUGIN_ABI,
                .size = sizeof(tl_plugin),
                .option_size = sizeof(tl_option_t),
                .type_size = sizeof(tl_type_t),
                .entitlement_size = sizeof(tl_ent_t),
                .action_size = sizeof(tl_action_t),
                .resource_size = sizeof(tl_resource_t),
                .grant_size = sizeof(tl_grant_t),
                .http_req_size = sizeof(struct ch_http_req),
                .http_resp_size = sizeof(struct ch_http_resp),
                .http_conf_size = sizeof(struct ch_http_conf),
#else
static const struct {
  struct ch_plugin v;
} tl_plugin = {
    {.abi = CH_PLUGIN_ABI,
     .size = sizeof(struct ch_plugin),
#endif
                .name = T_NAME,
                .version = "1.0",
                .description = "ABI layout test plugin",
                .options = &V(tl_options[0]),
                .types = &V(tl_types[0]),
                .actions = &V(tl_actions[0]),
                .open = tl_open,
                .close = tl_close,
                .list = tl_list,
                .grants = tl_grants,
#if defined(T_FUTURE)
                .deprovision_account = tl_deprovision,
#endif
                .action = tl_action},
#if defined(T_FUTURE)
               NULL
#endif
};

CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return host_abi == CH_PLUGIN_ABI ? &tl_plugin.v : NULL;
}
