/* SPDX-License-Identifier: MIT */
/* jira_cloud plugin: grant/revoke, account creation, action dispatch. */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "jc.h"

/* The host gates writes too; this is the plugin's own guard. A dry run
   sends nothing, so it is allowed without provisioning: true. */
static int jc_writable(struct jc_inst *in, struct ch_err *err) {
  if (in->provisioning || in->host->dry_run(in->hc))
    return 1;
  ch_err_set(err, CH_E_CONFIG,
             "provisioning is not enabled for this "
             "instance (set provisioning: true)");
  return 0;
}

/* Whether the lowercased error text has any of `needles`. */
static int jc_says(const char *text, const char *const *needles) {
  if (!text)
    return 0;
  for (; *needles; needles++)
    if (strstr(text, *needles))
      return 1;
  return 0;
}

/* "Already so" answers, as Jira words them (the fake copies the wording):
   decided from the write's own answer so that a dry run, which sends
   nothing, needs no prior read. */
static const char *const jc_already_member[] = {"already a member", NULL};
static const char *const jc_not_member[] = {"not a member",
                                            "is not in the group", NULL};
static const char *const jc_already_actor[] = {
    "already a member", "already an actor", "already exists", NULL};
static const char *const jc_not_actor[] = {
    "not a member",    "is not an actor",         "not an actor",
    "not in the role", "not in the project role", NULL};

/* One message is <pre><principal><mid><target>, per outcome. */
struct jc_words {
  const char *pre, *mid;
};

struct jc_write {
  const char *method;
  const char *what;
  const char *const *already; /* error wordings meaning "nothing to do" */
  struct jc_words done, same, dry;
};

static void jc_say(struct ch_result *res, const struct jc_words *w,
                   const char *who, const char *target) {
  snprintf(res->message, sizeof(res->message), "%s%s%s%s", w->pre, who, w->mid,
           target);
}

/* Send one write and turn its answer into a ch_result. */
static int jc_send_write(struct jc_inst *in, const struct jc_write *w,
                         const char *url, json_object *body, const char *who,
                         const char *target, struct ch_result *res,
                         struct ch_err *err) {
  json_object *reply = NULL;
  long status;
  char *text = NULL;
  int rc;

  /* Re-sending any of these writes is harmless (it answers "already"),
     so a lost response may be retried. */
  rc = jc_request(in, w->method, url, body, CH_HTTP_RETRY_SAFE, w->what,
                  &status, &reply, err);
  if (rc == CH_OK && status == 0) {
    res->outcome = CH_DRY_RUN;
    jc_say(res, &w->dry, who, target);
    goto out;
  }
  if (rc == CH_OK) {
    res->outcome = CH_DONE;
    jc_say(res, &w->done, who, target);
    goto out;
  }
  if ((status == 400 || status == 404 || status == 409) && reply &&
      (text = jc_error_text(reply)) && jc_says(text, w->already)) {
    rc = CH_OK;
    res->outcome = CH_ALREADY;
    jc_say(res, &w->same, who, target);
  }
out:
  free(text);
  json_object_put(reply);
  return rc;
}

static int jc_group_change(struct jc_inst *in, const struct ch_change *ch,
                           int add, struct ch_result *res, struct ch_err *err) {
  static const struct jc_write w_add = {
      "POST",
      "add group member",
      jc_already_member,
      {"added user ", " to group "},
      {"user ", " is already a member of group "},
      {"would add user ", " to group "}};
  static const struct jc_write w_del = {"DELETE",
                                        "remove group member",
                                        jc_not_member,
                                        {"removed user ", " from group "},
                                        {"user ", " is not a member of group "},
                                        {"would remove user ", " from group "}};
  struct pj_buf b = {0};
  json_object *body = NULL;
  int rc;

  if (strcmp(ch->principal.type, "user"))
    return ch_err_set(err, CH_E_INVALID, "group#member takes a user, not a %s",
                      ch->principal.type);
  /* A "name:" key is a group without a groupId: the spec's groupname. */
  if (jc_url(in, &b, "/rest/api/3/group/user") ||
      (jc_group_name(ch->resource.id)
           ? jc_param(in, &b, "groupname", jc_group_name(ch->resource.id))
           : jc_param(in, &b, "groupId", ch->resource.id)) ||
      (!add && jc_param(in, &b, "accountId", ch->principal.id))) {
    rc = pj_nomem(err);
    goto out;
  }
  if (add) {
    if (!(body = json_object_new_object())) {
      rc = pj_nomem(err);
      goto out;
    }
    json_object_object_add(body, "accountId",
                           json_object_new_string(ch->principal.id));
  }
  rc = jc_send_write(in, add ? &w_add : &w_del, b.s, body, ch->principal.id,
                     ch->resource.id, res, err);
out:
  json_object_put(body);
  pj_buf_free(&b);
  return rc;
}

