/* SPDX-License-Identifier: MIT */
/* Command-line parsing, help, and the setup every command shares. */
#include "autoconfig.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "explore.h"
#include "http.h"
#include "log.h"
#include "plugindir.h"
#include "stop.h"
#include "util.h"

#define STR_(x) #x
#define STR(x) STR_(x)
/* The engine's default, from its own constants. */
#define WORKERS_DEFAULT                                                        \
  STR(ENGINE_WORKERS_PER_CORE)                                                 \
  " per\n                         core, at most " STR(ENGINE_WORKERS_MAX)

static const char usage_text[] =
    "usage: connhost [-c FILE] [COMMAND] [OPTIONS]\n"
    "\n"
    "Sync identities and access from SaaS connectors into one entitlement\n"
    "graph, and change access on request.\n"
    "\n"
    "Commands:\n"
    "  sync        sync every enabled instance and write the graph (default)\n"
    "  check       validate the config, load the plugins, test each enabled\n"
    "              instance's credentials\n"
    "  plugins     list the plugins in the plugin directory\n"
    "  grant       grant an entitlement:  --entitlement KEY --principal KEY\n"
    "  revoke      revoke an entitlement: --entitlement KEY --principal KEY\n"
    "  provision   create an account: --tenant T --instance I --email E\n"
    "  deprovision remove an account: --principal KEY (work the plugin\n"
    "              cannot do itself opens a ticket: the tenant's tickets:)\n"
    "  action      run a plugin action: --tenant T --instance I NAME\n"
    "              [--arg KEY=VALUE]...\n"
    "  serve       run every enabled instance on its schedule; serve\n"
    "              /healthz, /readyz, /metrics and POST /api/v1/sync\n"
    "              and the access explorer (docs/explorer.md)\n"
    "  tickets     list the tickets opened for manual work: [--open]\n"
    "              [--format text|json]; 'tickets refresh' reads each open\n"
    "              one back\n"
    "  explore     serve the access explorer over a store: --db PATH (or\n"
    "              the config's store:) [--listen ADDR:PORT] (default\n"
    "              " EXPLORE_DEFAULT_LISTEN ", loopback only)\n"
    "  runs, resources, grants, access, who-has, explain, diff, stats,\n"
    "  export, report\n"
    "              read the snapshot store ('connhost runs --help')\n"
    "\n"
    "Options:\n"
    "  -c, --config FILE      config file (default: ./connhost.yaml)\n"
    "  -o, --output FILE      where the graph goes ('-' = stdout; default:\n"
    "                         the config's output, else ./graph.json)\n"
    "      --format FMT       json or jsonl (default: from the output's\n"
    "                         extension, .jsonl or .json, else json);\n"
    "                         tickets: text (default) or json\n"
    "  -w, --workers N        worker threads (default: config, "
    "else " WORKERS_DEFAULT ")\n"
    "      --tenant NAME      only this tenant (repeatable; sync, serve,\n"
    "                         check, tickets); for provision and action,\n"
    "                         the tenant to act in\n"
    "      --instance NAME    the instance to act in (provision, action)\n"
    "      --plugin-dir DIR   plugin directory (default: config plugin_dir,\n"
    "                         else " PLUGINDIR ")\n"
    "      --max-pages N      pages per list chain before an instance fails\n"
    "                         (default: config, else 100000)\n"
    "      --allow-partial    write the graph even when instances failed\n"
    "      --accept-shrink    replace the last good data even when an\n"
    "                         instance shrank past its max_shrink\n"
    "      --dry-run          grant, revoke, provision, deprovision, action:\n"
    "                         print the requests the write (or its ticket)\n"
    "                         would send; send none, record none\n"
    "      --ticket           grant, revoke, provision, deprovision: open a\n"
    "                         ticket for the change in the tenant's tickets:\n"
    "                         instance instead of making it\n"
    "      --requester NAME   who asks for the change, on its ticket\n"
    "                         (default: $USER)\n"
    "      --open             tickets: only those not done yet\n"
    "      --entitlement KEY  tenant/instance/type/id#slug (grant, revoke)\n"
    "      --principal KEY    tenant/instance/type/id (grant, revoke,\n"
    "                         deprovision)\n"
    "      --email ADDR       provision: the account's email\n"
    "      --display-name S   provision: display name\n"
    "      --given-name S     provision: given name\n"
    "      --family-name S    provision: family name\n"
    "      --attr KEY=VALUE   provision: a plugin-specific attribute "
    "(repeatable)\n"
    "      --arg KEY=VALUE    action: an argument (repeatable)\n"
    "      --name NAME        action: the action's name (or give it after\n"
    "                         'action')\n"
    "      --listen ADDR      serve: listen on ADDR, HOST:PORT (default:\n"
    "                         config serve.listen, else 127.0.0.1:9464)\n"
    "      --replica-id ID    serve: this replica's id in a shared PostgreSQL\n"
    "                         store (default: serve.replica_id, else\n"
    "                         HOSTNAME-PID; docs/scale-out.md)\n"
    "      --log-level LVL    error, warn, info (default), debug\n"
    "      --log-format FMT   text (default) or json\n"
    "  -q, --quiet            errors only; no progress line or summary\n"
    "  -V, --version          print the version and plugin ABI\n"
    "  -h, --help             this help\n";

