/* SPDX-License-Identifier: MIT */
/* Broken test plugins for the loader: one source, one defect per -D flag. */

/*
 * Build with exactly one of:
 *   -DT_BADABI   t_badabi.so: descriptor abi is 99
 *   -DT_SHORT    t_short.so:  descriptor size is 8
 *   -DT_MISNAME  t_misname.so: descriptor name is "someone_else"
 *   -DT_NOSYM    t_nosym.so:  exports connhost_plugins (a typo), not
 *                             connhost_plugin
 *   -DT_NOOPS    t_noops.so:  the mandatory list op is NULL
 *   -DT_STRIDE   t_stride.so: option_size is 4, below ABI 1's option size
 * Everything else is a valid plugin, so each file fails the loader for
 * exactly one reason. The ops work, in case a loader lets one through.
 */
#include <stddef.h>

#include <connhost/plugin.h>

#if defined(T_BADABI)
#define T_NAME "t_badabi"
#elif defined(T_SHORT)
#define T_NAME "t_short"
#elif defined(T_MISNAME)
#define T_NAME "someone_else"
#elif defined(T_NOSYM)
#define T_NAME "t_nosym"
#elif defined(T_NOOPS)
#define T_NAME "t_noops"
#elif defined(T_STRIDE)
#define T_NAME "t_stride"
#else
#error                                                                         \
    "build with one of -DT_BADABI -DT_SHORT -DT_MISNAME -DT_NOSYM -DT_NOOPS -DT_STRIDE"
#endif

static const struct ch_option ta_options[] = {{NULL, 0, 0, NULL, NULL}};

static const struct ch_entitlement_def ta_no_ents[] = {{NULL, NULL, NULL}};

static const struct ch_resource_type ta_types[] = {
    {.id = "user",
     .display_name = "User",
     .traits = CH_TRAIT_USER,
     .entitlements = ta_no_ents,
     .caps = CH_CAP_SYNC,
     .flags = CH_TYPE_NO_GRANTS_CALL},
    {.id = NULL}};

/* Instances need no state; any non-NULL pointer will do. */
static char ta_inst;

static int ta_open(const struct ch_host *host, struct ch_hctx *hc,
                   const struct ch_cfg *cfg, void **inst, struct ch_err *err) {
  *inst = &ta_inst;
  return CH_OK;
}

static void ta_close(void *inst) {}

#if !defined(T_NOOPS)
/* Serves nothing: an empty, complete listing. */
static int ta_list(void *inst, const char *type, const struct ch_ref *parent,
                   const char *page_token, struct ch_sink *sink,
                   struct ch_err *err) {
  return CH_OK;
}
#endif

static const struct ch_plugin ta_plugin = {
#if defined(T_BADABI)
    .abi = 99,
#else
    .abi = CH_PLUGIN_ABI,
#endif
#if defined(T_SHORT)
    .size = 8,
#else
    .size = sizeof(struct ch_plugin),
#endif
#if defined(T_STRIDE)
    .option_size = 4,
#endif
    .name = T_NAME,
    .version = "0.0.1",
    .description = "loader test plugin with one defect",
    .options = ta_options,
    .types = ta_types,
    .open = ta_open,
    .close = ta_close,
#if !defined(T_NOOPS)
    .list = ta_list,
#endif
};

#if defined(T_NOSYM)
/* Close to the real name, as a typo would be: dlsym must still miss it. */
CH_EXPORT const struct ch_plugin *connhost_plugins(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugins(uint32_t host_abi) {
  return &ta_plugin;
}
#else
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi);
CH_EXPORT const struct ch_plugin *connhost_plugin(uint32_t host_abi) {
  return &ta_plugin;
}
#endif