static int jc_role_change(struct jc_inst *in, const struct ch_change *ch,
                          int add, struct ch_result *res, struct ch_err *err) {
  static const struct jc_write w_add = {"POST",
                                        "add role actor",
                                        jc_already_actor,
                                        {"added ", " to project role "},
                                        {"", " already holds project role "},
                                        {"would add ", " to project role "}};
  static const struct jc_write w_del = {
      "DELETE",
      "remove role actor",
      jc_not_actor,
      {"removed ", " from project role "},
      {"", " does not hold project role "},
      {"would remove ", " from project role "}};
  const char *colon = strchr(ch->resource.id, ':');
  int is_user = strcmp(ch->principal.type, "user") == 0;
  /* Groups go by id (names change; ActorsMap and the DELETE take
     "groupId"), a group without one by name ("group" in both). */
  const char *gname = is_user ? NULL : jc_group_name(ch->principal.id);
  const char *field = is_user ? "user" : gname ? "group" : "groupId";
  const char *value = gname ? gname : ch->principal.id;
  struct pj_buf b = {0}, who = {0};
  json_object *body = NULL, *ids;
  int rc;

  if (!is_user && strcmp(ch->principal.type, "group"))
    return ch_err_set(err, CH_E_INVALID,
                      "project_role#assigned takes a user or a group, not a %s",
                      ch->principal.type);
  if (!colon || colon == ch->resource.id || !colon[1])
    return ch_err_set(err, CH_E_INVALID,
                      "project role id \"%s\" is not <projectId>:<roleId>",
                      ch->resource.id);
  if (jc_url(in, &b, "/rest/api/3/project/") ||
      pj_buf_addf(&b, "%.*s", (int)(colon - ch->resource.id),
                  ch->resource.id) ||
      pj_buf_add(&b, "/role/") || pj_buf_add_enc(&b, in->host, colon + 1) ||
      pj_buf_addf(&who, "%s %s", ch->principal.type, ch->principal.id)) {
    rc = pj_nomem(err);
    goto out;
  }
  /* The project id went in raw above: make sure it is only digits. */
  for (const char *p = ch->resource.id; p < colon; p++)
    if (*p < '0' || *p > '9') {
      rc = ch_err_set(err, CH_E_INVALID,
                      "project role id \"%s\" has a non-numeric project id",
                      ch->resource.id);
      goto out;
    }
  if (!add && jc_param(in, &b, field, value)) {
    rc = pj_nomem(err);
    goto out;
  }
  if (add) {
    if (!(body = json_object_new_object()) ||
        !(ids = json_object_new_array())) {
      rc = pj_nomem(err);
      goto out;
    }
    json_object_array_add(ids, json_object_new_string(value));
    json_object_object_add(body, field, ids);
  }
  rc = jc_send_write(in, add ? &w_add : &w_del, b.s, body, who.s,
                     ch->resource.id, res, err);
out:
  json_object_put(body);
  pj_buf_free(&b);
  pj_buf_free(&who);
  return rc;
}

static int jc_change(struct jc_inst *in, const struct ch_change *ch, int add,
                     struct ch_result *res, struct ch_err *err) {
  if (!jc_writable(in, err))
    return err->code;
  if ((strcmp(ch->resource.type, "group") == 0 &&
       jc_group_name(ch->resource.id) && !*jc_group_name(ch->resource.id)) ||
      (strcmp(ch->principal.type, "group") == 0 &&
       jc_group_name(ch->principal.id) && !*jc_group_name(ch->principal.id)))
    return ch_err_set(err, CH_E_INVALID,
                      "group id \"" JC_GROUP_BY_NAME "\" names no group "
                      "(a name must follow)");
  if (strcmp(ch->resource.type, "group") == 0 &&
      strcmp(ch->slug, "member") == 0)
    return jc_group_change(in, ch, add, res, err);
  if (strcmp(ch->resource.type, "project_role") == 0 &&
      strcmp(ch->slug, "assigned") == 0)
    return jc_role_change(in, ch, add, res, err);
  if (strcmp(ch->resource.type, "project") == 0)
    return ch_err_set(err, CH_E_UNSUPPORTED,
                      "project#%s cannot be %s: it follows from the project "
                      "lead setting and the project roles (grant "
                      "project_role#assigned instead)",
                      ch->slug, add ? "granted" : "revoked");
  return ch_err_set(err, CH_E_UNSUPPORTED, "%s#%s cannot be %s",
                    ch->resource.type, ch->slug, add ? "granted" : "revoked");
}

