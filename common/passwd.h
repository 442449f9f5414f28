/*
 * The password file (server.auth.passwd_file): one user a line,
 *
 *     user:HASH[:ADDRESSES]
 *
 * HASH is a crypt(3) hash of libxcrypt: yescrypt ($y$, what relayvisorctl passwd
 * writes), bcrypt ($2b$), sha512-crypt ($6$) or sha256-crypt ($5$); legacy DES
 * and MD5 hashes are refused. A hash starting with '!' or '*' locks the user.
 * ADDRESSES (optional) is a comma-separated list of the MAIL FROM addresses the
 * user may use when sender_login_match is on: "user@domain" or "@domain" (any
 * address of that domain), "@.domain" (its subdomains). '#' starts a comment
 * line; blank lines are ignored. Errors name FILE:LINE.
 *
 * Only the auth process reads this file: listeners never see a hash. Checking a
 * password costs tens of milliseconds (yescrypt), which is why it happens there.
 */
#ifndef RELAYVISOR_PASSWD_H
#define RELAYVISOR_PASSWD_H

#include <stdbool.h>
#include <stddef.h>

#define PASSWD_USER_MAX 255
#define PASSWD_PASS_MAX 1023
#define PASSWD_ADDRS_MAX 64		/* addresses of one user */
#define PASSWD_FILE_MAX (16 * 1024 * 1024)

struct passwd_db;

struct passwd_entry {
	char *user;
	char *hash;
	char **addrs;			/* canonical patterns */
	size_t naddrs;
	unsigned line;
};

/* every problem found, "FILE:LINE: message" */
struct passwd_errors {
	char **v;
	size_t n;
};

enum passwd_result { PASSWD_OK, PASSWD_FAIL, PASSWD_TEMPFAIL };

/* read and check a file; NULL when it can't be read or has any error (all
   reported in errs) */
struct passwd_db *passwd_db_load(const char *path, struct passwd_errors *errs);
/* the same from an open descriptor (the auth process opens before confinement) */
struct passwd_db *passwd_db_load_fd(int fd, const char *name, struct passwd_errors *errs);
struct passwd_db *passwd_db_parse(const char *name, const char *text, size_t len,
    struct passwd_errors *errs);
void passwd_db_free(struct passwd_db *db);
void passwd_errors_free(struct passwd_errors *errs);
size_t passwd_db_count(const struct passwd_db *db);
const struct passwd_entry *passwd_db_find(const struct passwd_db *db, const char *user);

/*
 * Check a user's password. An unknown user costs a hash computation too, so
 * timing does not tell which users exist. TEMPFAIL when crypt itself fails.
 * *entry_r (may be NULL) is the user's entry on PASSWD_OK.
 */
enum passwd_result passwd_db_check(const struct passwd_db *db, const char *user,
    const char *password, const struct passwd_entry **entry_r);
/* 1 the password matches the hash, 0 not (or locked), -1 unusable hash / error;
   the comparison of crypt's output is constant-time */
int passwd_hash_verify(const char *hash, const char *password);
/* a fresh yescrypt hash into out (CRYPT_OUTPUT_SIZE is enough); -1 with *error_r */
int passwd_hash_new(const char *password, char *out, size_t outlen, const char **error_r);
/* may this user send as from ("local@domain", no brackets)? true when the entry
   lists no addresses is NOT implied: an empty list allows nothing */
bool passwd_entry_sender_allowed(const struct passwd_entry *e, const char *from);
/* a user name the file can hold: 1..255 octets, no ':', whitespace or control */
bool passwd_user_valid(const char *user);

/*
 * relayvisorctl passwd: set user's password in the file at path, creating it
 * (mode 0600) if needed. The user's line is replaced (its addresses kept) or
 * appended; every other line stays as it was. Written to a temporary file in the
 * same directory, fsynced, renamed over the old one (whose mode and owner it
 * keeps), and the directory fsynced. -1 with *error_r.
 */
int passwd_file_set(const char *path, const char *user, const char *password,
    const char **error_r);

#endif
