/* SPDX-License-Identifier: MIT */
/* Helpers shared by the Atlassian plugins (jira_cloud, atlassian_org). */
#ifndef CONNHOST_ATLASSIAN_H
#define CONNHOST_ATLASSIAN_H

#include <connhost/plugin.h>

/* Atlassian's accountType ("atlassian", "app", "customer", shared by Jira
   and the organization APIs) as a graph account type. */
enum ch_account_type pj_atlassian_account_type(const char *type);

#endif