int jc_grant(void *inst, const struct ch_change *change,
             struct ch_result *result, struct ch_err *err) {
  return jc_change(inst, change, 1, result, err);
}

int jc_revoke(void *inst, const struct ch_change *change,
              struct ch_result *result, struct ch_err *err) {
  return jc_change(inst, change, 0, result, err);
}

/* ---- accounts ------------------------------------------------------------ */

int jc_provision(void *inst, const struct ch_account *acct,
                 struct ch_result *res, struct ch_err *err) {
  struct jc_inst *in = inst;
  struct pj_buf b = {0};
  json_object *body = NULL, *prods = NULL, *user = NULL;
  const char *products = NULL;
  long status;
  int rc;

  if (!jc_writable(in, err))
    return err->code;
  if (!acct->email || !strchr(acct->email, '@'))
    return ch_err_set(err, CH_E_INVALID, "an email address is required");
  for (size_t i = 0; i < acct->nattrs; i++) {
    if (strcmp(acct->attrs[i].key, "products") == 0)
      products = acct->attrs[i].value;
    else
      return ch_err_set(err, CH_E_INVALID,
                        "unknown attribute %s (jira_cloud takes products)",
                        acct->attrs[i].key);
  }
  if (!(body = json_object_new_object()) ||
      !(prods = json_object_new_array())) {
    rc = pj_nomem(err);
    goto out;
  }
  /* products=jira-software,jira-core → ["jira-software","jira-core"]; no
     attribute means no product access (Jira's own default for []). */
  if ((rc = products ? jc_csv_array(products, prods, err) : CH_OK))
    goto out;
  json_object_object_add(body, "emailAddress",
                         json_object_new_string(acct->email));
  json_object_object_add(body, "products", prods);
  prods = NULL;
  if (jc_url(in, &b, "/rest/api/3/user")) {
    rc = pj_nomem(err);
    goto out;
  }
  /* Creating an existing account with Jira access answers 201 again, so a
     retry after a lost answer is safe. */
  rc = jc_request(in, "POST", b.s, body, CH_HTTP_RETRY_SAFE, "create user",
                  &status, &user, err);
  if (rc)
    goto out;
  if (status == 0) {
    res->outcome = CH_DRY_RUN;
    snprintf(res->message, sizeof(res->message), "would create %s",
             acct->email);
    goto out;
  }
  if (!pj_str(user, "accountId")) {
    rc = ch_err_set(err, CH_E_PROTOCOL,
                    "create user: no accountId in the answer");
    goto out;
  }
  res->outcome = CH_DONE;
  snprintf(res->key, sizeof(res->key), "%s", pj_str(user, "accountId"));
  snprintf(res->message, sizeof(res->message), "account %s for %s",
           pj_str(user, "accountId"), acct->email);
out:
  json_object_put(prods);
  json_object_put(body);
  json_object_put(user);
  pj_buf_free(&b);
  return rc;
}

/* Deprovisioning is manual work: the account's access is removed in Jira's
   user management (or the organization's admin), not by this token's
   writes, so the plugin sends nothing and says what a person must do
   (ABI 1.3: the host opens a ticket for it). */
int jc_deprovision(void *inst, const struct ch_change *ch,
                   struct ch_result *res, struct ch_err *err) {
  struct jc_inst *in = inst;

  if (!jc_writable(in, err))
    return err->code;
  if (!ch->principal.type || strcmp(ch->principal.type, "user") != 0 ||
      !ch->principal.id || !ch->principal.id[0])
    return ch_err_set(err, CH_E_INVALID,
                      "only a user account can be deprovisioned, not a '%s'",
                      ch->principal.type ? ch->principal.type : "?");
  res->outcome = CH_MANUAL;
  snprintf(res->message, sizeof(res->message),
           "Jira account deprovisioning must be done directly in Jira: "
           "remove account %s from the site (User management)",
           ch->principal.id);
  return CH_OK;
}

int jc_action(void *inst, const char *name, const struct ch_kv *args,
              size_t nargs, struct ch_result *result, struct ch_err *err) {
  struct jc_inst *in = inst;

  if (!jc_writable(in, err))
    return err->code;
  /* Every action of this plugin is a ticket action. */
  return jc_ticket_action(in, name, args, nargs, result, err);
}
