/*
 * The control server: relayvisorctl's requests on the unix socket at
 * server.control, framed as common/ctlproto.h says (ctlconn.c), answered by the
 * verbs of control.c without ever blocking the loop. Commands that wait (start,
 * stop, restart, stats, tail -f) keep their connection open and are re-checked
 * at every loop pass, through the observer control_attach() registers with the
 * supervisor (super.h): the supervisor never calls up into this module.
 */
#ifndef RELAYVISOR_CONTROL_H
#define RELAYVISOR_CONTROL_H

struct sv;

/* serve the control socket of sv from the moment its loop runs until it
   shuts down */
void control_attach(struct sv *sv);

#endif