/* After the exit status table (run_exit_table). */
static const char usage_tail[] =
    "serve: SIGHUP reloads the config, SIGTERM/SIGINT let running syncs\n"
    "finish within serve.shutdown_grace.\n"
    "Writes need 'provisioning: true' on the instance. An option that does\n"
    "not apply to the command is a usage error.\n";

enum {
  OPT_FORMAT = 256,
  OPT_TENANT,
  OPT_INSTANCE,
  OPT_PLUGIN_DIR,
  OPT_MAX_PAGES,
  OPT_ALLOW_PARTIAL,
  OPT_ACCEPT_SHRINK,
  OPT_DRY_RUN,
  OPT_ENTITLEMENT,
  OPT_PRINCIPAL,
  OPT_EMAIL,
  OPT_DISPLAY_NAME,
  OPT_GIVEN_NAME,
  OPT_FAMILY_NAME,
  OPT_ATTR,
  OPT_ARG,
  OPT_NAME,
  OPT_LOG_LEVEL,
  OPT_LOG_FORMAT,
  OPT_LISTEN,
  OPT_TICKET,
  OPT_REQUESTER,
  OPT_OPEN,
  OPT_REPLICA_ID
};

/* Which commands an option applies to; any other use is a usage error. */
#define C(x) (1u << (x))
#define C_ALL 0xffffu
#define C_RUNS (C(CMD_SYNC) | C(CMD_SERVE))
#define C_CHANGES                                                              \
  (C(CMD_GRANT) | C(CMD_REVOKE) | C(CMD_PROVISION) | C(CMD_DEPROVISION))
#define C_WRITES (C_CHANGES | C(CMD_ACTION))

struct opt_def {
  struct option lo;
  unsigned cmds;
};

