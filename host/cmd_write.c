/* SPDX-License-Identifier: MIT */
/* The write commands: grant, revoke, provision, deprovision, action. Each
   needs `provisioning: true` on the instance, supports --dry-run, and
   leaves an audit line on stderr. A change given --ticket, or one the
   plugin says a person must make (CH_MANUAL), opens a ticket instead
   (tickets.h). */
#include "autoconfig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "graph.h"
#include "log.h"
#include "tickets.h"

static const char *const outcome_names[] = {"done", "already", "dry run",
                                            "pending", "manual"};

static const char *outcome_name(enum ch_outcome o) {
  return o <= CH_MANUAL ? outcome_names[o] : "?";
}

/* Writes are refused unless the operator opted in for this instance; a dry
   run sends nothing, so it is allowed either way. */
static int check_writable(struct session *s, struct instance *in) {
  const struct config_instance *ci = in->ci;

  if (ci->provisioning || s->cli->dry_run)
    return -1;
  log_error("%s:%u:%u: instance '%s/%s' does not allow writes: set "
            "'provisioning: true' on it to grant, revoke, provision or run "
            "actions (or use --dry-run to preview)",
            ci->node->file, ci->node->line, ci->node->col, ci->tenant,
            ci->name);
  return EXIT_USAGE;
}

/* Bind, gate and open the instance a write goes to. */
static int open_for_write(struct session *s, const char *tenant,
                          const char *instance, struct instance **out) {
  struct ch_err err = {0};
  struct instance *in = NULL;
  int rc = session_bind(s, tenant, instance, &in);

  if (rc >= 0)
    return rc;
  rc = check_writable(s, in);
  if (rc >= 0)
    return rc;
  if (s->cli->dry_run)
    instance_set_dry_run(in, stdout);
  rc = instance_open(in, &err);
  if (rc != CH_OK) {
    log_msg(in->hctx.label, CH_LOG_ERROR, "open: %s", err.msg);
    return run_exit_of(rc);
  }
  *out = in;
  return -1;
}

static void audit(struct instance *in, const char *fmt, ...) CH_PRINTF(2, 3);
static void audit(struct instance *in, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  log_msg(in->hctx.label, CH_LOG_INFO, "audit: %s", line);
}

/* Print the outcome of a write and turn it into an exit code. */
static int report(struct instance *in, const char *what, int rc,
                  const struct ch_result *res, const struct ch_err *err) {
  char clean[sizeof(err->msg) + 64];

  if (rc != CH_OK) {
    log_redact(err->msg[0] ? err->msg : "failed", clean, sizeof(clean));
    audit(in, "%s: failed: %s", what, clean);
    /* An error line too (the audit line is info, gone with --quiet),
       through the log so that JSON logs stay JSON. */
    log_msg(in->hctx.label, CH_LOG_ERROR, "%s failed: %s", what, clean);
    return run_exit_of(rc);
  }
  audit(in, "%s: %s%s%s", what, outcome_name(res->outcome),
        res->message[0] ? ": " : "", res->message);
  switch (res->outcome) {
  case CH_DONE:
    printf("done: %s", what);
    break;
  case CH_ALREADY:
    printf("already: %s (nothing to change)", what);
    break;
  case CH_DRY_RUN:
    printf("dry run: %s (nothing was sent)", what);
    break;
  case CH_PENDING:
    printf("pending: %s", what);
    break;
  case CH_MANUAL:
    printf("manual: %s", what);
    break;
  }
  if (res->key[0])
    printf(" [%s]", res->key);
  if (res->message[0])
    printf(": %s", res->message);
  printf("\n");
  return run_exit_of(rc);
}

/* The tenant's `tickets:` block, or NULL when it has none. */
static const struct config_tickets *tickets_of(const struct session *s,
                                               const char *tenant) {
  for (size_t t = 0; t < s->config->ntenants; t++) {
    const struct config_tenant *ct = &s->config->tenants[t];
    if (strcmp(ct->name, tenant) == 0)
      return ct->tickets.instance ? &ct->tickets : NULL;
  }
  return NULL;
}

/* Open a ticket for `ch` in the tenant's ticketing instance. `manual`: the
   plugin said a person must make the change (else --ticket asked). */
