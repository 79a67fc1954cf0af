/* SPDX-License-Identifier: MIT */
/* `connhost check` and `connhost plugins`: what is configured and what
   is installed, and whether it works. */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "graph.h"
#include "log.h"

int cmd_check(struct session *s) {
  struct run_state run = {0};

  for (size_t i = 0; i < s->ninsts; i++) {
    struct instance *in = s->insts[i];
    const struct ch_plugin *d = in->plugin->desc;
    struct ch_err err = {0};
    char clean[sizeof(err.msg) + 64];
    int rc = instance_open(in, &err);

    if (rc == CH_OK && d->check)
      rc = instance_check(in, &err);
    run_count(&run, rc == CH_OK);
    if (rc == CH_OK) {
      printf("ok      %s/%s (%s %s): %s\n", in->ci->tenant, in->ci->name,
             d->name, d->version ? d->version : "",
             d->check ? "credentials work" : "config valid (no check op)");
    } else {
      log_redact(err.msg[0] ? err.msg : "failed", clean, sizeof(clean));
      printf("FAILED  %s/%s (%s %s): %s\n", in->ci->tenant, in->ci->name,
             d->name, d->version ? d->version : "", clean);
    }
  }
  return run_exit_code(&run);
}

static const char *cap_name(unsigned bit) {
  switch (bit) {
  case CH_CAP_SYNC:
    return "sync";
  case CH_CAP_GRANT:
    return "grant";
  case CH_CAP_REVOKE:
    return "revoke";
  case CH_CAP_PROVISION:
    return "provision";
  default:
    return NULL;
  }
}

/* The names of the set bits, comma-separated; `none` when there are none. */
static void print_bits(unsigned bits, const char *(*name)(unsigned),
                       const char *none) {
  int first = 1;
  for (unsigned b = 1; b; b <<= 1) {
    const char *n = bits & b ? name(b) : NULL;
    if (n) {
      printf("%s%s", first ? "" : ",", n);
      first = 0;
    }
  }
  if (first)
    printf("%s", none);
}

static void print_list(const char *const *list) {
  for (size_t i = 0; list && list[i]; i++)
    printf("%s%s", i ? "," : "", list[i]);
}

static void print_plugin(const struct plugin *p) {
  const struct ch_plugin *d = p->desc;

  printf("%s %s (ABI %u): %s\n", d->name, d->version ? d->version : "?", d->abi,
         d->description ? d->description : "");
  printf("  file: %s\n", p->path);
  printf("  types:\n");
  for (const struct ch_resource_type *t = d->types; t->id; t++) {
    printf("    %-14s traits: ", t->id);
    print_bits(t->traits, graph_trait_name, "");
    if (t->parent)
      printf("; parent: %s", t->parent);
    printf("; caps: ");
    print_bits(t->caps, cap_name, "none");
    printf("\n");
    for (const struct ch_entitlement_def *e = t->entitlements; e && e->slug;
         e++) {
      printf("      #%s -> ", e->slug);
      print_list(e->grantable_to);
      printf("\n");
    }
  }
  if (d->actions && d->actions[0].name) {
    printf("  actions:\n");
    for (const struct ch_action_def *a = d->actions; a->name; a++) {
      printf("    %s(", a->name);
      print_list(a->args);
      printf("): %s\n", a->help ? a->help : "");
    }
  }
  printf("  ops: open,close,list%s%s%s%s%s%s\n", d->check ? ",check" : "",
         d->grants ? ",grants" : "", d->grant ? ",grant" : "",
         d->revoke ? ",revoke" : "",
         d->provision_account ? ",provision_account" : "",
         d->action ? ",action" : "");
  printf("  options:\n");
  /* the keys the config may give: the plugin's, then the host's aliases */
  for (const struct ch_config_key *o = p->keys; o && o->name; o++) {
    printf("    %-26s %s%s%s", o->name, loader_opt_type_name(o->type),
           o->flags & CH_OPT_REQUIRED ? ", required" : "",
           o->flags & CH_OPT_SECRET ? ", secret" : "");
    if (o->def)
      printf(", default %s", o->def);
    printf("%s%s\n", o->help ? ": " : "", o->help ? o->help : "");
  }
}

int cmd_plugins(struct session *s) {
  struct scan_entry *e = NULL;
  struct ch_err err = {0};
  size_t n = 0, nbad = 0;

  if (registry_scan(&s->registry, &e, &n, &err) != CH_OK) {
    log_error("%s", err.msg);
    return EXIT_FAIL;
  }
  printf("plugin directory: %s\n", s->registry.dir);
  if (!n)
    printf("no plugins (*.so) found\n");
  for (size_t i = 0; i < n; i++) {
    if (e[i].plugin)
      print_plugin(e[i].plugin);
    else
      nbad++;
  }
  for (size_t i = 0; i < n; i++) {
    if (!e[i].plugin)
      printf("FAILED to load %s: %s\n", e[i].file, e[i].error);
  }
  scan_entries_free(e, n);
  return nbad ? EXIT_FAIL : EXIT_OK;
}