static const struct opt_def opt_defs[] = {
    {{"config", required_argument, NULL, 'c'}, C_ALL},
    {{"output", required_argument, NULL, 'o'}, C_RUNS},
    {{"format", required_argument, NULL, OPT_FORMAT}, C_RUNS | C(CMD_TICKETS)},
    {{"workers", required_argument, NULL, 'w'}, C_RUNS},
    {{"tenant", required_argument, NULL, OPT_TENANT},
     C_RUNS | C(CMD_CHECK) | C(CMD_PROVISION) | C(CMD_ACTION) | C(CMD_TICKETS)},
    {{"instance", required_argument, NULL, OPT_INSTANCE},
     C(CMD_PROVISION) | C(CMD_ACTION)},
    {{"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR}, C_ALL},
    {{"max-pages", required_argument, NULL, OPT_MAX_PAGES}, C_RUNS},
    {{"allow-partial", no_argument, NULL, OPT_ALLOW_PARTIAL}, C(CMD_SYNC)},
    {{"accept-shrink", no_argument, NULL, OPT_ACCEPT_SHRINK}, C(CMD_SYNC)},
    {{"dry-run", no_argument, NULL, OPT_DRY_RUN}, C_WRITES},
    {{"entitlement", required_argument, NULL, OPT_ENTITLEMENT},
     C(CMD_GRANT) | C(CMD_REVOKE)},
    {{"principal", required_argument, NULL, OPT_PRINCIPAL},
     C(CMD_GRANT) | C(CMD_REVOKE) | C(CMD_DEPROVISION)},
    {{"ticket", no_argument, NULL, OPT_TICKET}, C_CHANGES},
    {{"requester", required_argument, NULL, OPT_REQUESTER}, C_CHANGES},
    {{"open", no_argument, NULL, OPT_OPEN}, C(CMD_TICKETS)},
    {{"email", required_argument, NULL, OPT_EMAIL}, C(CMD_PROVISION)},
    {{"display-name", required_argument, NULL, OPT_DISPLAY_NAME},
     C(CMD_PROVISION)},
    {{"given-name", required_argument, NULL, OPT_GIVEN_NAME}, C(CMD_PROVISION)},
    {{"family-name", required_argument, NULL, OPT_FAMILY_NAME},
     C(CMD_PROVISION)},
    {{"attr", required_argument, NULL, OPT_ATTR}, C(CMD_PROVISION)},
    {{"arg", required_argument, NULL, OPT_ARG}, C(CMD_ACTION)},
    {{"name", required_argument, NULL, OPT_NAME}, C(CMD_ACTION)},
    {{"log-level", required_argument, NULL, OPT_LOG_LEVEL}, C_ALL},
    {{"log-format", required_argument, NULL, OPT_LOG_FORMAT}, C_ALL},
    {{"listen", required_argument, NULL, OPT_LISTEN}, C(CMD_SERVE)},
    {{"replica-id", required_argument, NULL, OPT_REPLICA_ID}, C(CMD_SERVE)},
    {{"quiet", no_argument, NULL, 'q'}, C_ALL},
    {{"version", no_argument, NULL, 'V'}, C_ALL},
    {{"help", no_argument, NULL, 'h'}, C_ALL}};

#define NOPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

static const char *const command_names[] = {
    "sync",      "check",  "plugins", "grant",       "revoke",
    "provision", "action", "serve",   "deprovision", "tickets"};
#define NCOMMANDS (sizeof(command_names) / sizeof(command_names[0]))

int cli_usage_error(const char *help, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "connhost: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '%s'.\n", help);
  return EXIT_USAGE;
}

#define usage_error(...) cli_usage_error("connhost --help", __VA_ARGS__)

static int push_str(const char ***list, size_t *n, const char *s) {
  const char **grown = realloc(*list, (*n + 1) * sizeof(**list));
  if (!grown)
    return -1;
  *list = grown;
  (*list)[(*n)++] = s;
  return 0;
}

static int parse_long(const char *s, long min, long max, long *out) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < min || v > max)
    return -1;
  *out = v;
  return 0;
}

static enum ch_log_level opt_level = CH_LOG_INFO;
static enum log_format opt_log_format = LOG_TEXT;

int cli_unknown_option(const char *help, const char *arg, const void *opts,
                       size_t n, size_t stride) {
  const char *name = arg;
  const char *near;
  size_t len;
  char word[64];

  while (*name == '-')
    name++;
  len = strcspn(name, "=");
  if (name == arg || len >= sizeof(word))
    return cli_usage_error(help, "unknown option '%s'", arg);
  memcpy(word, name, len);
  word[len] = '\0';
  near = util_closest(word, opts, n, stride);
  if (near)
    return cli_usage_error(help, "unknown option '%s'; did you mean '--%s'?",
                           arg, near);
  return cli_usage_error(help, "unknown option '%s'", arg);
}

static int unknown_option(const char *arg) {
  return cli_unknown_option("connhost --help", arg, opt_defs, NOPTS,
                            sizeof(opt_defs[0]));
}

/* The names of the commands in `mask`, for "it applies to: ...". */
static void command_list(unsigned mask, char *buf, size_t n) {
  size_t used = 0;

  buf[0] = '\0';
  for (size_t i = 0; i < NCOMMANDS && used < n; i++) {
    if (mask & C(i)) {
      int w = snprintf(buf + used, n - used, "%s%s", used ? ", " : "",
                       command_names[i]);
      if (w < 0)
        break;
      used += (size_t)w;
    }
  }
}

/* Every option given must apply to the command (DESIGN §6: no option is
   silently ignored). */
static int check_applies(const struct cli *cli, const unsigned char *seen) {
  for (size_t i = 0; i < NOPTS; i++) {
    char list[128];
    if (!seen[i] || (opt_defs[i].cmds & C(cli->cmd)))
      continue;
    command_list(opt_defs[i].cmds, list, sizeof(list));
    if (opt_defs[i].lo.val == OPT_DRY_RUN && cli->cmd == CMD_SYNC)
      return usage_error("--dry-run does not apply to 'sync' (a sync only "
                         "reads; 'connhost check' tests the credentials "
                         "without one): it applies to %s",
                         list);
    return usage_error("--%s does not apply to '%s': it applies to %s",
                       opt_defs[i].lo.name, command_names[cli->cmd], list);
  }
  return -1;
}

