/*
 * reload (relayvisorctl reload/update/reread, SIGHUP): re-read and validate the
 * directory; if it is invalid nothing changes. Otherwise diff per service, of
 * every kind in the service table (the row's equal()): new ones start, removed
 * ones stop, changed ones hand over gracefully (the successor takes the socket
 * first, the old processes stop once it is ready), unchanged ones keep running.
 */
#include "supervisor/super_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "profiles/audit.h"

/* ---- reload ---- */

static void
out_line(const struct sv_out *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
out_line(const struct sv_out *out, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	log_info("%s", buf);
	if (out != NULL)
		out->line(out->arg, buf);
}

/* every diagnostic, one line each: to the client as -t prints it
   ("FILE:L:C: error: ..."), to the log with its severity in front, once
   ("error: FILE:L:C: ...", never "warning: ...: error: ...") */
static void
out_diags(const struct sv_out *out, const struct config_diags *d)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);
	if (fp == NULL) {
		log_warn("open_memstream");
		return;
	}
	config_diags_print(d, fp);
	fclose(fp);
	for (size_t i = 0; i < d->n; i++) {
		const struct config_diag *g = &d->v[i];
		char where[PATH_MAX + 32] = "";
		if (g->mark.file != NULL)
			snprintf(where, sizeof(where), "%s:%u:%u: ", g->mark.file,
			    g->mark.line, g->mark.column);
		if (g->warning)
			log_warnx("%s%s", where, g->message);
		else
			log_errorx("%s%s", where, g->message);
	}
	for (char *line = text, *nl; out != NULL && line != NULL && *line != '\0';
	    line = nl) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl++ = '\0';
		out->line(out->arg, line);
	}
	free(text);
}

/* "ERROR: CANT_REREAD: ..." is the client's wording; the log has its own prefix */
const char *
strip_error(const char *e)
{
	return strncmp(e, "ERROR: ", 7) == 0 ? e + 7 : e;
}

static void
inst_retire(struct sv *sv, struct sv_instance *in, bool await_successor)
{
	in->retired = true;
	/* its params point into a configuration about to be freed */
	in->configured = false;
	in->sp.name = in->name;
	in->sp.listen = NULL;
	in->sp.n_listen = 0;
	in->sp.fp.autorestart = AUTORESTART_FALSE;
	in->await_successor = await_successor;
	for (unsigned i = 0; i < in->n_procs; i++) {
		struct sv_proc *p = &in->procs[i];
		/* nothing to wait for when no child serves */
		if (!fsm_has_child(p->fsm.state))
			sv_proc_event(p, EV_STOP);
	}
	if (!await_successor)
		inst_stop_all(in);
	in->next = sv->retired;
	sv->retired = in;
}

/* the services a configuration asks for, every kind, in table order */
struct want {
	const struct svc_kind *kind;
	struct svc_params sp;
};

static struct want *
wanted(const struct config *cfg, size_t *n_r)
{
	size_t n = 0;
	for (size_t k = 0; svc_kinds[k] != NULL; k++)
		n += svc_kinds[k]->count(cfg);
	struct want *w = xcalloc(n + 1, sizeof(*w));
	size_t j = 0;
	for (size_t k = 0; svc_kinds[k] != NULL; k++) {
		size_t m = svc_kinds[k]->count(cfg);
		for (size_t i = 0; i < m; i++, j++) {
			w[j].kind = svc_kinds[k];
			svc_kinds[k]->params(cfg, i, &w[j].sp);
		}
	}
	*n_r = n;
	return w;
}

/* the running service in is what w asks for: same kind, same definition */
static bool
unchanged(const struct sv *sv, const struct sv_instance *in, const struct config *ncfg,
    const struct want *w)
{
	return in->kind == w->kind && w->kind->equal(sv->cfg, ncfg, w->sp.name);
}

/* ncfg still asks for the service in (of the same kind) */
static bool
still_wanted(const struct sv_instance *in, const struct config *ncfg)
{
	const struct svc_kind *kind;
	struct svc_params sp;
	return svc_lookup(ncfg, in->name, &kind, &sp) && kind == in->kind;
}

