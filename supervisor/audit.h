/*
 * The supervisor's side of `relayvisorctl audit` and `check --corpus`: the
 * simulated audit of the live configuration, sent as the records profiles/audit.h
 * describes.
 */
#ifndef RELAYVISOR_SV_AUDIT_H
#define RELAYVISOR_SV_AUDIT_H

#include <stdbool.h>

struct sv;
struct sv_out;

/* the "audit" or "audit-expect" verb, or "check INSTANCE --client IP --corpus";
   lines go to out; returns the exit code, with *error_r set (or NULL) for the
   status line */
int audit_control(struct sv *sv, int argc, char **argv, const struct sv_out *out,
    const char **error_r);
/* argv is "check ... --corpus" */
bool audit_is_corpus_check(int argc, char **argv);

#endif