static int open_ticket(struct session *s, struct ticket_change *ch,
                       int manual) {
  const struct config_tickets *tc = tickets_of(s, ch->tenant);
  struct instance *tin = NULL;
  int rc;

  if (!tc) {
    log_error("%s: %s; add 'tickets: {instance: NAME}' to tenant '%s' to "
              "open a ticket for it (docs/plugins/jira_cloud.md)",
              s->config->path,
              manual ? "the change needs manual work"
                     : "--ticket needs a ticketing instance",
              ch->tenant);
    return manual ? EXIT_FAIL : EXIT_USAGE;
  }
  if (!s->config->store) {
    log_error("%s: tickets are recorded in the store, and this config has "
              "'store: none'",
              s->config->path);
    return EXIT_USAGE;
  }
  ch->requested_by = tickets_requester(s->cli->requester);
  rc = open_for_write(s, ch->tenant, tc->instance, &tin);
  if (rc >= 0)
    return rc;
  return tickets_open(tin, tc, s->config->store, ch);
}

/* Report a write's outcome; a manual one goes on as a ticket. */
static int finish(struct session *s, struct instance *in, const char *what,
                  int rc, const struct ch_result *res, const struct ch_err *err,
                  struct ticket_change *ch) {
  rc = report(in, what, rc, res, err);
  if (rc != EXIT_OK || res->outcome != CH_MANUAL)
    return rc;
  ch->steps = res->message;
  return open_ticket(s, ch, 1);
}