int
sv_reload(struct sv *sv, bool dry_run, const struct sv_out *out, const char **error_r)
{
	static char err[256];
	if (sv->shutting_down) {
		*error_r = "ERROR: shutting down";
		return -1;
	}
	struct config_diags diags = { 0 };
	struct config *ncfg = config_load_dir(sv->confdir, &diags);
	if (ncfg == NULL || diags.n_errors > 0) {
		out_diags(out, &diags);
		snprintf(err, sizeof(err), "ERROR: CANT_REREAD: %zu error%s in %s",
		    diags.n_errors, diags.n_errors == 1 ? "" : "s", sv->confdir);
		if (diags.n_errors == 0)
			snprintf(err, sizeof(err), "ERROR: CANT_REREAD: cannot read %s",
			    sv->confdir);
		config_diags_free(&diags);
		if (ncfg != NULL)
			config_free(ncfg);
		*error_r = err;
		return -1;
	}
	if (diags.n_warnings > 0)
		out_diags(out, &diags);
	config_diags_free(&diags);

	/* a certificate that cannot be used refuses the reload (nothing changes) */
	if (sv_tls_check(ncfg, error_r) == -1) {
		snprintf(err, sizeof(err), "ERROR: CANT_REREAD: %s", *error_r);
		log_errorx("reload refused, nothing changed: %s", strip_error(err));
		config_free(ncfg);
		*error_r = err;
		return -1;
	}
	size_t nchanges = 0, n_want;
	struct want *want = wanted(ncfg, &n_want);
	if (dry_run) {
		for (size_t i = 0; i < n_want; i++) {
			const char *name = want[i].sp.name;
			struct sv_instance *in = sv_instance_find(sv, name);
			if (in == NULL) {
				out_line(out, "%s: available", name);
				nchanges++;
			} else if (!unchanged(sv, in, ncfg, &want[i])) {
				out_line(out, "%s: changed", name);
				nchanges++;
			}
		}
		for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
			if (!still_wanted(in, ncfg)) {
				out_line(out, "%s: disappeared", in->name);
				nchanges++;
			}
		}
		if (nchanges == 0)
			out_line(out, "No config updates to processes");
		free(want);
		config_free(ncfg);
		return 0;
	}

	/* phase 1: bind what the new and changed instances need; any failure
	   leaves everything as it was */
	struct sv_instance **fresh = xcalloc(n_want + 1, sizeof(*fresh));
	for (size_t i = 0; i < n_want; i++) {
		struct sv_instance *old = sv_instance_find(sv, want[i].sp.name);
		if (old != NULL && unchanged(sv, old, ncfg, &want[i]))
			continue;
		fresh[i] = inst_new(sv, want[i].kind, &want[i].sp,
		    old != NULL && old->kind == want[i].kind ? old : NULL, false, error_r);
		if (fresh[i] == NULL) {
			snprintf(err, sizeof(err), "ERROR: %s: %s", want[i].sp.name,
			    *error_r);
			for (size_t j = 0; j < i; j++)
				if (fresh[j] != NULL)
					inst_free(fresh[j]);
			free(fresh);
			free(want);
			config_free(ncfg);
			*error_r = err;
			log_errorx("reload refused, nothing changed: %s",
			    strip_error(err));
			return -1;
		}
	}

	/* phase 2: removed instances stop now */
	for (struct sv_instance **pp = &sv->instances; *pp != NULL; ) {
		struct sv_instance *in = *pp;
		if (still_wanted(in, ncfg)) {
			pp = &in->next;
			continue;
		}
		*pp = in->next;
		bool was = inst_running_any(in);
		inst_retire(sv, in, false);
		if (was)
			out_line(out, "%s: stopped", in->name);
		out_line(out, "%s: removed process group", in->name);
		nchanges++;
	}

	/* phase 3: the new list in config order; changed ones hand over */
	struct sv_instance *head = NULL, **tail = &head;
	for (size_t i = 0; i < n_want; i++) {
		const char *name = want[i].sp.name;
		struct sv_instance *old = sv_instance_find(sv, name);
		struct sv_instance *in;
		if (fresh[i] == NULL) {
			in = old;	/* unchanged: same processes, new config pointers */
			inst_set_params(in, &want[i].sp);
		} else {
			in = fresh[i];
			if (old != NULL) {
				/* unlink old from the live list before retiring it */
				for (struct sv_instance **pp = &sv->instances; *pp != NULL;
				    pp = &(*pp)->next) {
					if (*pp == old) {
						*pp = old->next;
						break;
					}
				}
				inst_retire(sv, old, inst_running_any(old));
				out_line(out, "%s: updated process group", name);
			} else {
				out_line(out, "%s: added process group", name);
			}
			nchanges++;
		}
		/* take it out of the old list (unchanged ones are still there) */
		for (struct sv_instance **pp = &sv->instances; *pp != NULL; pp = &(*pp)->next) {
			if (*pp == in) {
				*pp = in->next;
				break;
			}
		}
		in->next = NULL;
		*tail = in;
		tail = &in->next;
	}
	free(fresh);
	free(want);
	struct config *old_cfg = sv->cfg;
	sv->instances = head;
	sv->cfg = ncfg;
	bool logs_moved = strcmp(old_cfg->server.logs, ncfg->server.logs) != 0;
	config_free(old_cfg);
	audit_log_config(sv->cfg);
	if (logs_moved)
		sv_reopen_logs(sv);
	/* running listeners get their certificate again: a renewed one is used
	   by new sessions, open sessions keep theirs */
	sv_tls_reload(sv);
	/* the auth process reads the password file again (no restart) */
	sv_auth_reload(sv);
	/* start after the swap: children get the new snapshot */
	for (struct sv_instance *in = sv->instances; in != NULL; in = in->next) {
		for (unsigned i = 0; i < in->n_procs; i++) {
			struct sv_proc *p = &in->procs[i];
			if (in->sp.autostart && p->fsm.state == PROC_STOPPED && p->stop_time == 0
			    && p->pid == 0)
				sv_proc_event(p, EV_START);
		}
	}
	if (nchanges == 0)
		out_line(out, "No config updates to processes");
	return 0;
}

