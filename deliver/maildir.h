/*
 * Maildir delivery per the qmail spec (maildir(5)) with Maildir++ names: the message
 * is written to tmp/ under a unique name, fsync'ed, renamed into new/ (with ",S=size"
 * as Dovecot reads it), and new/ is fsync'ed; tmp/, new/ and cur/ are created when
 * missing (mode 0700). Return-Path and Delivered-To are prepended; lines are stored
 * with LF endings, as mail readers expect in a Maildir. A message that already
 * carries "Delivered-To: <this recipient>" in its header is a forwarding loop and is
 * refused (5.4.6, as qmail-local and Postfix local do).
 *
 * Paths: the template's %d and %u (from the `local: maildir:...` next hop) are
 * replaced by the recipient's domain and local part, lowercased and encoded so that
 * no recipient can leave its own directory: every octet outside [a-z0-9] and
 * "-_+=!#$&'*^`{|}~." becomes "%XX" (uppercase hex, '%' itself included), and a
 * leading '.' is encoded too, so "/", ".", "..", hidden names, control octets and
 * spaces never reach the file system raw ("john/../x" -> "john%2F..%2Fx",
 * ".." -> "%2E."). An encoded component longer than 255 octets is refused.
 * Components that come from %d/%u, and tmp/new/cur, are opened with O_NOFOLLOW one by
 * one (openat), so a symlink planted by a mailbox owner is never followed; the fixed
 * part of the template before the first %-expansion is the administrator's.
 *
 * This is blocking file I/O with fsync: a driver runs it in the local delivery
 * agent (one delivery at a time per process, as Postfix's local(8)), or from a
 * worker, never inside the SMTP agents' event loop.
 *
 * Use: m = maildir_open(template, local, domain, sender, rcpt, hostname, &err);
 * maildir_write(m, chunk, n, &err) for each chunk of the stored message (CRLF or LF);
 * maildir_commit(m, name, sizeof(name), &err) -> 0 delivered, -1 failed (*temp_r
 * says whether to defer or bounce); maildir_abort(m) when giving up. Each ends m.
 */
#ifndef RELAYVISOR_MAILDIR_H
#define RELAYVISOR_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* "%d"/"%u" expansion alone; -1 with *error_r when a part is empty or too long */
int maildir_expand(const char *tmpl, const char *local, const char *domain, char *out,
    size_t len, const char **error_r);
/* one component encoded as above */
int maildir_encode(const char *in, char *out, size_t len);

struct maildir_msg;

/*
 * Before a process drops its privileges: open the template's fixed prefix (the
 * directory before the first %-expansion), creating it when missing, so that
 * later deliveries walk from that descriptor instead of from "/". A prefix
 * below a directory the dropped user cannot traverse (a clone in /root) stays
 * reachable. A directory this call creates is given to uid/gid (-1: keep);
 * an existing one is left as it is. -1 with *error_r.
 */
int maildir_base_open(const char *tmpl, uid_t uid, gid_t gid, const char **error_r);

/*
 * Create the directories and the tmp file, write the two trace headers. sender ""
 * is the null sender (Return-Path: <>). On failure NULL, *error_r, and *temp_r
 * (true: a file system error worth retrying; false: the address cannot map to a
 * mailbox).
 */
struct maildir_msg *maildir_open(const char *tmpl, const char *local, const char *domain,
    const char *sender, const char *rcpt, const char *hostname, bool *temp_r,
    const char **error_r);
int maildir_write(struct maildir_msg *m, const void *data, size_t len, const char **error_r);
/* fsync, rename into new/, fsync new/; name_r gets "new/<unique>,S=<size>" */
int maildir_commit(struct maildir_msg *m, char *name_r, size_t len, bool *temp_r,
    const char **error_r);
void maildir_abort(struct maildir_msg *m);

#endif
