/* SPDX-License-Identifier: MIT */
/* One connector instance: a plugin, its resolved options, its host handle,
   and how its run went. */
#ifndef CONNHOST_INSTANCE_H
#define CONNHOST_INSTANCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <connhost/plugin.h>

#include "config.h"
#include "http.h"
#include "loader.h"

struct instance;

/* The per-instance handle plugins get (opaque to them). */
struct ch_hctx {
  char *label; /* "plugin:tenant/instance" */
  struct http_client *http;
  int dry_run;
  const struct plugin_layout *layout; /* of the records the plugin passes */
  struct ch_http_conf http_base;      /* the instance's http: block, applied
                                         before open(); a plugin's http_setup()
                                         overrides only what it sets */
};

struct instance {
  const struct config_instance *ci;
  const struct plugin *plugin;
  struct config_options opts;
  struct config_options http_opts; /* the http: block */
  void *conf;                      /* the plugin's config struct, or NULL */
  struct ch_cfg cfg;
  struct ch_hctx hctx;
  void *pinst; /* the plugin's instance after a successful open */
  int graph_index;
  int isolated;                 /* its plugin runs in a child (isolate.h) */
  struct http_stats child_http; /* isolated: the child's counters */

  /* Run state, shared by the workers. */
  atomic_int failed;
  atomic_ullong pages;
  atomic_ullong warnings;
  atomic_ullong resources;
  atomic_ullong grants;
  pthread_mutex_t lock;
  char error[CH_ERR_MSG_SIZE + 128];
};

/* The host services table handed to every plugin. */
extern const struct ch_host host_table;

/*
 * Bind `ci` to `plugin`: validate and resolve its options and its http:
 * block (errors carry file:line:col), fill the plugin's config struct,
 * and apply the HTTP settings to the new HTTP client.
 */
int instance_prepare(struct instance *in, const struct config *c,
                     const struct config_instance *ci,
                     const struct plugin *plugin, struct ch_err *err);
/*
 * The dispatch layer (Linux-PAM style): the host calls a plugin op only
 * through these. Each resets `err`; answers CH_E_UNSUPPORTED with a
 * message when the op is absent or past the plugin's descriptor size;
 * on failure makes sure `err` has the code and a message (the status text
 * when the plugin left none) and redacts secrets from it. list and grants
 * count a page, and hand the plugin a sink of the dispatch layer's that
 * passes records to `sink` in the host's layout (fields the plugin's
 * build lacks read as zero). The op arguments are the plugin.h ones.
 */
/* open (config borrowed for the call); a failure leaves no instance. */
int instance_open(struct instance *in, struct ch_err *err);
int instance_check(struct instance *in, struct ch_err *err);
int instance_list(struct instance *in, const char *type,
                  const struct ch_ref *parent, const char *token,
                  struct ch_sink *sink, struct ch_err *err);
int instance_grants(struct instance *in, const struct ch_ref *resource,
                    const char *token, struct ch_sink *sink,
                    struct ch_err *err);
int instance_grant(struct instance *in, const struct ch_change *change,
                   struct ch_result *result, struct ch_err *err);
int instance_revoke(struct instance *in, const struct ch_change *change,
                    struct ch_result *result, struct ch_err *err);
int instance_provision(struct instance *in, const struct ch_account *account,
                       struct ch_result *result, struct ch_err *err);
int instance_deprovision(struct instance *in, const struct ch_change *change,
                         struct ch_result *result, struct ch_err *err);
int instance_action(struct instance *in, const char *name,
                    const struct ch_kv *args, size_t nargs,
                    struct ch_result *result, struct ch_err *err);
/* close (if opened) and free everything; accepts a never-prepared one. */
void instance_release(struct instance *in);

/* The instance's HTTP counters, wherever its plugin ran. */
void instance_http_stats(const struct instance *in, struct http_stats *st);
/* An isolated instance's counters, as its child reported them. */
void instance_set_child_http(struct instance *in, const struct http_stats *st);

/* Dry run: print requests to `out` instead of sending them. */
void instance_set_dry_run(struct instance *in, FILE *out);

/* Record the instance's first error; later ones are only logged. */
void instance_fail(struct instance *in, const char *fmt, ...) CH_PRINTF(2, 3);
/* The same for a failure already logged (by an isolated child). */
void instance_fail_logged(struct instance *in, const char *msg);
int instance_failed(struct instance *in);

#endif