static int opt_index(int val) {
  for (size_t i = 0; i < NOPTS; i++) {
    if (opt_defs[i].lo.val == val)
      return (int)i;
  }
  return -1;
}

int cli_parse(struct cli *cli, int argc, char **argv) {
  struct option long_opts[NOPTS + 1];
  unsigned char seen[NOPTS] = {0};
  int c;
  long v;

  memset(cli, 0, sizeof(*cli));
  memset(long_opts, 0, sizeof(long_opts));
  for (size_t i = 0; i < NOPTS; i++)
    long_opts[i] = opt_defs[i].lo;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, ":c:o:w:qVh", long_opts, NULL)) != -1) {
    int idx = opt_index(c);
    if (idx >= 0)
      seen[idx] = 1;
    switch (c) {
    case 'c':
      cli->config_path = optarg;
      break;
    case 'o':
      cli->output = optarg;
      break;
    case OPT_FORMAT: /* checked once the command is known */
      cli->format = optarg;
      break;
    case OPT_TICKET:
      cli->ticket = 1;
      break;
    case OPT_REQUESTER:
      cli->requester = optarg;
      break;
    case OPT_OPEN:
      cli->open_only = 1;
      break;
    case 'w':
      if (parse_long(optarg, 1, 256, &v))
        return usage_error("--workers must be 1..256, not '%s'", optarg);
      cli->workers = (int)v;
      break;
    case OPT_TENANT:
      if (push_str(&cli->tenants, &cli->ntenants, optarg))
        return EXIT_FAIL;
      break;
    case OPT_INSTANCE:
      cli->instance = optarg;
      break;
    case OPT_PLUGIN_DIR:
      cli->plugin_dir = optarg;
      break;
    case OPT_MAX_PAGES:
      if (parse_long(optarg, 1, 1000000000L, &v))
        return usage_error("--max-pages must be a positive number, not '%s'",
                           optarg);
      cli->max_pages = v;
      break;
    case OPT_ALLOW_PARTIAL:
      cli->allow_partial = 1;
      break;
    case OPT_ACCEPT_SHRINK:
      cli->accept_shrink = 1;
      break;
    case OPT_DRY_RUN:
      cli->dry_run = 1;
      break;
    case OPT_ENTITLEMENT:
      cli->entitlement = optarg;
      break;
    case OPT_PRINCIPAL:
      cli->principal = optarg;
      break;
    case OPT_EMAIL:
      cli->email = optarg;
      break;
    case OPT_DISPLAY_NAME:
      cli->display_name = optarg;
      break;
    case OPT_GIVEN_NAME:
      cli->given_name = optarg;
      break;
    case OPT_FAMILY_NAME:
      cli->family_name = optarg;
      break;
    case OPT_ATTR:
    case OPT_ARG:
      if (!strchr(optarg, '=') || optarg[0] == '=')
        return usage_error("expected KEY=VALUE, got '%s'", optarg);
      if (push_str(&cli->kv, &cli->nkv, optarg))
        return EXIT_FAIL;
      break;
    case OPT_NAME:
      cli->action = optarg;
      break;
    case OPT_LOG_LEVEL:
      if (log_parse_level(optarg, &opt_level))
        return usage_error("--log-level must be error, warn, info or debug, "
                           "not '%s'",
                           optarg);
      break;
    case OPT_LOG_FORMAT:
      if (strcmp(optarg, "text") == 0)
        opt_log_format = LOG_TEXT;
      else if (strcmp(optarg, "json") == 0)
        opt_log_format = LOG_JSON;
      else
        return usage_error("--log-format must be text or json, not '%s'",
                           optarg);
      break;
    case OPT_LISTEN:
      cli->listen = optarg;
      break;
    case OPT_REPLICA_ID:
      cli->replica_id = optarg;
      break;
    case 'q':
      cli->quiet = 1;
      break;
    case 'V':
      printf("connhost %s (plugin ABI %u)\n", PACKAGE_VERSION, CH_PLUGIN_ABI);
      return EXIT_OK;
    case 'h':
      printf("%s\nExit status:\n%s%s", usage_text, run_exit_table, usage_tail);
      return EXIT_OK;
    case ':':
      return usage_error("option '%s' needs a value", argv[optind - 1]);
    default:
      return unknown_option(argv[optind - 1]);
    }
  }

  if (optind < argc) {
    size_t i;
    for (i = 0; i < NCOMMANDS; i++) {
      if (strcmp(argv[optind], command_names[i]) == 0)
        break;
    }
    if (i == NCOMMANDS) {
      const char *near = util_closest(argv[optind], command_names, NCOMMANDS,
                                      sizeof(command_names[0]));
      if (near)
        return usage_error("unknown command '%s'; did you mean '%s'?",
                           argv[optind], near);
      return usage_error("unknown command '%s'", argv[optind]);
    }
    cli->cmd = (enum command)i;
    optind++;
  }
  if (cli->cmd == CMD_ACTION && optind < argc && !cli->action)
    cli->action = argv[optind++];
  if (cli->cmd == CMD_TICKETS && optind < argc) {
    if (strcmp(argv[optind], "refresh") != 0)
      return usage_error("unknown 'tickets' command '%s' (there is "
                         "'tickets refresh')",
                         argv[optind]);
    cli->action = argv[optind++];
  }
  if (cli->format && cli->cmd == CMD_TICKETS && strcmp(cli->format, "text") &&
      strcmp(cli->format, "json"))
    return usage_error("--format must be text or json for 'tickets', not '%s'",
                       cli->format);
  if (cli->format && cli->cmd != CMD_TICKETS && strcmp(cli->format, "json") &&
      strcmp(cli->format, "jsonl"))
    return usage_error("--format must be json or jsonl, not '%s'", cli->format);
  if (optind < argc)
    return usage_error("unexpected argument '%s'", argv[optind]);
  return check_applies(cli, seen);
}

