/* SPDX-License-Identifier: MIT */
/* The in-tree plugins' name for the plugin SDK, <connhost/sdk.h>. */
#ifndef CONNHOST_PLUGJSON_H
#define CONNHOST_PLUGJSON_H

#include <connhost/sdk.h>

#endif
