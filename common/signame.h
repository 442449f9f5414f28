/*
 * Signal names, one way for the configuration (stopsignal) and the control
 * server (`relayvisorctl signal`).
 */
#ifndef RELAYVISOR_SIGNAME_H
#define RELAYVISOR_SIGNAME_H

/* "TERM", "SIGTERM", "term" -> SIGTERM; -1 for no such name */
int signame_parse(const char *s);

#endif