void cli_release(struct cli *cli) {
  free(cli->tenants);
  free(cli->kv);
}

const char *session_plugin_dir(const struct session *s) {
  if (s->cli->plugin_dir)
    return s->cli->plugin_dir;
  if (s->config && s->config->plugin_dir)
    return s->config->plugin_dir;
  return PLUGINDIR;
}

int cli_tenant_selected(const struct cli *cli, const char *tenant) {
  if (!cli->ntenants)
    return 1;
  for (size_t i = 0; i < cli->ntenants; i++) {
    if (strcmp(cli->tenants[i], tenant) == 0)
      return 1;
  }
  return 0;
}

static int add_instance(struct session *s, const struct config_instance *ci,
                        struct instance **out) {
  struct instance *in = NULL;
  struct instance **grown;
  const struct plugin *p = NULL;
  struct ch_err err = {0};

  if (registry_load(&s->registry, ci->plugin, &p, &err) != CH_OK) {
    log_error("%s:%u:%u: tenant '%s' instance '%s': %s", ci->node->file,
              ci->node->line, ci->node->col, ci->tenant, ci->name, err.msg);
    return EXIT_USAGE;
  }
  in = calloc(1, sizeof(*in));
  grown = realloc(s->insts, (s->ninsts + 1) * sizeof(*s->insts));
  if (!in || !grown) {
    free(in);
    if (grown)
      s->insts = grown;
    log_error("out of memory");
    return EXIT_FAIL;
  }
  s->insts = grown;
  s->insts[s->ninsts++] = in;
  if (instance_prepare(in, s->config, ci, p, &err) != CH_OK) {
    log_error("%s", err.msg);
    return EXIT_USAGE;
  }
  if (out)
    *out = in;
  return -1;
}

int session_setup(struct session *s, struct cli *cli, int select) {
  struct ch_err err = {0};
  const char *path = cli->config_path;
  int rc;

  memset(s, 0, sizeof(*s));
  s->cli = cli;
  if (!path) {
    if (access("connhost.yaml", F_OK) != 0 && cli->cmd == CMD_PLUGINS)
      goto registry; /* listing plugins needs no config */
    path = "connhost.yaml";
  }
  if (config_load(path, &s->config, &err) != CH_OK) {
    log_error("%s", err.msg);
    return EXIT_USAGE;
  }
registry:
  if (registry_init(&s->registry, session_plugin_dir(s), &err) != CH_OK) {
    log_error("%s", err.msg);
    return EXIT_USAGE;
  }
  s->registry_ready = 1;
  s->registry.allow_insecure =
      s->config && s->config->allow_insecure_plugin_dir;
  /* A --tenant the config does not have is a typo for every command that
     takes one (`tickets --tenant nope` would list nothing, exit 0). */
  for (size_t i = 0; i < cli->ntenants; i++) {
    size_t t;
    for (t = 0; t < s->config->ntenants; t++) {
      if (strcmp(s->config->tenants[t].name, cli->tenants[i]) == 0)
        break;
    }
    if (t == s->config->ntenants) {
      log_error("--tenant '%s': no such tenant in %s", cli->tenants[i],
                s->config->path);
      return EXIT_USAGE;
    }
  }
  if (!select)
    return -1;

  for (size_t t = 0; t < s->config->ntenants; t++) {
    const struct config_tenant *ct = &s->config->tenants[t];
    if (!cli_tenant_selected(cli, ct->name))
      continue;
    for (size_t i = 0; i < ct->ninstances; i++) {
      if (!ct->instances[i].enabled)
        continue;
      rc = add_instance(s, &ct->instances[i], NULL);
      if (rc >= 0)
        return rc;
    }
  }
  if (!s->ninsts) {
    log_error("%s: no enabled instances%s", s->config->path,
              cli->ntenants ? " in the selected tenants" : "");
    return EXIT_USAGE;
  }
  return -1;
}

