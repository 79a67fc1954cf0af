/* SPDX-License-Identifier: MIT */
/* Command-line parsing and the pieces every command shares. */
#ifndef CONNHOST_CLI_H
#define CONNHOST_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"
#include "instance.h"
#include "loader.h"
#include "runstate.h"

/* Exit codes: runstate.h, the one place they are decided. */

enum command {
  CMD_SYNC = 0,
  CMD_CHECK,
  CMD_PLUGINS,
  CMD_GRANT,
  CMD_REVOKE,
  CMD_PROVISION,
  CMD_ACTION,
  CMD_SERVE,
  CMD_DEPROVISION,
  CMD_TICKETS
};

struct cli {
  enum command cmd;
  const char *config_path;
  const char *plugin_dir;
  const char *output;
  const char *format;
  int workers;
  long max_pages;
  int allow_partial;
  int accept_shrink; /* skip the safety thresholds (safety.h) */
  int dry_run;
  int quiet;
  const char *listen;     /* serve --listen */
  const char *replica_id; /* serve --replica-id */
  const char **tenants;   /* --tenant filters */
  size_t ntenants;
  /* writes */
  const char *entitlement;
  const char *principal;
  const char *tenant;
  const char *instance;
  const char *email;
  const char *display_name;
  const char *given_name;
  const char *family_name;
  const char *action;
  const char **kv; /* --attr / --arg "k=v" */
  size_t nkv;
  int ticket;            /* --ticket: open a ticket instead of the write */
  const char *requester; /* --requester, or NULL ($USER) */
  int open_only;         /* tickets --open */
};

/* What the commands share after setup: config, plugins, instances. */
struct session {
  struct cli *cli;
  struct config *config;
  struct registry registry;
  int registry_ready;
  struct instance **insts;
  size_t ninsts;
};

/* Parse argv. Returns -1 to go on, or an exit code (help, version, usage
   error). */
int cli_parse(struct cli *cli, int argc, char **argv);
void cli_release(struct cli *cli);

/* Whether --tenant (none given: every tenant) selects `tenant`. */
int cli_tenant_selected(const struct cli *cli, const char *tenant);

/* The plugin directory: --plugin-dir, config plugin_dir, installed. */
const char *session_plugin_dir(const struct session *s);

/*
 * Load the config and the plugin registry. With `select`, also bind every
 * enabled instance that passes the --tenant filter (plugins loaded,
 * options resolved) without opening them. Errors are printed; returns an
 * exit code or -1 to go on.
 */
int session_setup(struct session *s, struct cli *cli, int select);
/* Bind one named instance (for writes), enabled or not. */
int session_bind(struct session *s, const char *tenant, const char *instance,
                 struct instance **out);
void session_release(struct session *s);

int cmd_sync(struct session *s);
int cmd_check(struct session *s);
int cmd_plugins(struct session *s);
int cmd_grant_revoke(struct session *s);
int cmd_provision(struct session *s);
int cmd_action(struct session *s);
int cmd_serve(struct session *s);
int cmd_deprovision(struct session *s);
int cmd_tickets(struct session *s);

/* The read commands (cmd_read.c): 1 when argv names one; they parse their
   own options and need no config or plugins. */
int cmd_read_wanted(int argc, char **argv);
int cmd_read_main(int argc, char **argv);
/* The command word of argv (options and their values skipped, so it may
   follow `-c FILE`), or NULL. Borrowed from argv. */
const char *cmd_word(int argc, char **argv);
/* A usage error: "connhost: MESSAGE" and "Try 'HELP'." on stderr;
   returns EXIT_USAGE. */
int cli_usage_error(const char *help, const char *fmt, ...) CH_PRINTF(2, 3);
/* The usage error of an unknown option `arg` ("--x" or "-x"), naming the
   nearest of the `n` long options at `opts` (`stride` bytes apart, each
   starting with its name, as util_closest takes them) when one is close. */
int cli_unknown_option(const char *help, const char *arg, const void *opts,
                       size_t n, size_t stride);
/* The store a read command (or `explore`) opens: `db` (--db), else the
   `store:` of the config at `config_path` (NULL: ./connhost.yaml), in
   *out (malloc'd). -1 to go on, else the exit code, with the reason logged
   (a config that does not load: EXIT_USAGE; `store: none`: EXIT_FAIL). */
int cmd_read_db_path(const char *db, const char *config_path, char **out);
/*
 * One read command's answer (`name`: "runs", "access", ...) from the store
 * at `db`, as the CLI's `--format json` (or "csv") writes it, with each
 * section's rows paged (skip `offset`, at most `limit`; -1: all). What the
 * explorer's API serves. A paged JSON answer ends with "next_offset", per
 * section the offset of its first row left out (null: none was); `*next`
 * (NULL: not wanted) gets that offset when any section was cut, else -1.
 * CH_OK, or an error in `err` (CH_E_NOTFOUND: no such command, run, WHO or
 * WHAT).
 */
struct store_params;
int cmd_read_render(const char *db, const char *name,
                    const struct store_params *p, const char *format,
                    long offset, long limit, long *next, FILE *f,
                    struct ch_err *err);

/*
 * Whether the HTTP API's query arguments `args` (`n` names) apply to read
 * command `name`, by the table the CLI's options are checked against:
 * run, tenant, format, type, search, entitlement, principal, from and to
 * as the options of those names, who and what as WHO and WHAT, limit and
 * offset everywhere. CH_OK, or CH_E_INVALID with a message naming the
 * first that does not and the endpoints (`prefix` then the command) it
 * applies to.
 */
int cmd_read_check_args(const char *name, const char *const *args, size_t n,
                        const char *prefix, struct ch_err *err);

/* main() in one call: parse, set up logging and HTTP, dispatch. */
int cli_main(int argc, char **argv);

#endif
