/*
 * The control server: relayvisorctl's requests on the unix socket at
 * server.control, framed as common/ctlproto.h says, answered without ever
 * blocking the loop. Commands that wait (start, stop, restart, stats, tail -f)
 * keep their connection open and are re-checked after every loop iteration.
 */
#ifndef RELAYVISOR_CONTROL_H
#define RELAYVISOR_CONTROL_H

struct sv;

/* start accepting on sv_control_fd(sv) */
void control_start(struct sv *sv);
/* close and remove the control socket (shutdown); idempotent */
void control_stop_listening(struct sv *sv);

#endif