int session_bind(struct session *s, const char *tenant, const char *instance,
                 struct instance **out) {
  for (size_t t = 0; t < s->config->ntenants; t++) {
    const struct config_tenant *ct = &s->config->tenants[t];
    if (strcmp(ct->name, tenant) != 0)
      continue;
    for (size_t i = 0; i < ct->ninstances; i++) {
      if (strcmp(ct->instances[i].name, instance) == 0)
        return add_instance(s, &ct->instances[i], out);
    }
    log_error("no instance '%s' in tenant '%s' of %s", instance, tenant,
              s->config->path);
    return EXIT_USAGE;
  }
  log_error("no tenant '%s' in %s", tenant, s->config->path);
  return EXIT_USAGE;
}

void session_release(struct session *s) {
  for (size_t i = 0; i < s->ninsts; i++) {
    instance_release(s->insts[i]);
    free(s->insts[i]);
  }
  free(s->insts);
  if (s->registry_ready)
    registry_release(&s->registry);
  config_free(s->config);
  memset(s, 0, sizeof(*s));
}

/* HTTP settings: config values over the built-in defaults. */
static int http_start(const struct config *c) {
  struct http_global_conf hc;
  struct ch_err err = {0};

  http_global_defaults(&hc);
  if (c && c->http_timeout_ms)
    hc.timeout_ms = c->http_timeout_ms;
  if (c && c->http_connect_timeout_ms)
    hc.connect_timeout_ms = c->http_connect_timeout_ms;
  if (c && c->http_max_attempts)
    hc.max_attempts = c->http_max_attempts;
  if (c && c->http_max_body_bytes)
    hc.max_body = (size_t)c->http_max_body_bytes;
  if (http_global_init(&hc, &err) != CH_OK) {
    log_error("%s", err.msg);
    return -1;
  }
  return 0;
}

int cli_main(int argc, char **argv) {
  struct cli cli;
  struct session s;
  int rc;
  int http_ready = 0;

  if (cmd_word(argc, argv) && strcmp(cmd_word(argc, argv), "explore") == 0)
    return cmd_explore_main(argc, argv);
  if (cmd_read_wanted(argc, argv))
    return cmd_read_main(argc, argv);
  rc = cli_parse(&cli, argc, argv);
  if (rc >= 0)
    goto out_cli;
  log_setup(opt_level, opt_log_format, cli.quiet);
  stop_install_handlers();
  rc = session_setup(&s, &cli,
                     cli.cmd == CMD_SYNC || cli.cmd == CMD_CHECK ||
                         cli.cmd == CMD_SERVE);
  if (rc >= 0)
    goto out;
  /* curl_global_init must run before any thread starts. */
  if (http_start(s.config)) {
    rc = EXIT_FAIL;
    goto out;
  }
  http_ready = 1;
  switch (cli.cmd) {
  case CMD_SYNC:
    rc = cmd_sync(&s);
    break;
  case CMD_CHECK:
    rc = cmd_check(&s);
    break;
  case CMD_PLUGINS:
    rc = cmd_plugins(&s);
    break;
  case CMD_GRANT:
  case CMD_REVOKE:
    rc = cmd_grant_revoke(&s);
    break;
  case CMD_PROVISION:
    rc = cmd_provision(&s);
    break;
  case CMD_ACTION:
    rc = cmd_action(&s);
    break;
  case CMD_SERVE:
    rc = cmd_serve(&s);
    break;
  case CMD_DEPROVISION:
    rc = cmd_deprovision(&s);
    break;
  case CMD_TICKETS:
    rc = cmd_tickets(&s);
    break;
  }
out:
  session_release(&s);
  if (http_ready)
    http_global_cleanup();
  log_cleanup();
out_cli:
  cli_release(&cli);
  return rc;
}
