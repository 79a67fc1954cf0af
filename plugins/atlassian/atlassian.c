/* SPDX-License-Identifier: MIT */
/* Helpers shared by the Atlassian plugins (see atlassian.h). */
#include <string.h>

#include "atlassian.h"

enum ch_account_type pj_atlassian_account_type(const char *type) {
  if (!type)
    return CH_ACCOUNT_NONE;
  if (strcmp(type, "atlassian") == 0)
    return CH_ACCOUNT_HUMAN;
  if (strcmp(type, "app") == 0)
    return CH_ACCOUNT_SERVICE;
  if (strcmp(type, "customer") == 0)
    return CH_ACCOUNT_CUSTOMER;
  return CH_ACCOUNT_NONE;
}
