/*
 * relayvisorctl audit (audit.c): the simulated audit from relayvisord plus the
 * corpus played live over SMTP.
 */
#ifndef RELAYVISOR_CTL_AUDIT_H
#define RELAYVISOR_CTL_AUDIT_H

#include "ctl/client.h"

/* `audit`: returns the exit code */
int ctl_audit(struct ctl_ctx *ctx, int argc, char **argv);

#endif
