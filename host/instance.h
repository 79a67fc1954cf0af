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
};

struct instance {
  const struct config_instance *ci;
  const struct plugin *plugin;
  struct config_options opts;
  struct ch_cfg cfg;
  struct ch_hctx hctx;
  void *pinst; /* the plugin's instance after a successful open */
  int graph_index;

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
 * Bind `ci` to `plugin`: validate and resolve its options (errors carry
 * file:line:col). Allocates the HTTP client.
 */
int instance_prepare(struct instance *in, const struct config *c,
                     const struct config_instance *ci,
                     const struct plugin *plugin, struct ch_err *err);
/* Call the plugin's open (config borrowed for the call). */
int instance_open(struct instance *in, struct ch_err *err);
/* close (if opened) and free everything; accepts a never-prepared one. */
void instance_release(struct instance *in);

/* Dry run: print requests to `out` instead of sending them. */
void instance_set_dry_run(struct instance *in, FILE *out);

/* Record the instance's first error; later ones are only logged. */
void instance_fail(struct instance *in, const char *fmt, ...) CH_PRINTF(2, 3);
int instance_failed(struct instance *in);

#endif