int cmd_grant_revoke(struct session *s) {
  struct cli *cli = s->cli;
  int granting = cli->cmd == CMD_GRANT;
  const char *verb = granting ? "grant" : "revoke";
  struct key_parts ent = {0}, pr = {0};
  struct ch_err err = {0};
  struct ch_result res = {0};
  struct ch_change ch = {0};
  struct ticket_change tch = {0};
  struct instance *in = NULL;
  const struct ch_resource_type *rt, *pt;
  const struct ch_entitlement_def *ed;
  const struct ch_plugin *d;
  char what[1024];
  int rc = EXIT_USAGE;

  if (!cli->entitlement || !cli->principal) {
    log_error("%s needs --entitlement KEY and --principal KEY", verb);
    return EXIT_USAGE;
  }
  if (key_parse(cli->entitlement, 1, &ent, &err) != CH_OK ||
      key_parse(cli->principal, 0, &pr, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  if (strcmp(ent.tenant, pr.tenant) || strcmp(ent.instance, pr.instance)) {
    log_error("the principal '%s' must belong to the entitlement's instance "
              "'%s/%s'",
              cli->principal, ent.tenant, ent.instance);
    goto out;
  }
  rc = open_for_write(s, ent.tenant, ent.instance, &in);
  if (rc >= 0)
    goto out;
  rc = EXIT_USAGE;
  d = in->plugin->desc;
  rt = plugin_type(d, ent.type);
  pt = plugin_type(d, pr.type);
  ed = rt ? plugin_entitlement(rt, ent.slug) : NULL;
  if (!rt || !pt) {
    log_error("plugin '%s' has no resource type '%s'", d->name,
              rt ? pr.type : ent.type);
    goto out;
  }
  if (!ed) {
    log_error("type '%s' of plugin '%s' has no entitlement '%s'", ent.type,
              d->name, ent.slug);
    goto out;
  }
  /* A ticket asks a person: the plugin need not be able to do it. */
  if (!cli->ticket &&
      (!(granting ? d->grant : d->revoke) ||
       !(rt->caps & (granting ? CH_CAP_GRANT : CH_CAP_REVOKE)))) {
    log_error("plugin '%s' cannot %s '%s' entitlements", d->name, verb,
              ent.type);
    goto out;
  }
  if (!plugin_list_has(ed->grantable_to, pr.type)) {
    log_error("'%s#%s' is not grantable to a '%s'", ent.type, ent.slug,
              pr.type);
    goto out;
  }
  ch.resource.type = ent.type;
  ch.resource.id = ent.id;
  ch.slug = ent.slug;
  ch.principal.type = pr.type;
  ch.principal.id = pr.id;
  ch.dry_run = cli->dry_run;
  tch.kind = verb;
  tch.tenant = ent.tenant;
  tch.instance = ent.instance;
  tch.entitlement = cli->entitlement;
  tch.principal = cli->principal;
  if (cli->ticket) {
    rc = open_ticket(s, &tch, 0);
    goto out;
  }
  snprintf(what, sizeof(what), "%s %s %s %s", verb, cli->entitlement,
           granting ? "to" : "from", cli->principal);
  rc = granting ? instance_grant(in, &ch, &res, &err)
                : instance_revoke(in, &ch, &res, &err);
  rc = finish(s, in, what, rc, &res, &err, &tch);
out:
  key_parts_release(&ent);
  key_parts_release(&pr);
  return rc;
}

/* The --attr / --arg values as key/value pairs: "k=v" is split in place
   (argv strings are ours to modify; cli_parse checked each has a '='). */
static struct ch_kv *split_kv(struct cli *cli) {
  struct ch_kv *kv = calloc(cli->nkv ? cli->nkv : 1, sizeof(*kv));

  for (size_t i = 0; kv && i < cli->nkv; i++) {
    char *eq = strchr((char *)cli->kv[i], '=');
    *eq = '\0';
    kv[i].key = cli->kv[i];
    kv[i].value = eq + 1;
  }
  return kv;
}

/* The one tenant and instance a provision or action names. */
static int target(struct session *s, const char *verb) {
  if (s->cli->ntenants != 1 || !s->cli->instance) {
    log_error("%s needs exactly one --tenant NAME and --instance NAME", verb);
    return EXIT_USAGE;
  }
  return -1;
}

/* Why `email` cannot be an address, or NULL: one '@' with something on
   both sides, no control characters, and RFC 5321's lengths (local part
   64, domain 255, path 254). Checked before the plugin sends anything. */
static const char *email_problem(const char *email) {
  const char *at = strchr(email, '@');
  size_t n = strlen(email);

  for (const char *p = email; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return "it contains a control character";
  if (!at || strchr(at + 1, '@'))
    return "it needs exactly one '@'";
  if (at == email || !at[1])
    return "it needs a local part and a domain around the '@'";
  if (n > 254 || (size_t)(at - email) > 64)
    return "it is longer than an address can be (254, local part 64)";
  return NULL;
}

int cmd_provision(struct session *s) {
  struct cli *cli = s->cli;
  struct ch_account acct = {0};
  struct ticket_change tch = {0};
  struct ch_result res = {0};
  struct ch_err err = {0};
  struct ch_kv *attrs = NULL;
  struct instance *in = NULL;
  const struct ch_resource_type *ut = NULL;
  const struct ch_plugin *d;
  char what[512];
  int rc = target(s, "provision");

  if (rc >= 0)
    return rc;
  if (!cli->email) {
    log_error("provision needs --email ADDRESS");
    return EXIT_USAGE;
  }
  if (email_problem(cli->email)) {
    log_error("--email is not an email address: %s", email_problem(cli->email));
    return EXIT_USAGE;
  }
  rc = open_for_write(s, cli->tenants[0], cli->instance, &in);
  if (rc >= 0)
    return rc;
  d = in->plugin->desc;
  for (const struct ch_resource_type *t = d->types; t->id; t++) {
    if (t->caps & CH_CAP_PROVISION)
      ut = t;
  }
  if (!cli->ticket && (!d->provision_account || !ut)) {
    log_error("plugin '%s' cannot provision accounts", d->name);
    return EXIT_USAGE;
  }
  attrs = split_kv(cli);
  if (!attrs)
    return EXIT_FAIL;
  acct.email = cli->email;
  acct.display_name = cli->display_name;
  acct.given_name = cli->given_name;
  acct.family_name = cli->family_name;
  acct.attrs = attrs;
  acct.nattrs = cli->nkv;
  acct.dry_run = cli->dry_run;
  tch.kind = "provision";
  tch.tenant = cli->tenants[0];
  tch.instance = cli->instance;
  tch.principal = cli->email;
  if (cli->ticket) {
    free(attrs);
    return open_ticket(s, &tch, 0);
  }
  snprintf(what, sizeof(what), "provision %s in %s/%s", cli->email,
           cli->tenants[0], cli->instance);
  rc = instance_provision(in, &acct, &res, &err);
  if (rc == CH_OK && res.key[0]) {
    /* Print the new account's graph key, ready for a grant. */
    char *key = key_resource(cli->tenants[0], cli->instance, ut->id, res.key);
    if (key) {
      snprintf(res.key, sizeof(res.key), "%s", key);
      free(key);
    }
  }
  rc = finish(s, in, what, rc, &res, &err, &tch);
  free(attrs);
  return rc;
}

int cmd_deprovision(struct session *s) {
  struct cli *cli = s->cli;
  struct key_parts pr = {0};
  struct ch_err err = {0};
  struct ch_result res = {0};
  struct ch_change ch = {0};
  struct ticket_change tch = {0};
  struct instance *in = NULL;
  const struct ch_plugin *d;
  char what[1024];
  int rc = EXIT_USAGE;

  if (!cli->principal) {
    log_error("deprovision needs --principal KEY (the account's "
              "tenant/instance/type/id)");
    return EXIT_USAGE;
  }
  if (key_parse(cli->principal, 0, &pr, &err) != CH_OK) {
    log_error("%s", err.msg);
    goto out;
  }
  rc = open_for_write(s, pr.tenant, pr.instance, &in);
  if (rc >= 0)
    goto out;
  d = in->plugin->desc;
  if (!plugin_type(d, pr.type)) {
    log_error("plugin '%s' has no resource type '%s'", d->name, pr.type);
    rc = EXIT_USAGE;
    goto out;
  }
  tch.kind = "deprovision";
  tch.tenant = pr.tenant;
  tch.instance = pr.instance;
  tch.principal = cli->principal;
  if (cli->ticket) {
    rc = open_ticket(s, &tch, 0);
    goto out;
  }
  if (!CH_PLUGIN_HAS(d, deprovision_account) || !d->deprovision_account) {
    log_error("plugin '%s' cannot deprovision accounts: --ticket opens a "
              "ticket for a person to do it",
              d->name);
    rc = EXIT_USAGE;
    goto out;
  }
  ch.principal.type = pr.type;
  ch.principal.id = pr.id;
  ch.dry_run = cli->dry_run;
  snprintf(what, sizeof(what), "deprovision %s", cli->principal);
  rc = instance_deprovision(in, &ch, &res, &err);
  rc = finish(s, in, what, rc, &res, &err, &tch);
out:
  key_parts_release(&pr);
  return rc;
}

/* A result whose output() collects an action's long answer, printed after
   the outcome line (ch_result.output, ABI 1.2). `res` comes first, so the
   callback's pointer is the box. */
struct result_box {
  struct ch_result res;
  struct buf text;
};

static int collect_output(struct ch_result *res, const char *text) {
  struct result_box *box = (struct result_box *)res;

  return buf_puts(&box->text, text ? text : "") ? CH_E_NOMEM : CH_OK;
}

/* Secrets are redacted here too: the answer is the plugin's text. Redaction
   only shrinks it, so a copy of the same size is enough. */
static void print_output(const struct result_box *box) {
  const struct buf *b = &box->text;
  char *clean = malloc(b->len + 1);

  if (!clean) {
    log_error("out of memory printing the action's answer");
    return;
  }
  log_redact(b->p, clean, b->len + 1);
  fputs(clean, stdout);
  if (b->p[b->len - 1] != '\n')
    fputc('\n', stdout);
  free(clean);
}

int cmd_action(struct session *s) {
  struct cli *cli = s->cli;
  struct result_box box = {.res = {.output = collect_output}};
  struct ch_err err = {0};
  struct ch_kv *args = NULL;
  struct instance *in = NULL;
  const struct ch_action_def *ad;
  const struct ch_plugin *d;
  char what[512];
  int rc = target(s, "action");

  if (rc >= 0)
    return rc;
  if (!cli->action) {
    log_error("action needs a name: connhost action --tenant T --instance I "
              "NAME");
    return EXIT_USAGE;
  }
  rc = open_for_write(s, cli->tenants[0], cli->instance, &in);
  if (rc >= 0)
    return rc;
  d = in->plugin->desc;
  ad = plugin_action(d, cli->action);
  if (!d->action || !ad) {
    log_error("plugin '%s' has no action '%s' (see 'connhost plugins')",
              d->name, cli->action);
    return EXIT_USAGE;
  }
  args = split_kv(cli);
  if (!args)
    return EXIT_FAIL;
  rc = EXIT_USAGE;
  for (size_t i = 0; i < cli->nkv; i++) {
    if (!plugin_list_has(ad->args, args[i].key)) {
      log_error("action '%s' has no argument '%s'", ad->name, args[i].key);
      goto out;
    }
  }
  for (const char *const *r = ad->required; r && *r; r++) {
    size_t i;
    for (i = 0; i < cli->nkv && strcmp(args[i].key, *r); i++)
      ;
    if (i == cli->nkv) {
      log_error("action '%s' needs --arg %s=VALUE", ad->name, *r);
      goto out;
    }
  }
  snprintf(what, sizeof(what), "action %s in %s/%s", ad->name, cli->tenants[0],
           cli->instance);
  rc = instance_action(in, ad->name, args, cli->nkv, &box.res, &err);
  rc = report(in, what, rc, &box.res, &err);
  if (rc == EXIT_OK && box.text.len)
    print_output(&box);
out:
  buf_free(&box.text);
  free(args);
  return rc;
}
